/**
 * The error hierarchy. Every error the client throws is a KinetoscopeError:
 *
 *   KinetoscopeError
 *   ├── APIError                 the server answered with an error status
 *   │   ├── BadRequestError              400
 *   │   ├── AuthenticationError          401
 *   │   ├── PermissionDeniedError        403
 *   │   ├── NotFoundError                404
 *   │   ├── ConflictError                409 (e.g. content not ready)
 *   │   ├── PayloadTooLargeError         413
 *   │   ├── UnsupportedMediaTypeError    415
 *   │   ├── UnprocessableEntityError     422
 *   │   ├── RateLimitError               429 (queue full)
 *   │   └── InternalServerError          5xx
 *   │       └── ServiceUnavailableError  503 (not ready)
 *   ├── APIConnectionError       no answer: network failure
 *   │   └── APITimeoutError      no answer in time
 *   ├── APIUserAbortError        the caller's AbortSignal fired
 *   ├── JobFailedError           a waited-on job ended `failed` or `canceled`
 *   └── WaitTimeoutError         a wait for a job ran past its `timeout` (the job goes on)
 */
import type { ErrorObject, Video } from './types.js';

export class KinetoscopeError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message);
    this.name = new.target.name;
    if (options && 'cause' in options) (this as { cause?: unknown }).cause = options.cause;
  }
}

/** The server answered with a 4xx or 5xx status; the fields come from its `{"error": {...}}` body. */
export class APIError extends KinetoscopeError {
  /** HTTP status code. */
  readonly status: number;
  /** Machine-readable error code, e.g. `not_found`, `queue_full`. */
  readonly code: string | null;
  /** Error type, e.g. `invalid_request_error`. */
  readonly type: string | null;
  /** The request field at fault, when the server names one. */
  readonly param: string | null;
  /** The parsed response body (or its text when it was not JSON). */
  readonly body: unknown;
  /** The response headers. */
  readonly headers: Headers;
  /** The server's `X-Request-ID`, for support and logs. */
  readonly requestId: string | null;

  constructor(status: number, body: unknown, headers: Headers, message?: string) {
    const err = extractError(body);
    super(message ?? formatMessage(status, err, body));
    this.status = status;
    this.code = err?.code ?? null;
    this.type = err?.type ?? null;
    this.param = err?.param ?? null;
    this.body = body;
    this.headers = headers;
    this.requestId = headers.get('x-request-id');
  }

  /** The error subclass that fits `status`. */
  static generate(status: number, body: unknown, headers: Headers): APIError {
    const Cls = STATUS_CLASSES[status] ?? (status >= 500 ? InternalServerError : APIError);
    return new Cls(status, body, headers);
  }
}

export class BadRequestError extends APIError {}
export class AuthenticationError extends APIError {}
export class PermissionDeniedError extends APIError {}
export class NotFoundError extends APIError {}
export class ConflictError extends APIError {}
export class PayloadTooLargeError extends APIError {}
export class UnsupportedMediaTypeError extends APIError {}
export class UnprocessableEntityError extends APIError {}
export class RateLimitError extends APIError {
  /** Seconds the server asked us to wait (`Retry-After`), when it said. */
  get retryAfter(): number | null {
    const value = this.headers.get('retry-after');
    const seconds = value === null ? NaN : Number(value);
    return Number.isFinite(seconds) ? seconds : null;
  }
}
export class InternalServerError extends APIError {}
export class ServiceUnavailableError extends InternalServerError {}

const STATUS_CLASSES: Record<number, typeof APIError> = {
  400: BadRequestError,
  401: AuthenticationError,
  403: PermissionDeniedError,
  404: NotFoundError,
  409: ConflictError,
  413: PayloadTooLargeError,
  415: UnsupportedMediaTypeError,
  422: UnprocessableEntityError,
  429: RateLimitError,
  503: ServiceUnavailableError,
};

/** The request never got an answer (DNS, refused connection, reset, ...). */
export class APIConnectionError extends KinetoscopeError {
  constructor(message = 'Connection error.', options?: { cause?: unknown }) {
    super(message, options);
  }
}

/** The request got no answer within the client's `timeout`. */
export class APITimeoutError extends APIConnectionError {
  constructor(message = 'Request timed out.', options?: { cause?: unknown }) {
    super(message, options);
  }
}

/** The caller's AbortSignal fired. */
export class APIUserAbortError extends KinetoscopeError {
  constructor(message = 'Request was aborted.', options?: { cause?: unknown }) {
    super(message, options);
  }
}

/** A job that `poll` / `createAndPoll` / `generate` waited on ended `failed` or `canceled`. */
export class JobFailedError extends KinetoscopeError {
  /** The job in its terminal state. */
  readonly job: Video;
  /** The job's error code, when the server gave one. */
  readonly code: string | null;

  constructor(job: Video) {
    super(`job ${job.id} ended ${job.status}: ${job.error?.message ?? 'no error detail'}`);
    this.job = job;
    this.code = job.error?.code ?? null;
  }
}

/** A wait for a job (`poll`, `createAndPoll`, `generate`) ran past its `timeout`; the job goes on on the server. */
export class WaitTimeoutError extends KinetoscopeError {
  /** The job as last seen. */
  readonly job: Video;
  /** The timeout, in milliseconds. */
  readonly timeout: number;

  constructor(job: Video, timeout: number) {
    super(`job ${job.id} still ${job.status} (${job.progress}%) after ${timeout} ms`);
    this.job = job;
    this.timeout = timeout;
  }
}

function extractError(body: unknown): Partial<ErrorObject> | null {
  if (body && typeof body === 'object' && 'error' in body) {
    const err = (body as { error: unknown }).error;
    if (err && typeof err === 'object') return err as Partial<ErrorObject>;
  }
  return null;
}

function formatMessage(status: number, err: Partial<ErrorObject> | null, body: unknown): string {
  if (err?.message) return `${status} ${err.message}`;
  if (typeof body === 'string' && body) return `${status} ${body.slice(0, 500)}`;
  if (body && typeof body === 'object') return `${status} ${JSON.stringify(body).slice(0, 500)}`;
  return `${status} status code (no body)`;
}
