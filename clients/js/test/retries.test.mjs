// Retries: 503 and 429 are retried honouring Retry-After; a create is retried with the same
// Idempotency-Key, so a lost response never makes a second job.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import { InternalServerError, Kinetoscope, RateLimitError, ServiceUnavailableError } from '../dist/index.js';
import { POLL_INTERVAL_S, QUICK, SLOW, cancelQuietly, skipReason, startProxy, startServer } from './helpers/server.mjs';

describe('retries and polling through a proxy', { skip: skipReason ?? false, timeout: 300_000 }, () => {
  let server;
  before(async () => {
    server = await startServer();
  });
  after(async () => {
    await server?.stop();
  });

  test('503s are retried until the server answers', async () => {
    const proxy = await startProxy(server.url, { failFirst: 2, status: 503, retryAfter: '0' });
    try {
      const client = new Kinetoscope({ baseURL: proxy.url, maxRetries: 2 });
      const models = await client.models.list();
      assert.ok(models.length >= 1);
      assert.equal(proxy.requests.length, 3);
    } finally {
      await proxy.close();
    }
  });

  test('Retry-After is honoured', async () => {
    const proxy = await startProxy(server.url, { failFirst: 1, status: 503, retryAfter: '1' });
    try {
      const start = Date.now();
      await new Kinetoscope({ baseURL: proxy.url, maxRetries: 1 }).models.list();
      assert.ok(Date.now() - start >= 950, `waited ${Date.now() - start} ms`);
      assert.equal(proxy.requests.length, 2);
    } finally {
      await proxy.close();
    }
  });

  test('when the retries run out the last error is thrown', async () => {
    const proxy = await startProxy(server.url, { failFirst: 5, status: 503, retryAfter: '0' });
    try {
      const err = await new Kinetoscope({ baseURL: proxy.url, maxRetries: 1 }).models.list().catch((e) => e);
      assert.ok(err instanceof ServiceUnavailableError && err instanceof InternalServerError, String(err));
      assert.equal(err.status, 503);
      assert.equal(err.code, 'proxy_unavailable');
      assert.equal(err.requestId, 'proxy-2');
      assert.equal(proxy.requests.length, 2);
    } finally {
      await proxy.close();
    }
  });

  test('a create whose response was lost is retried with the same key: one job', async () => {
    const proxy = await startProxy(server.url, {
      failFirst: 1,
      status: 503,
      mode: 'forward-then-fail',
      match: (req) => req.method === 'POST' && req.url === '/v1/videos',
    });
    try {
      const client = new Kinetoscope({ baseURL: proxy.url, maxRetries: 2 });
      const job = await client.videos.create({ ...QUICK, seed: 31 });
      const posts = proxy.requests.filter((r) => r.method === 'POST');
      assert.equal(posts.length, 2);
      const keys = posts.map((r) => r.headers['idempotency-key']);
      assert.ok(keys[0], 'an Idempotency-Key is sent');
      assert.equal(keys[0], keys[1], 'the retry reuses the key');
      const lost = JSON.parse(posts[0].upstreamBody);
      assert.equal(job.id, lost.id, 'the retry returns the job the lost response described');
      const recent = await client.videos.list({ limit: 5 });
      assert.equal(recent.data.filter((j) => j.request.seed === 31).length, 1, 'one job, not two');

      const second = await client.videos.create({ ...QUICK, seed: 31 });
      assert.notEqual(second.id, job.id, 'every create call has its own key');
      const explicit = await client.videos.create({ ...QUICK, seed: 32 }, { idempotencyKey: 'my-key-1' });
      const repeat = await client.videos.create({ ...QUICK, seed: 32 }, { idempotencyKey: 'my-key-1' });
      assert.equal(repeat.id, explicit.id, 'a key given twice returns the same job');
      await Promise.all([job.id, second.id, explicit.id].map((id) => client.videos.poll(id)));
    } finally {
      await proxy.close();
    }
  });

  test('createAndPoll polls at the interval the server suggests', async () => {
    const proxy = await startProxy(server.url);
    try {
      const client = new Kinetoscope({ baseURL: proxy.url });
      const job = await client.videos.createAndPoll({ ...QUICK, seed: 51, sampler: { method: 'maskgit', steps: 12 } });
      const polls = proxy.requests.filter((r) => r.method === 'GET' && r.url === `/v1/videos/${job.id}`);
      assert.ok(polls.length >= 2, `polled ${polls.length} times`);
      const gaps = polls.slice(1).map((r, i) => r.at - polls[i].at);
      for (const gap of gaps) {
        assert.ok(gap >= POLL_INTERVAL_S * 1000 - 30, `gap ${gap} ms is shorter than the suggested interval`);
        assert.ok(gap < 900, `gap ${gap} ms: the suggestion (${POLL_INTERVAL_S} s), not the 1 s default, should rule`);
      }
    } finally {
      await proxy.close();
    }
  });
});

describe('queue full (429)', { skip: skipReason ?? false, timeout: 300_000 }, () => {
  let server;
  let client;
  const jobs = [];
  before(async () => {
    server = await startServer({
      env: { KINETOSCOPE_MAX_QUEUE_LENGTH: '1', KINETOSCOPE_WORKER_CONCURRENCY: '1', KINETOSCOPE_RETRY_AFTER_SECONDS: '1' },
    });
    client = new Kinetoscope({ baseURL: server.url, maxRetries: 0 });
  });
  after(async () => {
    if (client) await cancelQuietly(client, jobs);
    await server?.stop();
  });

  test('a full queue is a RateLimitError with Retry-After; a retry succeeds once there is room', async () => {
    // Fill the queue: one slow job runs, the next ones wait, until the server refuses.
    let refused = null;
    for (let i = 0; i < 6 && !refused; i++) {
      try {
        jobs.push((await client.videos.create({ ...SLOW, seed: i })).id);
      } catch (err) {
        refused = err;
      }
    }
    assert.ok(refused instanceof RateLimitError, String(refused));
    assert.equal(refused.status, 429);
    assert.equal(refused.retryAfter, 1);
    assert.equal(typeof refused.code, 'string');

    // A client with retries keeps trying (every Retry-After second); make room after the first refusal.
    const proxy = await startProxy(server.url);
    try {
      const patient = new Kinetoscope({ baseURL: proxy.url, maxRetries: 5 });
      const pending = patient.videos.create({ ...QUICK, seed: 41 });
      const start = Date.now();
      while (proxy.requests.filter((r) => r.method === 'POST').length < 1) await new Promise((r) => setTimeout(r, 20));
      await new Promise((r) => setTimeout(r, 200));
      await cancelQuietly(client, jobs);
      const job = await pending;
      jobs.push(job.id);
      const posts = proxy.requests.filter((r) => r.method === 'POST');
      assert.ok(posts.length >= 2, `retried (${posts.length} POSTs)`);
      assert.ok(Date.now() - start >= 900, 'waited Retry-After before retrying');
      assert.equal(new Set(posts.map((r) => r.headers['idempotency-key'])).size, 1);
    } finally {
      await proxy.close();
    }
  });
});
