// Every method of client.videos and client.models against a live server.
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';

import { JobFailedError, Kinetoscope, NotFoundError, Page, Preview, VideoContent, WaitTimeoutError } from '../dist/index.js';
import { QUICK, SLOW, cancelQuietly, skipReason, startServer } from './helpers/server.mjs';

const MASKGIT = { ...QUICK, sampler: { method: 'maskgit', steps: 4 } }; // 4 steps: 4 previews
const isMP4 = (bytes) => Buffer.from(bytes.subarray(4, 8)).toString('latin1') === 'ftyp';
const PNG_SIGNATURE = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a];

describe('videos and models', { skip: skipReason ?? false, timeout: 300_000 }, () => {
  let server;
  let client;
  let completed; // a finished quick job, shared by the download and input tests
  let mp4; // its bytes
  const leftovers = [];

  before(async () => {
    server = await startServer();
    client = new Kinetoscope({ baseURL: server.url, maxRetries: 0 });
  });

  after(async () => {
    if (client) await cancelQuietly(client, leftovers);
    await server?.stop();
  });

  test('tokens.tokenize and tokens.detokenize round-trip a video', async () => {
    const job = await client.videos.createAndPoll({ task: 'class_conditional', class_label: 2, size: '32x32', seed: 4,
      sampler: { method: 'maskgit', steps: 2 } });
    const video = await client.videos.downloadContent(job.id);
    const result = await client.tokens.tokenize(new Uint8Array(video.data));
    const [t, h, w] = result.token_grid;
    assert.equal(result.tokens.length, t * h * w);
    assert.ok(result.tokens.every((id) => id >= 0 && id < result.vocab_size));
    const back = await client.tokens.detokenize(result.tokens, { size: '64x64' });
    assert.equal(back.contentType, 'video/mp4');
    assert.ok(back.data.byteLength > 100);
    const stored = JSON.parse(new TextDecoder().decode((await client.videos.downloadContent(job.id, { variant: 'tokens' })).data));
    assert.deepEqual(stored.token_grid, result.token_grid);
    const scored = await client.tokens.score({ tokens: result.tokens });
    assert.ok(scored.log_likelihood < 0 && scored.per_latent_frame.length === t);
    assert.deepEqual(await client.tokens.score({ video: new Uint8Array(video.data) }), scored);
  });

  test('models.list describes the demo model', async () => {
    const models = await client.models.list();
    assert.ok(Array.isArray(models) && models.length >= 1);
    const model = models[0];
    assert.equal(typeof model.id, 'string');
    assert.ok(model.tasks.includes('class_conditional'));
    assert.ok(model.sizes.includes('32x32'));
    assert.ok(model.classes.length > 1);
    assert.ok(model.window_frames > 0);
    assert.ok(model.samplers.includes('maskgit'));
    assert.equal(typeof model.backend, 'string');
    assert.deepEqual(await client.models.retrieve(model.id), model);
    await assert.rejects(client.models.retrieve('no-such-model'), NotFoundError);
  });

  test('create returns a job; retrieve returns the same job', async () => {
    const job = await client.videos.create({ ...QUICK, seed: 11 });
    assert.equal(job.object, 'video');
    assert.match(job.id, /\S/);
    assert.equal(job.task, 'class_conditional');
    assert.ok(['queued', 'in_progress', 'completed'].includes(job.status));
    assert.equal(job.size, '32x32');
    assert.equal(job.seed, 11);
    assert.equal(job.request.sampler.steps, 2);
    const again = await client.videos.retrieve(job.id);
    assert.equal(again.id, job.id);
    await client.videos.poll(job.id);
  });

  test('createAndPoll waits for completion and reports rising progress', async () => {
    const seen = [];
    const job = await client.videos.createAndPoll({ ...QUICK, seed: 12 }, { onProgress: (j) => seen.push(j) });
    assert.equal(job.status, 'completed');
    assert.equal(job.progress, 100);
    assert.ok(job.completed_at >= job.created_at);
    assert.ok(seen.length >= 1);
    assert.equal(seen.at(-1).status, 'completed');
    for (let i = 1; i < seen.length; i++) assert.ok(seen[i].progress >= seen[i - 1].progress);
    completed = job;
  });

  test('create with wait holds the request until the job is done', async () => {
    const job = await client.videos.create({ ...QUICK, seed: 13 }, { wait: 60 });
    assert.equal(job.status, 'completed');
  });

  test('downloadContent gives the MP4, the thumbnail PNG, and writes a file', async () => {
    const content = await client.videos.downloadContent(completed.id);
    assert.ok(content instanceof VideoContent);
    assert.match(content.contentType, /^video\/mp4/);
    assert.ok(content.size > 100);
    assert.ok(isMP4(content.bytes()), 'an ISO-BMFF file starts with an ftyp box');
    assert.equal(content.blob().type, content.contentType);
    mp4 = content.bytes();

    const thumb = await client.videos.downloadContent(completed.id, { variant: 'thumbnail' });
    assert.match(thumb.contentType, /^image\/png/);
    assert.deepEqual([...thumb.bytes().subarray(0, 8)], PNG_SIGNATURE);

    const dir = await mkdtemp(path.join(os.tmpdir(), 'kinetoscope-js-'));
    try {
      const file = path.join(dir, 'out.mp4');
      await content.writeToFile(file);
      assert.deepEqual(new Uint8Array(await readFile(file)), mp4);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  test('streamEvents yields the job at each change and ends at the terminal status', async () => {
    const job = await client.videos.create({ ...QUICK, seed: 14, sampler: { method: 'maskgit', steps: 6 } });
    const events = [];
    for await (const event of client.videos.streamEvents(job.id)) events.push(event);
    assert.ok(events.length >= 1);
    for (const e of events) assert.equal(e.id, job.id);
    assert.equal(events.at(-1).status, 'completed');
    assert.equal(events.at(-1).progress, 100);
    for (let i = 1; i < events.length; i++) assert.ok(events[i].progress >= events[i - 1].progress);
    // A finished job's stream gives its final state and closes.
    const replay = [];
    for await (const event of client.videos.streamEvents(job.id)) replay.push(event);
    assert.equal(replay.at(-1).status, 'completed');
  });

  test('list pages newest first and auto-paginates', async () => {
    const made = [];
    for (let i = 0; i < 3; i++) made.push((await client.videos.create({ ...QUICK, seed: 20 + i })).id);
    const page = await client.videos.list({ limit: 2 });
    assert.ok(page instanceof Page);
    assert.equal(page.data.length, 2);
    assert.equal(page.hasMore, true);
    assert.deepEqual(page.data.map((j) => j.id), [made[2], made[1]]);
    const next = await page.getNextPage();
    assert.equal(next.data[0].id, made[0]);

    const all = [];
    for await (const job of client.videos.list({ limit: 2 })) all.push(job.id);
    assert.equal(new Set(all).size, all.length, 'no job twice');
    for (const id of made) assert.ok(all.includes(id));
    assert.ok(all.indexOf(made[2]) < all.indexOf(made[0]), 'newest first');
    await Promise.all(made.map((id) => client.videos.poll(id)));
  });

  test('cancel stops a running job; waiting on it throws JobFailedError', async () => {
    const job = await client.videos.create(SLOW);
    leftovers.push(job.id);
    const canceled = await client.videos.cancel(job.id);
    assert.equal(canceled.id, job.id);
    const again = await client.videos.cancel(job.id); // idempotent
    assert.equal(again.id, job.id);
    await assert.rejects(client.videos.poll(job.id, { timeout: 60_000 }), (err) => {
      assert.ok(err instanceof JobFailedError);
      assert.equal(err.job.status, 'canceled');
      return true;
    });
  });

  test('a wait that runs past its timeout is a WaitTimeoutError; the job goes on', async () => {
    const job = await client.videos.create(SLOW);
    leftovers.push(job.id);
    const start = Date.now();
    const err = await client.videos.poll(job.id, { timeout: 500, pollInterval: 100 }).catch((e) => e);
    assert.ok(err instanceof WaitTimeoutError, String(err));
    assert.equal(err.job.id, job.id);
    assert.ok(Date.now() - start < 5_000);
    assert.ok(!['failed', 'canceled'].includes((await client.videos.retrieve(job.id)).status));
    await client.videos.cancel(job.id);
  });

  test('delete removes the job and its content', async () => {
    const job = await client.videos.createAndPoll({ ...QUICK, seed: 15 });
    const deleted = await client.videos.delete(job.id);
    assert.deepEqual({ id: deleted.id, deleted: deleted.deleted }, { id: job.id, deleted: true });
    await assert.rejects(client.videos.retrieve(job.id), NotFoundError);
    await assert.rejects(client.videos.downloadContent(job.id), NotFoundError);
  });

  test('an input video goes up as multipart bytes, as a Blob, as base64 JSON, or by id', async () => {
    assert.ok(mp4, 'the download test ran');
    const base = { task: 'frame_prediction', size: '32x32', condition_frames: 4, seed: 3, sampler: { method: 'maskgit', steps: 2 } };
    const inputs = {
      bytes: { input_video: mp4 },
      blob: { input_video: new Blob([mp4], { type: 'video/mp4' }) },
      base64: { input_video: Buffer.from(mp4).toString('base64') },
      id: { input_video_id: completed.id },
    };
    for (const [how, input] of Object.entries(inputs)) {
      const job = await client.videos.createAndPoll({ ...base, ...input });
      assert.equal(job.status, 'completed', how);
      assert.equal(job.task, 'frame_prediction', how);
      assert.equal(job.request.has_input || job.request.input_video_id !== null, true, how);
    }
  });

  test('generate creates, waits and downloads in one call', async () => {
    const { job, content } = await client.videos.generate({ ...QUICK, seed: 16 });
    assert.equal(job.status, 'completed');
    assert.ok(isMP4(content.bytes()));
  });
  test('streamPreviews yields each step; the preview, confidence and tokens variants match', async () => {
    const job = await client.videos.create({ ...MASKGIT, seed: 5, previews: true });
    const previews = [];
    for await (const p of client.videos.streamPreviews(job.id)) previews.push(p);
    assert.deepEqual(previews.map((p) => p.step), [1, 2, 3, 4]);
    assert.ok(previews.every((p) => p instanceof Preview && p.steps === 4 && p.id === job.id));
    const decided = previews.map((p) => p.decided);
    assert.deepEqual(decided, [...decided].sort((a, b) => a - b));
    assert.ok(decided[0] > 0 && decided[0] < 1 && decided.at(-1) === 1);
    assert.ok(previews.every((p) => p.imageType === 'image/png' && p.image.startsWith('data:image/png;base64,')));
    assert.notEqual(previews[0].image, previews.at(-1).image);
    const last = previews.at(-1);
    const [t, h, w] = last.token_grid;
    assert.equal(last.confidence.length, t * h * w);

    const latest = await client.videos.downloadContent(job.id, { variant: 'preview' });
    assert.match(latest.contentType, /^image\/png/);
    assert.deepEqual(latest.bytes(), last.imageBytes());
    const confidence = (await client.videos.downloadContent(job.id, { variant: 'confidence' })).json();
    assert.deepEqual(confidence.token_grid, [t, h, w]);
    assert.deepEqual(confidence.windows[0], [...last.confidence]);
    const tokens = (await client.videos.downloadContent(job.id, { variant: 'tokens' })).json();
    assert.equal(tokens.windows[0].length, t * h * w);

    // streamEvents with previews: both kinds, ending with the completed job
    const items = [];
    for await (const item of client.videos.streamEvents(job.id, { previews: true })) items.push(item);
    assert.deepEqual(items.filter((i) => i instanceof Preview).map((p) => p.step), [1, 2, 3, 4]);
    assert.equal(items.at(-1).status, 'completed');
  });

  test('edit keeps every token outside the box', async () => {
    const source = await client.videos.create({ ...MASKGIT, seed: 2 }, { wait: 60 });
    // The right half of the 32x32 clip: token columns 4..7 of 8 are generated again.
    const edited = await client.videos.edit(source.id, { mask: [0.5, 0, 1, 1], seed: 9,
      sampler: { method: 'maskgit', steps: 4 } }, { wait: 60 });
    assert.equal(edited.status, 'completed');
    assert.equal(edited.task, 'inpainting');
    assert.equal(edited.request.edit_from, source.id);
    assert.deepEqual(edited.request.mask, { box: [0.5, 0, 1, 1] });
    const [before, after] = await Promise.all([source, edited].map(async (j) =>
      (await client.videos.downloadContent(j.id, { variant: 'tokens' })).json()));
    const [, , w] = before.token_grid;
    const left = (_, i) => i % w < w / 2;
    assert.deepEqual(after.windows[0].filter(left), before.windows[0].filter(left));
    const right = (_, i) => i % w >= w / 2;
    assert.notDeepEqual(after.windows[0].filter(right), before.windows[0].filter(right));
  });

  test('streamPreviews of a canceled job throws JobFailedError', async () => {
    // The cancel is sent at the first preview; should the job complete before it lands (a very
    // fast runner: it changes nothing then), the stream must end quietly, and a new job is tried
    // rather than the test failing or passing by chance.
    for (let attempt = 0; attempt < 3; attempt++) {
      const job = await client.videos.create({ ...SLOW, previews: true });
      leftovers.push(job.id);
      const steps = [];
      try {
        for await (const p of client.videos.streamPreviews(job.id)) {
          steps.push(p.step);
          if (steps.length === 1) await client.videos.cancel(job.id); // it stops at its next step
        }
      } catch (err) {
        assert.ok(err instanceof JobFailedError && err.job.status === 'canceled', String(err));
        assert.equal(steps[0], 1);
        return;
      }
      assert.equal((await client.videos.retrieve(job.id)).status, 'completed'); // it beat the cancel
    }
    assert.fail('the job completed before its cancel landed, three times');
  });
});
