/**
 * A text/event-stream parser over fetch's body stream (the WHATWG "server-sent events"
 * interpretation rules). Written here rather than taken from a package because the SDK has no
 * runtime dependencies and EventSource cannot send an Authorization header.
 */

export interface ServerSentEvent {
  /** The `event:` field; "message" when the server named none. */
  event: string;
  /** The `data:` lines joined by "\n". */
  data: string;
  /** The last `id:` field seen, or "". */
  id: string;
  /** `retry:` in milliseconds, when the event carried one. */
  retry: number | null;
}

/** Yields each event of `body` as it completes. Breaking out of the loop cancels the stream. */
export async function* parseSSE(body: ReadableStream<Uint8Array>): AsyncGenerator<ServerSentEvent> {
  const reader = body.getReader();
  const decoder = new TextDecoder();
  let buffer = '';
  let data: string[] = [];
  let event = '';
  let lastId = '';
  let retry: number | null = null;
  let finished = false;

  // One line of the stream; returns an event when the line ends one.
  const processLine = (line: string): ServerSentEvent | null => {
    if (line === '') {
      const out = data.length ? { event: event || 'message', data: data.join('\n'), id: lastId, retry } : null;
      data = [];
      event = '';
      retry = null;
      return out;
    }
    if (line.startsWith(':')) return null; // a comment (keep-alive)
    const colon = line.indexOf(':');
    const field = colon === -1 ? line : line.slice(0, colon);
    let value = colon === -1 ? '' : line.slice(colon + 1);
    if (value.startsWith(' ')) value = value.slice(1);
    if (field === 'data') data.push(value);
    else if (field === 'event') event = value;
    else if (field === 'id' && !value.includes('\0')) lastId = value;
    else if (field === 'retry' && /^\d+$/.test(value)) retry = Number(value);
    return null;
  };

  try {
    let first = true;
    while (true) {
      const { value, done } = await reader.read();
      if (done) {
        buffer += decoder.decode();
        finished = true;
      } else {
        buffer += decoder.decode(value, { stream: true });
      }
      if (first && buffer.length) {
        if (buffer.charCodeAt(0) === 0xfeff) buffer = buffer.slice(1); // a leading BOM
        first = false;
      }
      let match: RegExpExecArray | null;
      while ((match = /\r\n|\r|\n/.exec(buffer))) {
        // A lone "\r" at the end of a chunk may be the first half of "\r\n".
        if (match[0] === '\r' && match.index === buffer.length - 1 && !finished) break;
        const line = buffer.slice(0, match.index);
        buffer = buffer.slice(match.index + match[0].length);
        const out = processLine(line);
        if (out) yield out;
      }
      // At the end of the stream an incomplete event is dropped, as the standard says.
      if (finished) return;
    }
  } finally {
    if (!finished) await reader.cancel().catch(() => {});
    reader.releaseLock();
  }
}
