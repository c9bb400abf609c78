/**
 * The client and its one HTTP core: every call goes through `request`, which adds auth and
 * idempotency headers, applies the timeout and the caller's AbortSignal, retries network
 * errors, 408, 429 and 5xx with exponential backoff and jitter (honouring `Retry-After`), and
 * turns error statuses into the APIError subclasses.
 */
import {
  APIConnectionError,
  APIError,
  APITimeoutError,
  APIUserAbortError,
} from './errors.js';
import { Models } from './resources/models.js';
import { Tokens } from './resources/tokens.js';
import { Videos } from './resources/videos.js';
import { linkSignals, readEnv, retryDelayMs, sleep } from './util.js';

export const VERSION = '0.1.0';

export interface ClientOptions {
  /** Server URL. Default: `KINETOSCOPE_BASE_URL`, else the page's origin in a browser, else http://127.0.0.1:8000. */
  baseURL?: string;
  /** Sent as `Authorization: Bearer <apiKey>`. Default: `KINETOSCOPE_API_KEY`, else none. */
  apiKey?: string | null;
  /** Milliseconds one attempt may take before APITimeoutError (default 120 000). */
  timeout?: number;
  /** Retries after the first attempt (default 2). */
  maxRetries?: number;
  /** A fetch implementation; default: the global fetch. */
  fetch?: typeof fetch;
  /** Headers sent with every request. */
  defaultHeaders?: Record<string, string>;
}

/** Per-call options that every method takes. */
export interface RequestOptions {
  /** Aborts the call (and its retries and waits) with APIUserAbortError. */
  signal?: AbortSignal | null;
  /** Milliseconds per attempt; default: the client's timeout. */
  timeout?: number;
  /** Retries for this call; default: the client's maxRetries. */
  maxRetries?: number;
  /** Extra headers for this call. */
  headers?: Record<string, string>;
}

export interface HTTPRequest extends RequestOptions {
  method: 'GET' | 'POST' | 'DELETE';
  path: string;
  query?: Record<string, string | number | null | undefined>;
  /** A FormData body is sent as multipart; anything else (but undefined) as JSON. */
  body?: unknown;
}

/** A successful response whose body is still unread, and the cleanup to call when done with it. */
export interface StreamingResponse {
  response: Response;
  release: () => void;
}

export class Kinetoscope {
  readonly baseURL: string;
  readonly apiKey: string | null;
  readonly timeout: number;
  readonly maxRetries: number;
  readonly videos: Videos;
  readonly models: Models;
  readonly tokens: Tokens;
  private readonly fetchImpl: typeof fetch;
  private readonly defaultHeaders: Record<string, string>;

  constructor(options: ClientOptions = {}) {
    const origin = (globalThis as { location?: { origin?: string } }).location?.origin;
    const baseURL =
      options.baseURL ?? readEnv('KINETOSCOPE_BASE_URL') ?? (origin && origin !== 'null' ? origin : 'http://127.0.0.1:8000');
    this.baseURL = baseURL.replace(/\/+$/, '');
    this.apiKey = options.apiKey === undefined ? readEnv('KINETOSCOPE_API_KEY') ?? null : options.apiKey || null;
    this.timeout = options.timeout ?? 120_000;
    this.maxRetries = options.maxRetries ?? 2;
    const fetchImpl = options.fetch ?? (globalThis as { fetch?: typeof fetch }).fetch;
    if (!fetchImpl) throw new Error('no global fetch (Node 18+ or a browser); pass one as options.fetch');
    // Bound so that window.fetch keeps its `this` in browsers.
    this.fetchImpl = options.fetch ? options.fetch : fetchImpl.bind(globalThis);
    this.defaultHeaders = options.defaultHeaders ?? {};
    this.videos = new Videos(this);
    this.models = new Models(this);
    this.tokens = new Tokens(this);
  }

  /** The absolute URL of an API path, with query parameters. */
  buildURL(path: string, query?: HTTPRequest['query']): string {
    let url = this.baseURL + path;
    if (query) {
      const search = new URLSearchParams();
      for (const [key, value] of Object.entries(query)) {
        if (value !== undefined && value !== null) search.set(key, String(value));
      }
      const qs = search.toString();
      if (qs) url += `?${qs}`;
    }
    return url;
  }

  /** Sends a request and parses the JSON answer. */
  async request<T>(req: HTTPRequest): Promise<{ data: T; response: Response }> {
    return this.send(req, async (response) => ({ data: (await response.json()) as T, response }));
  }

  /** Sends a request and reads the whole body as bytes. */
  async requestBytes(req: HTTPRequest): Promise<{ data: ArrayBuffer; response: Response }> {
    return this.send(req, async (response) => ({ data: await response.arrayBuffer(), response }));
  }

