/** Small helpers with no I/O of their own. */
import { APIUserAbortError } from './errors.js';

/** Resolves after `ms`, or rejects with APIUserAbortError as soon as `signal` fires. */
export function sleep(ms: number, signal?: AbortSignal | null): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(new APIUserAbortError(undefined, { cause: signal.reason }));
    const onAbort = () => {
      clearTimeout(timer);
      reject(new APIUserAbortError(undefined, { cause: signal?.reason }));
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, Math.max(0, ms));
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

/** A random UUID v4 (crypto.randomUUID where available: Node 19+, browsers in secure contexts). */
export function uuid4(): string {
  const c = (globalThis as { crypto?: Crypto }).crypto;
  if (c && typeof c.randomUUID === 'function') return c.randomUUID();
  const bytes = new Uint8Array(16);
  if (c && typeof c.getRandomValues === 'function') c.getRandomValues(bytes);
  else for (let i = 0; i < 16; i++) bytes[i] = Math.floor(Math.random() * 256);
  bytes[6] = (bytes[6] & 0x0f) | 0x40;
  bytes[8] = (bytes[8] & 0x3f) | 0x80;
  const hex = Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

/**
 * The wait a response asks for, in milliseconds: `X-Poll-Interval` (seconds, fractions allowed)
 * or `Retry-After` (whole seconds or an HTTP date). Null when neither is present or parseable.
 */
export function suggestedDelayMs(headers: Headers | null | undefined): number | null {
  if (!headers) return null;
  for (const name of ['x-poll-interval', 'retry-after']) {
    const value = headers.get(name);
    if (value === null || value.trim() === '') continue;
    const seconds = Number(value);
    if (Number.isFinite(seconds) && seconds >= 0) return seconds * 1000;
    const date = Date.parse(value);
    if (Number.isFinite(date)) return Math.max(0, date - Date.now());
  }
  return null;
}

/** An environment variable in Node (and Deno/Bun); undefined in browsers. */
export function readEnv(name: string): string | undefined {
  const proc = (globalThis as { process?: { env?: Record<string, string | undefined> } }).process;
  const value = proc?.env?.[name];
  return value === undefined || value === '' ? undefined : value;
}

/** Fires when any of `signals` fires (AbortSignal.any is Node 20.3+ only). Returns a cleanup. */
export function linkSignals(
  controller: AbortController,
  ...signals: (AbortSignal | null | undefined)[]
): () => void {
  const cleanups: (() => void)[] = [];
  for (const signal of signals) {
    if (!signal) continue;
    if (signal.aborted) {
      controller.abort(signal.reason);
      break;
    }
    const onAbort = () => controller.abort(signal.reason);
    signal.addEventListener('abort', onAbort, { once: true });
    cleanups.push(() => signal.removeEventListener('abort', onAbort));
  }
  return () => cleanups.forEach((fn) => fn());
}

export function isBytes(value: unknown): value is Blob | Uint8Array | ArrayBuffer {
  return (
    (typeof Blob !== 'undefined' && value instanceof Blob) ||
    value instanceof Uint8Array ||
    value instanceof ArrayBuffer
  );
}

const RETRY_INITIAL_MS = 500;
const RETRY_MAX_MS = 8_000;
const RETRY_AFTER_MAX_MS = 60_000;

/** Backoff before retry `attempt + 1`: the server's Retry-After if it gave one, else 0.5 s * 2^attempt with jitter. */
export function retryDelayMs(attempt: number, headers: Headers | null): number {
  const suggested = headers ? suggestedDelayMs(headers) : null;
  if (suggested !== null && suggested <= RETRY_AFTER_MAX_MS) return suggested;
  const base = Math.min(RETRY_INITIAL_MS * 2 ** attempt, RETRY_MAX_MS);
  return base * (1 - Math.random() * 0.25);
}
