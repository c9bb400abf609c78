import type { Kinetoscope, RequestOptions } from '../client.js';
import { VideoContent } from '../content.js';
import type { TokenizeResult, Uploadable } from '../types.js';

/** The model's tokenizer over HTTP: POST /v1/tokenize and /v1/detokenize. */
export class Tokens {
  constructor(private readonly client: Kinetoscope) {}

  /** A video (bytes, or a base64 string) -> the token ids of its first window. */
  async tokenize(video: Uploadable | string, options: RequestOptions & { model?: string } = {}): Promise<TokenizeResult> {
    const { model, ...rest } = options;
    let body: unknown;
    if (typeof video === 'string') {
      body = { input_video: video, ...(model ? { model } : {}) };
    } else {
      const form = new FormData();
      form.append('input_video', video instanceof Blob ? video : new Blob([video as BlobPart]), 'input');
      if (model) form.append('model', model);
      body = form;
    }
    const { data } = await this.client.request<TokenizeResult>({ method: 'POST', path: '/v1/tokenize', body, ...rest });
    return data;
  }

  /** t*h*w token ids -> an MP4 (at `size`, through the super-resolution cascade). */
  async detokenize(tokens: number[], options: RequestOptions & { size?: string; model?: string } = {}): Promise<VideoContent> {
    const { size, model, ...rest } = options;
    const { data, response } = await this.client.requestBytes({
      method: 'POST',
      path: '/v1/detokenize',
      body: { tokens, ...(size ? { size } : {}), ...(model ? { model } : {}) },
      ...rest,
      headers: { Accept: '*/*', ...rest.headers },
    });
    return new VideoContent(data, response);
  }
}