  /**
   * Sends a request and hands back the response with its body unread (for server-sent events).
   * The timeout covers only the wait for the headers; the caller's signal stays linked until
   * `release()`.
   */
  async requestStream(req: HTTPRequest): Promise<StreamingResponse> {
    let release = () => {};
    const response = await this.send(req, async (r) => r, (cleanup) => (release = cleanup));
    return { response, release };
  }

  /**
   * The retry loop. `read` runs within the attempt's timeout. `keepLinked`, when given, takes
   * ownership of the signal link (streaming); otherwise it is undone after `read`.
   */
  private async send<R>(
    req: HTTPRequest,
    read: (response: Response) => Promise<R>,
    keepLinked?: (cleanup: () => void) => void,
  ): Promise<R> {
    const url = this.buildURL(req.path, req.query);
    const init = this.buildInit(req);
    const maxRetries = req.maxRetries ?? this.maxRetries;
    const timeout = req.timeout ?? this.timeout;
    const userSignal = req.signal ?? null;

    for (let attempt = 0; ; attempt++) {
      const retriesLeft = maxRetries - attempt;
      if (userSignal?.aborted) throw new APIUserAbortError(undefined, { cause: userSignal.reason });
      const controller = new AbortController();
      const unlink = linkSignals(controller, userSignal);
      let timedOut = false;
      const timer = setTimeout(() => {
        timedOut = true;
        controller.abort();
      }, timeout);
      const done = () => {
        clearTimeout(timer);
        unlink();
      };

      let response: Response;
      try {
        response = await this.fetchImpl(url, { ...init, signal: controller.signal });
      } catch (cause) {
        done();
        const error = this.connectionError(cause, userSignal, timedOut, timeout);
        if (error instanceof APIUserAbortError || retriesLeft <= 0) throw error;
        await sleep(retryDelayMs(attempt, null), userSignal);
        continue;
      }

      if (!response.ok) {
        let body: unknown;
        try {
          body = await readErrorBody(response);
        } catch (cause) {
          done();
          const error = this.connectionError(cause, userSignal, timedOut, timeout);
          if (error instanceof APIUserAbortError || retriesLeft <= 0) throw error;
          await sleep(retryDelayMs(attempt, null), userSignal);
          continue;
        }
        done();
        if (retriesLeft > 0 && isRetryableStatus(response.status)) {
          await sleep(retryDelayMs(attempt, response.headers), userSignal);
          continue;
        }
        throw APIError.generate(response.status, body, response.headers);
      }

      if (keepLinked) {
        clearTimeout(timer);
        keepLinked(unlink);
        return read(response);
      }
      try {
        return await read(response);
      } catch (cause) {
        // The body broke off mid-way; the request itself succeeded, so it is not retried.
        throw this.connectionError(cause, userSignal, timedOut, timeout);
      } finally {
        done();
      }
    }
  }

  private buildInit(req: HTTPRequest): RequestInit {
    const headers: Record<string, string> = { Accept: 'application/json', ...this.defaultHeaders };
    if (this.apiKey) headers.Authorization = `Bearer ${this.apiKey}`;
    let body: BodyInit | undefined;
    if (typeof FormData !== 'undefined' && req.body instanceof FormData) {
      body = req.body; // fetch sets the multipart Content-Type with its boundary
    } else if (req.body !== undefined) {
      body = JSON.stringify(req.body);
      headers['Content-Type'] = 'application/json';
    }
    Object.assign(headers, req.headers);
    return { method: req.method, headers, body };
  }

  private connectionError(
    cause: unknown,
    userSignal: AbortSignal | null,
    timedOut: boolean,
    timeout: number,
  ): APIConnectionError | APIUserAbortError {
    if (userSignal?.aborted) return new APIUserAbortError(undefined, { cause: userSignal.reason });
    if (timedOut) return new APITimeoutError(`Request timed out after ${timeout} ms.`, { cause });
    const detail = cause instanceof Error ? describeCause(cause) : String(cause);
    return new APIConnectionError(`Connection error: ${detail}`, { cause });
  }
}

function isRetryableStatus(status: number): boolean {
  return status === 408 || status === 429 || status >= 500;
}

async function readErrorBody(response: Response): Promise<unknown> {
  const text = await response.text();
  if (!text) return null;
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

function describeCause(error: Error): string {
  // undici wraps the useful part (ECONNREFUSED, ...) in `cause`.
  const inner = (error as { cause?: unknown }).cause;
  if (inner instanceof Error && inner.message) return `${error.message} (${inner.message})`;
  return error.message;
}
