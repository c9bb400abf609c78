// Error statuses become the right error classes; connection failures, timeouts and aborts too.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import {
  APIConnectionError,
  APIError,
  APITimeoutError,
  APIUserAbortError,
  AuthenticationError,
  BadRequestError,
  ConflictError,
  KinetoscopeError,
  Kinetoscope,
  NotFoundError,
  UnprocessableEntityError,
} from '../dist/index.js';
import { QUICK, SLOW, cancelQuietly, freePort, skipReason, startProxy, startServer, startSilentServer } from './helpers/server.mjs';

describe('error mapping', { skip: skipReason ?? false, timeout: 300_000 }, () => {
  let server;
  let client;
  const leftovers = [];

  before(async () => {
    server = await startServer();
    client = new Kinetoscope({ baseURL: server.url, maxRetries: 0 });
  });
  after(async () => {
    if (client) await cancelQuietly(client, leftovers);
    await server?.stop();
  });

  test('an unknown id is a NotFoundError with the error body and request id', async () => {
    const err = await client.videos.retrieve('video_0000000000000000000000000').catch((e) => e);
    assert.ok(err instanceof NotFoundError);
    assert.ok(err instanceof APIError && err instanceof KinetoscopeError);
    assert.equal(err.status, 404);
    assert.equal(typeof err.code, 'string');
    assert.equal(typeof err.type, 'string');
    assert.ok(err.message.includes('404'));
    assert.ok(err.body && typeof err.body.error === 'object');
    assert.ok(err.requestId, 'the server sends X-Request-ID');
    for (const call of [
      () => client.videos.cancel('video_nope'),
      () => client.videos.delete('video_nope'),
      () => client.videos.downloadContent('video_nope'),
    ]) {
      await assert.rejects(call(), NotFoundError);
    }
  });

  test('invalid fields are UnprocessableEntityError naming the field', async () => {
    const bad = await client.videos.create({ ...QUICK, size: '33x33' }).catch((e) => e);
    assert.ok(bad instanceof UnprocessableEntityError, String(bad));
    assert.equal(bad.status, 422);
    assert.ok(bad.param?.includes('size'), `param: ${bad.param}`);

    const unknownTask = await client.videos.create({ ...QUICK, task: 'teleportation' }).catch((e) => e);
    assert.ok(unknownTask instanceof UnprocessableEntityError || unknownTask instanceof BadRequestError, String(unknownTask));
    assert.ok(unknownTask.param?.includes('task'), `param: ${unknownTask.param}`);
  });

  test('a missing input video is a 4xx, not a job', async () => {
    const err = await client.videos.create({ task: 'frame_prediction', size: '32x32' }).catch((e) => e);
    assert.ok(err instanceof BadRequestError || err instanceof UnprocessableEntityError, String(err));
  });

  test('content of an unfinished job is a ConflictError', async () => {
    const job = await client.videos.create(SLOW);
    leftovers.push(job.id);
    const err = await client.videos.downloadContent(job.id).catch((e) => e);
    await client.videos.cancel(job.id);
    assert.ok(err instanceof ConflictError, String(err));
    assert.equal(err.status, 409);
  });

  test('an aborted signal stops a call before it is sent, during a poll, and during a stream', async () => {
    const controller = new AbortController();
    controller.abort();
    await assert.rejects(client.models.list({ signal: controller.signal }), APIUserAbortError);

    const job = await client.videos.create(SLOW);
    leftovers.push(job.id);

    const polling = new AbortController();
    setTimeout(() => polling.abort(), 300);
    let start = Date.now();
    await assert.rejects(client.videos.poll(job.id, { signal: polling.signal, pollInterval: 10_000 }), APIUserAbortError);
    assert.ok(Date.now() - start < 5_000, 'the abort ends the wait at once');

    const streaming = new AbortController();
    const events = [];
    start = Date.now();
    await assert.rejects(
      (async () => {
        for await (const event of client.videos.streamEvents(job.id, { signal: streaming.signal })) {
          events.push(event);
          streaming.abort();
        }
      })(),
      APIUserAbortError,
    );
    assert.ok(events.length >= 1);
    assert.ok(Date.now() - start < 10_000);

    // Aborting createAndPoll leaves the job running (the signal aborts the wait, not the job).
    const waiting = new AbortController();
    setTimeout(() => waiting.abort(), 300);
    await assert.rejects(client.videos.createAndPoll(SLOW, { signal: waiting.signal }), APIUserAbortError);
    await client.videos.cancel(job.id);
  });
});

describe('authentication', { skip: skipReason ?? false, timeout: 300_000 }, () => {
  let server;

  before(async () => {
    server = await startServer({ env: { KINETOSCOPE_API_KEYS: '["k"]' } });
  });
  after(async () => {
    await server?.stop();
  });

  test('no key and a wrong key are AuthenticationError; the right key works', async () => {
    for (const apiKey of [null, 'wrong']) {
      const err = await new Kinetoscope({ baseURL: server.url, apiKey, maxRetries: 0 }).models.list().catch((e) => e);
      assert.ok(err instanceof AuthenticationError, String(err));
      assert.equal(err.status, 401);
      assert.equal(typeof err.code, 'string');
    }
    const client = new Kinetoscope({ baseURL: server.url, apiKey: 'k' });
    const models = await client.models.list();
    assert.ok(models.length >= 1);
    const job = await client.videos.create({ ...QUICK, seed: 5 });
    const events = [];
    for await (const event of client.videos.streamEvents(job.id)) events.push(event.status);
    assert.equal(events.at(-1), 'completed');
    const content = await client.videos.downloadContent(job.id);
    assert.ok(content.size > 0);
  });
});

describe('transport failures', { timeout: 60_000 }, () => {
  test('a refused connection is an APIConnectionError, after the retries', async () => {
    const port = await freePort(); // nothing listens there
    const start = Date.now();
    const err = await new Kinetoscope({ baseURL: `http://127.0.0.1:${port}`, maxRetries: 1 }).models.list().catch((e) => e);
    assert.ok(err instanceof APIConnectionError, String(err));
    assert.ok(!(err instanceof APITimeoutError));
    assert.ok(Date.now() - start >= 300, 'one backoff before the retry');
  });

  test('no answer within the timeout is an APITimeoutError', async () => {
    const silent = await startSilentServer();
    try {
      const start = Date.now();
      const client = new Kinetoscope({ baseURL: silent.url, timeout: 300, maxRetries: 0 });
      await assert.rejects(client.videos.retrieve('video_x'), APITimeoutError);
      assert.ok(Date.now() - start < 3_000);
    } finally {
      await silent.close();
    }
  });

  test('an abort during a retry backoff ends the call at once', async () => {
    const silent = await startSilentServer(); // the proxy's target is never reached
    const proxy = await startProxy(silent.url, { failFirst: 10, retryAfter: '30' });
    try {
      const controller = new AbortController();
      setTimeout(() => controller.abort(), 300);
      const start = Date.now();
      const client = new Kinetoscope({ baseURL: proxy.url, maxRetries: 5 });
      await assert.rejects(client.models.list({ signal: controller.signal }), APIUserAbortError);
      assert.ok(Date.now() - start < 5_000);
      assert.equal(proxy.requests.length, 1);
    } finally {
      await proxy.close();
      await silent.close();
    }
  });
});
