/**
 * kinetoscope-client: the JavaScript/TypeScript client of the Kinetoscope HTTP API.
 *
 *   import { Kinetoscope } from 'kinetoscope-client';
 *   const client = new Kinetoscope({ baseURL: 'http://127.0.0.1:8000' });
 *   const { job, content } = await client.videos.generate({ task: 'class_conditional', class_label: 3 });
 */
export { Kinetoscope, VERSION } from './client.js';
export type { ClientOptions, RequestOptions } from './client.js';
export * from './errors.js';
export * from './types.js';
export { Page, PagePromise } from './pagination.js';
export { VideoContent } from './content.js';
export { Preview } from './preview.js';
export { decodeBase64 } from './base64.js';
export type { PreviewData } from './preview.js';
export { parseSSE } from './sse.js';
export type { ServerSentEvent } from './sse.js';
export { Videos, toFormData } from './resources/videos.js';
export type {
  CreateOptions,
  CreateAndPollOptions,
  DownloadOptions,
  GenerateResult,
  PollOptions,
  StreamOptions,
} from './resources/videos.js';
export { Models } from './resources/models.js';
export { verifyWebhook, WebhookVerificationError } from './webhooks.js';
export type { WebhookEventPayload } from './webhooks.js';
export { Kinetoscope as default } from './client.js';
