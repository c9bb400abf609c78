/**
 * The video job resource: create, retrieve, list, cancel, delete, download, stream events, and
 * the waiting helpers (poll, createAndPoll, generate) that make the asynchronous API feel
 * synchronous.
 */
import type { Kinetoscope, RequestOptions } from '../client.js';
import { VideoContent } from '../content.js';
import {
  APIConnectionError,
  APIUserAbortError,
  JobFailedError,
  KinetoscopeError,
  WaitTimeoutError,
} from '../errors.js';
import { Page, PagePromise, type PageBody } from '../pagination.js';
import { Preview, type PreviewData } from '../preview.js';
import { parseSSE, type ServerSentEvent } from '../sse.js';
import {
  isTerminal,
  type ContentVariant,
  type EditParams,
  type Video,
  type Box,
  type VideoCreateParams,
  type VideoDeleted,
  type VideoListParams,
} from '../types.js';
import { isBytes, retryDelayMs, sleep, suggestedDelayMs, uuid4 } from '../util.js';

export interface CreateOptions extends RequestOptions {
  /** Sent as `Idempotency-Key`; default: a fresh UUID per call, reused on its retries. */
  idempotencyKey?: string;
  /** Seconds the server may hold the request for the job to finish (`Prefer: wait=N`). */
  wait?: number;
}

export interface PollOptions {
  /** Milliseconds between polls; default: what the server suggests (`X-Poll-Interval`, else `Retry-After`), else 1000. Clamped to 100..60 000. */
  pollInterval?: number;
  /** Milliseconds to wait for a terminal status before WaitTimeoutError (the job goes on); default: no limit. */
  timeout?: number;
  /** Called with the job whenever its status or progress changes. */
  onProgress?: (job: Video) => void;
  signal?: AbortSignal | null;
}

export interface CreateAndPollOptions extends PollOptions {
  idempotencyKey?: string;
}

export interface DownloadOptions extends RequestOptions {
  /**
   * `video` (in the request's output_format, default), `thumbnail` (PNG of the first frame),
   * `frames` (the lossless frames, PNGs in a zip), `tokens` (JSON token grids), `confidence`
   * (a MaskGIT job's confidence map, JSON) or `preview` (a `previews: true` job's latest preview,
   * PNG; there while it runs). The JSON ones: `content.json()`.
   */
  variant?: ContentVariant;
}

export interface StreamOptions extends RequestOptions {
  /** Also yield each `Preview` (a job created with `previews: true`), in the order sent. */
  previews?: boolean;
}

export interface GenerateResult {
  /** The completed job. */
  job: Video;
  /** Its MP4. */
  content: VideoContent;
}

const DEFAULT_POLL_MS = 1000; // when neither the caller nor the server says
const MIN_POLL_MS = 100;
const MAX_POLL_MS = 60_000;

export class Videos {
  constructor(private readonly client: Kinetoscope) {}

  /**
   * Creates a job. Returns at once with the queued job, or, with `wait`, once it finished or the
   * wait ran out. Bytes in `input_video` go up as multipart/form-data, a string as base64 JSON.
   */
  async create(params: VideoCreateParams, options: CreateOptions = {}): Promise<Video> {
    return (await this.createWithResponse(params, options)).data;
  }

  /** The job. */
  async retrieve(id: string, options: RequestOptions = {}): Promise<Video> {
    return (await this.retrieveWithResponse(id, options)).data;
  }

  /**
   * Recent jobs, newest first. Await it for the first page, or iterate it to walk every page:
   * `for await (const job of client.videos.list({ limit: 20 })) ...`
   */
  list(params: VideoListParams = {}, options: RequestOptions = {}): PagePromise<Video> {
    const fetchPage = async (after: string | undefined): Promise<Page<Video>> => {
      const { data } = await this.client.request<PageBody<Video>>({
        method: 'GET',
        path: '/v1/videos',
        query: { after, limit: params.limit, status: params.status, task: params.task, model: params.model },
        ...options,
      });
      return new Page<Video>(data, (next) => fetchPage(next));
    };
    return new PagePromise(fetchPage(params.after));
  }

  /** Cancels a queued or running job (idempotent); returns the job. */
  async cancel(id: string, options: RequestOptions = {}): Promise<Video> {
    const { data } = await this.client.request<Video>({ method: 'POST', path: `/v1/videos/${enc(id)}/cancel`, ...options });
    return data;
  }

  /** Deletes the job and its content. */
  async delete(id: string, options: RequestOptions = {}): Promise<VideoDeleted> {
    const { data } = await this.client.request<VideoDeleted>({ method: 'DELETE', path: `/v1/videos/${enc(id)}`, ...options });
    return data;
  }

  /** Downloads the MP4 (or, with `variant: 'thumbnail'`, the PNG of the first frame). */
  async downloadContent(id: string, options: DownloadOptions = {}): Promise<VideoContent> {
    const { variant, ...rest } = options;
    const { data, response } = await this.client.requestBytes({
      method: 'GET',
      path: `/v1/videos/${enc(id)}/content`,
      query: { variant },
      ...rest,
      headers: { Accept: '*/*', ...rest.headers },
    });
    return new VideoContent(data, response);
  }

