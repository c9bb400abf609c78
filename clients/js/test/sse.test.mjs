// The text/event-stream parser on byte streams cut at awkward places (no HTTP involved).
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { parseSSE } from '../dist/index.js';

function streamOf(chunks) {
  const encoder = new TextEncoder();
  return new ReadableStream({
    start(controller) {
      for (const chunk of chunks) controller.enqueue(typeof chunk === 'string' ? encoder.encode(chunk) : chunk);
      controller.close();
    },
  });
}

async function collect(chunks) {
  const out = [];
  for await (const event of parseSSE(streamOf(chunks))) out.push(event);
  return out;
}

test('events split across chunks, with CRLF, CR and LF line ends', async () => {
  const events = await collect(['\uFEFFdata: {"a"', ':1}\r', '\n\r\n', ': keep-alive\n\n', 'event: job\rid: 7\rdata: x\r\r', 'data: y\n\n']);
  assert.deepEqual(
    events.map((e) => [e.event, e.data, e.id]),
    [['message', '{"a":1}', ''], ['job', 'x', '7'], ['message', 'y', '7']],
  );
});

test('multi-line data, fields without a space, retry, and an unfinished event at the end', async () => {
  const events = await collect(['data:one\ndata: two\nretry: 250\n\n', 'data: cut off']);
  assert.equal(events.length, 1);
  assert.equal(events[0].data, 'one\ntwo');
  assert.equal(events[0].retry, 250);
});

test('a multi-byte character split between chunks', async () => {
  const bytes = new TextEncoder().encode('data: é✓\n\n');
  const events = await collect([bytes.subarray(0, 7), bytes.subarray(7)]);
  assert.equal(events[0].data, 'é✓');
});

test('breaking out of the loop cancels the stream', async () => {
  let canceled = false;
  const stream = new ReadableStream({
    pull(controller) {
      controller.enqueue(new TextEncoder().encode('data: tick\n\n'));
    },
    cancel() {
      canceled = true;
    },
  });
  for await (const event of parseSSE(stream)) {
    assert.equal(event.data, 'tick');
    break;
  }
  assert.equal(canceled, true);
});
