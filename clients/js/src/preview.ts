/** A job's preview: the whole clip as guessed after one MaskGIT decoding step (or, autoregressive, every few tokens). */

import { decodeBase64 } from './base64.js';

/** A `preview` event's data as it travels (`event: preview` on GET /v1/videos/{id}/events). */
export interface PreviewData {
  id: string;
  step: number;
  steps: number;
  decided: number;
  image: string;
  token_grid?: number[];
  /** base64, one byte per token */
  confidence?: string;
}

export class Preview {
  /** The job's id. */
  readonly id: string;
  /** This step (1-based) of `steps`; a clip of several windows counts the steps of all of them. */
  readonly step: number;
  readonly steps: number;
  /** The share of tokens decided, 0..1 (1 at the last step). */
  readonly decided: number;
  /** A data URL of the frames side by side (a PNG strip of the window being decoded, at the base size): an `<img src>`. */
  readonly image: string;
  /** `[t, h, w]` of `confidence`, or null when the server sent no map. */
  readonly token_grid: number[] | null;
  /** The sampler's confidence per token, 0..255 for 0..1, raster order over `token_grid`; null without a map. */
  readonly confidence: Uint8Array | null;

  constructor(data: PreviewData) {
    this.id = data.id;
    this.step = data.step;
    this.steps = data.steps;
    this.decided = data.decided;
    this.image = data.image;
    this.token_grid = Array.isArray(data.token_grid) ? data.token_grid : null;
    this.confidence = typeof data.confidence === 'string' ? decodeBase64(data.confidence) : null;
  }

  /** The image's media type, e.g. `image/png`. */
  get imageType(): string {
    return this.image.slice('data:'.length).split(/[;,]/, 1)[0];
  }

  /** The image file itself (PNG or WebP bytes). */
  imageBytes(): Uint8Array {
    const comma = this.image.indexOf(',');
    const head = this.image.slice(0, comma);
    const body = this.image.slice(comma + 1);
    return head.endsWith(';base64') ? decodeBase64(body) : new TextEncoder().encode(decodeURIComponent(body));
  }

  /** The confidence (0..1) of token (t, y, x), or null without a map. */
  confidenceAt(t: number, y: number, x: number): number | null {
    if (!this.confidence || !this.token_grid) return null;
    const [, h, w] = this.token_grid;
    return this.confidence[(t * h + y) * w + x] / 255;
  }
}