  /** The content's URL, e.g. for a `<video src>` where the server needs no API key. */
  contentURL(id: string, options: { variant?: ContentVariant } = {}): string {
    return this.client.buildURL(`/v1/videos/${enc(id)}/content`, { variant: options.variant });
  }

  /**
   * The job object at each change, from the server-sent events stream, ending after the
   * terminal one; with `previews: true` also each `Preview`, in the order the server sent them
   * (a step's preview comes before the job event of the same change). A stream that drops
   * before the end is reopened (up to maxRetries times in a row without news); previews already
   * yielded are not yielded again.
   */
  streamEvents(id: string, options?: StreamOptions & { previews?: false }): AsyncGenerator<Video, void, undefined>;
  streamEvents(id: string, options: StreamOptions & { previews: true }): AsyncGenerator<Video | Preview, void, undefined>;
  streamEvents(id: string, options?: StreamOptions): AsyncGenerator<Video | Preview, void, undefined>;
  async *streamEvents(id: string, options: StreamOptions = {}): AsyncGenerator<Video | Preview, void, undefined> {
    const { previews = false, ...requestOptions } = options;
    const maxRetries = requestOptions.maxRetries ?? this.client.maxRetries;
    const reader = new EventReader(previews);
    let failures = 0;
    for (let attempt = 0; ; attempt++) {
      const { response, release } = await this.client.requestStream({
        method: 'GET',
        path: `/v1/videos/${enc(id)}/events`,
        ...requestOptions,
        headers: { Accept: 'text/event-stream', ...requestOptions.headers },
      });
      reader.reopened();
      let news = false;
      let dropped: unknown = null;
      try {
        if (!response.body) throw new APIConnectionError('the event stream has no body');
        for await (const event of parseSSE(response.body)) {
          const item = reader.read(event);
          if (item === null) continue;
          news = true;
          yield item;
          if (!(item instanceof Preview) && isTerminal(item)) return;
        }
      } catch (err) {
        if (options.signal?.aborted) throw new APIUserAbortError(undefined, { cause: options.signal.reason });
        if (err instanceof KinetoscopeError) throw err;
        dropped = err; // the connection broke mid-stream: reopen below
      } finally {
        release();
      }
      failures = news ? 0 : failures + 1;
      if (failures > maxRetries) {
        throw new APIConnectionError(`the event stream of ${id} closed before the job finished`, { cause: dropped });
      }
      await sleep(retryDelayMs(failures, null), options.signal);
    }
  }

  /**
   * Each preview of a job created with `previews: true` (one per MaskGIT step, or every few
   * tokens of the autoregressive sampler: the clip as
   * guessed so far, with the sampler's confidence map) until the job ends; a finished job's are
   * replayed. Throws JobFailedError if the job failed or was canceled.
   */
  async *streamPreviews(id: string, options: RequestOptions = {}): AsyncGenerator<Preview, void, undefined> {
    for await (const item of this.streamEvents(id, { ...options, previews: true })) {
      if (item instanceof Preview) yield item;
      else if (isTerminal(item) && item.status !== 'completed') throw new JobFailedError(item);
    }
  }

  /**
   * An exact edit of a completed job (`"edit": {"from": id}`): only the tokens whose footprint
   * meets the region the mask leaves to generate (inpainting, the default: inside it;
   * outpainting: outside) are generated again; every other token keeps its value exactly. The
   * clip's length and size are the source's. `params.mask`: a Mask, or an `[x0, y0, x1, y1]` box.
   */
  async edit(id: string, params: EditParams, options: CreateOptions = {}): Promise<Video> {
    const { mask, task = 'inpainting', ...rest } = params;
    const body: VideoCreateParams = { ...rest, task, mask: Array.isArray(mask) ? { box: mask as Box } : mask, edit: { from: id } };
    return this.create(body, options);
  }

  /**
   * Polls the job until it is terminal, sleeping what the server suggests between polls.
   * Returns the completed job; throws JobFailedError when it failed or was canceled.
   */
  async poll(id: string, options: PollOptions = {}): Promise<Video> {
    const first = await this.retrieveWithResponse(id, { signal: options.signal });
    return this.pollFrom(first.data, first.response.headers, options);
  }

  /** Creates a job and polls it until it is terminal: `poll(create(params))`. */
  async createAndPoll(params: VideoCreateParams, options: CreateAndPollOptions = {}): Promise<Video> {
    const { data, response } = await this.createWithResponse(params, {
      idempotencyKey: options.idempotencyKey,
      signal: options.signal,
    });
    return this.pollFrom(data, response.headers, options);
  }

