import type { Kinetoscope, RequestOptions } from '../client.js';
import { VideoContent } from '../content.js';
import type { ScoreResult, TokenizeResult, Uploadable } from '../types.js';

/** The model's tokenizer and likelihood over HTTP: POST /v1/tokenize, /v1/detokenize, /v1/score. */
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

  /**
   * A video (bytes, or a base64 string) or its token ids -> its exact log-likelihood (nats) under
   * the model's autoregressive prior, with bits per token and the sum per latent frame.
   */
  async score(
    input: { video: Uploadable | string } | { tokens: number[] },
    options: RequestOptions & { model?: string } = {},
  ): Promise<ScoreResult> {
    const { model, ...rest } = options;
    let body: unknown;
    if ('tokens' in input) {
      body = { tokens: input.tokens, ...(model ? { model } : {}) };
    } else if (typeof input.video === 'string') {
      body = { input_video: input.video, ...(model ? { model } : {}) };
    } else {
      const form = new FormData();
      const video = input.video;
      form.append('input_video', video instanceof Blob ? video : new Blob([video as BlobPart]), 'input');
      if (model) form.append('model', model);
      body = form;
    }
    const { data } = await this.client.request<ScoreResult>({ method: 'POST', path: '/v1/score', body, ...rest });
    return data;
  }
}
