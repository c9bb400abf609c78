/**
 * Checking a Kinetoscope webhook delivery (Standard Webhooks signatures), with WebCrypto (Node 18+,
 * browsers, workers).
 *
 *     const event = await verifyWebhook(rawBody, request.headers, 'whsec_...');
 *     if (event.type === 'video.completed') console.log(event.data.id);
 *
 * A delivery may arrive more than once (retries keep its `webhook-id`): dedupe on it.
 */
import type { Video } from './types.js';
import { decodeBase64, encodeBase64 } from './base64.js';

export interface WebhookEventPayload {
  type: string;
  timestamp: string;
  /** The job object, as `GET /v1/videos/{id}` returns it. */
  data: Video;
}

export class WebhookVerificationError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'WebhookVerificationError';
  }
}

type HeaderSource = Headers | Record<string, string | string[] | undefined>;

function header(headers: HeaderSource, name: string): string {
  if (typeof (headers as Headers).get === 'function') {
    const value = (headers as Headers).get(name);
    if (value !== null) return value;
  } else {
    for (const [key, value] of Object.entries(headers)) {
      if (key.toLowerCase() === name && value !== undefined) return Array.isArray(value) ? value[0] : value;
    }
  }
  throw new WebhookVerificationError(`missing header ${name}`);
}

/** Compares two strings in time that does not depend on where they first differ. */
function sameText(a: string, b: string): boolean {
  if (a.length !== b.length) return false;
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= a.charCodeAt(i) ^ b.charCodeAt(i);
  return diff === 0;
}

/**
 * `payload`: the body exactly as received (string or bytes); `headers`: the request's headers.
 * Resolves to the parsed event, or rejects with WebhookVerificationError. `tolerance`: seconds
 * the `webhook-timestamp` may differ from now (replay protection).
 */
export async function verifyWebhook(
  payload: string | Uint8Array,
  headers: HeaderSource,
  secret: string,
  options: { tolerance?: number; now?: number } = {},
): Promise<WebhookEventPayload> {
  const id = header(headers, 'webhook-id');
  const timestamp = header(headers, 'webhook-timestamp');
  const signatures = header(headers, 'webhook-signature');
  const sentAt = Number(timestamp);
  if (!Number.isInteger(sentAt)) throw new WebhookVerificationError('webhook-timestamp is not an integer');
  const now = options.now ?? Date.now() / 1000;
  if (Math.abs(now - sentAt) > (options.tolerance ?? 300)) {
    throw new WebhookVerificationError('webhook-timestamp is outside the tolerance');
  }
  let key: Uint8Array;
  try {
    key = decodeBase64(secret.startsWith('whsec_') ? secret.slice(6) : secret);
  } catch {
    throw new WebhookVerificationError('the secret is not whsec_<base64>');
  }
  const body = typeof payload === 'string' ? new TextEncoder().encode(payload) : payload;
  const prefix = new TextEncoder().encode(`${id}.${sentAt}.`);
  const signed = new Uint8Array(prefix.length + body.length);
  signed.set(prefix);
  signed.set(body, prefix.length);
  const cryptoKey = await crypto.subtle.importKey('raw', key as Uint8Array<ArrayBuffer>, { name: 'HMAC', hash: 'SHA-256' },
    false, ['sign']);
  const expected = encodeBase64(await crypto.subtle.sign('HMAC', cryptoKey, signed as Uint8Array<ArrayBuffer>));
  for (const candidate of signatures.split(' ')) {
    const [version, value] = candidate.split(',', 2);
    if (version === 'v1' && value !== undefined && sameText(value, expected)) {
      return JSON.parse(new TextDecoder().decode(body)) as WebhookEventPayload;
    }
  }
  throw new WebhookVerificationError('no signature matches');
}
