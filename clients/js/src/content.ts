/** Downloaded job content (the MP4, or the thumbnail PNG) with ways to use it. */

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
