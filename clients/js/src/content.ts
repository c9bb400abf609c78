/** Downloaded job content (the video, a PNG, the frames zip, or a JSON document) with ways to use it. */

export class VideoContent {
  /** The bytes. */
  readonly data: ArrayBuffer;
  /** The response's Content-Type, e.g. `video/mp4` or `image/png`. */
  readonly contentType: string;
  /** The response, for its headers (its body is already read). */
  readonly response: Response;

  constructor(data: ArrayBuffer, response: Response) {
    this.data = data;
    this.response = response;
    this.contentType = response.headers.get('content-type') ?? 'application/octet-stream';
  }

  get size(): number {
    return this.data.byteLength;
  }

  arrayBuffer(): ArrayBuffer {
    return this.data;
  }

  bytes(): Uint8Array {
    return new Uint8Array(this.data);
  }

  /** The bytes as UTF-8 text. */
  text(): string {
    return new TextDecoder().decode(this.data);
  }

  /** The JSON variants (`tokens`, `confidence`) parsed, e.g. `content.json<TokenDocument>()`. */
  json<T = unknown>(): T {
    return JSON.parse(this.text()) as T;
  }

  /** A Blob with the content's type; in a browser, `URL.createObjectURL(content.blob())` plays it. */
  blob(): Blob {
    return new Blob([this.data], { type: this.contentType });
  }

  /** Node only: writes the content to `path`. */
  async writeToFile(path: string): Promise<void> {
    // A computed specifier keeps bundlers for the browser from trying to resolve node:fs.
    const specifier = 'node:fs/promises';
    const fs = (await import(specifier)) as { writeFile(path: string, data: Uint8Array): Promise<void> };
    await fs.writeFile(path, this.bytes());
  }
}