  /** Creates a job, waits for it, and downloads its MP4. */
  async generate(params: VideoCreateParams, options: CreateAndPollOptions = {}): Promise<GenerateResult> {
    const job = await this.createAndPoll(params, options);
    const content = await this.downloadContent(job.id, { signal: options.signal });
    return { job, content };
  }

  private async createWithResponse(
    params: VideoCreateParams,
    options: CreateOptions,
  ): Promise<{ data: Video; response: Response }> {
    const { idempotencyKey, wait, ...rest } = options;
    const headers: Record<string, string> = { 'Idempotency-Key': idempotencyKey ?? uuid4(), ...rest.headers };
    let timeout = rest.timeout;
    if (wait !== undefined) {
      headers.Prefer = `wait=${wait}`;
      // The server may hold the request for `wait` seconds: give the attempt that long and more.
      timeout = Math.max(timeout ?? this.client.timeout, wait * 1000 + 30_000);
    }
    const body = isBytes(params.input_video) ? toFormData(params) : params;
    return this.client.request<Video>({ method: 'POST', path: '/v1/videos', body, ...rest, timeout, headers });
  }

  private retrieveWithResponse(id: string, options: RequestOptions): Promise<{ data: Video; response: Response }> {
    return this.client.request<Video>({ method: 'GET', path: `/v1/videos/${enc(id)}`, ...options });
  }

  private async pollFrom(job: Video, headers: Headers, options: PollOptions): Promise<Video> {
    const deadline = options.timeout === undefined ? Infinity : Date.now() + options.timeout;
    let seen = '';
    for (;;) {
      const state = `${job.status}:${job.progress}`;
      if (state !== seen) {
        seen = state;
        options.onProgress?.(job);
      }
      if (isTerminal(job)) {
        if (job.status === 'completed') return job;
        throw new JobFailedError(job);
      }
      const remaining = deadline - Date.now();
      if (remaining <= 0) {
        throw new WaitTimeoutError(job, options.timeout as number);
      }
      const interval = clamp(options.pollInterval ?? suggestedDelayMs(headers) ?? DEFAULT_POLL_MS, MIN_POLL_MS, MAX_POLL_MS);
      await sleep(Math.min(interval, remaining), options.signal);
      const next = await this.retrieveWithResponse(job.id, { signal: options.signal });
      job = next.data;
      headers = next.response.headers;
    }
  }
}

/**
 * Turns one streamEvents call's server-sent events into jobs and previews, across
 * reconnections: a reopened stream replays the job's previews from the first one, so those
 * already yielded are skipped.
 */
class EventReader {
  private yielded = 0; // previews handed out so far
  private index = 0; // previews seen on the current connection

  constructor(private readonly previews: boolean) {}

  reopened(): void {
    this.index = 0;
  }

  /** The job or preview an event carries; null for keep-alives, unknown kinds and previews skipped. Throws on an error event. */
  read(event: ServerSentEvent): Video | Preview | null {
    const payload = parseJSON(event.data);
    if (event.event === 'preview') {
      this.index++;
      if (!this.previews || this.index <= this.yielded || !payload || typeof payload !== 'object') return null;
      this.yielded++;
      return new Preview(payload as PreviewData);
    }
    if (isJob(payload)) return payload;
    if (event.event === 'error' || isErrorBody(payload)) {
      throw new KinetoscopeError(`event stream error: ${errorMessage(payload) ?? event.data}`);
    }
    return null;
  }
}

/**
 * The multipart form of a create request: the bytes as a file part named `input_video`,
 * scalars as text fields, objects (mask, sampler) as JSON text.
 */
export function toFormData(params: VideoCreateParams): FormData {
  const form = new FormData();
  for (const [key, value] of Object.entries(params)) {
    if (value === undefined || value === null || key === 'input_video') continue;
    form.append(key, typeof value === 'object' ? JSON.stringify(value) : String(value));
  }
  const video = params.input_video as Blob | Uint8Array | ArrayBuffer;
  if (video instanceof Blob) {
    const name = (video as { name?: unknown }).name;
    form.append('input_video', video, typeof name === 'string' && name ? name : 'input');
  } else {
    form.append('input_video', new Blob([video as BlobPart], { type: 'application/octet-stream' }), 'input');
  }
  return form;
}

function clamp(value: number, low: number, high: number): number {
  return Math.min(Math.max(value, low), high);
}

function isErrorBody(value: unknown): value is { error: unknown } {
  return Boolean(value) && typeof value === 'object' && 'error' in (value as object);
}

function errorMessage(value: unknown): string | null {
  if (!isErrorBody(value)) return null;
  const err = value.error;
  if (err && typeof err === 'object' && typeof (err as { message?: unknown }).message === 'string') {
    return (err as { message: string }).message;
  }
  return typeof err === 'string' ? err : null;
}

function enc(id: string): string {
  return encodeURIComponent(id);
}

function parseJSON(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return null;
  }
}

function isJob(value: unknown): value is Video {
  return Boolean(value) && typeof value === 'object' && typeof (value as Video).id === 'string' && typeof (value as Video).status === 'string';
}
