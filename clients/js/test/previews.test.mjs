// Preview objects and the previews of an event stream that drops and is reopened, served by a
// small local HTTP server (the live-server tests are in videos.test.mjs).
import assert from 'node:assert/strict';
import http from 'node:http';
import { after, before, describe, test } from 'node:test';

import { Kinetoscope, Preview } from '../dist/index.js';

const PNG = Buffer.from('\x89PNG-ish', 'latin1');
const preview = (step, decided) => `event: preview\ndata: ${JSON.stringify({
  id: 'video_1', step, steps: 2, decided, image: `data:image/png;base64,${PNG.toString('base64')}`,
  token_grid: [1, 2, 3], confidence: Buffer.from([0, 51, 102, 153, 204, 255]).toString('base64'),
})}\n\n`;
const job = (status, progress) => `data: ${JSON.stringify({ id: 'video_1', status, progress })}\n\n`;

test('a Preview decodes its image and confidence map', () => {
  const [one] = [new Preview(JSON.parse(preview(1, 0.5).split('data: ')[1]))];
  assert.equal(one.imageType, 'image/png');
  assert.deepEqual(Buffer.from(one.imageBytes()), PNG);
  assert.deepEqual([...one.confidence], [0, 51, 102, 153, 204, 255]);
  assert.equal(one.confidenceAt(0, 1, 2), 1);
  assert.equal(one.confidenceAt(0, 0, 1), 0.2);
});

describe('a reopened stream', () => {
  let server;
  let url;
  let connections = 0;

  before(async () => {
    // The first connection breaks off after step 1; the second replays it, then finishes.
    server = http.createServer((req, res) => {
      connections++;
      res.writeHead(200, { 'Content-Type': 'text/event-stream' });
      if (connections === 1) {
        res.write(preview(1, 0.5) + job('in_progress', 50));
        setTimeout(() => res.destroy(), 50);
      } else {
        res.end(preview(1, 0.5) + job('in_progress', 50) + preview(2, 1) + job('completed', 100));
      }
    });
    await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
    url = `http://127.0.0.1:${server.address().port}`;
  });

  after(() => new Promise((resolve) => server.close(resolve)));

  test('yields each preview once, in order, and jobs as they come', async () => {
    const client = new Kinetoscope({ baseURL: url, maxRetries: 2 });
    const items = [];
    for await (const item of client.videos.streamEvents('video_1', { previews: true })) items.push(item);
    assert.equal(connections, 2);
    assert.deepEqual(items.map((i) => (i instanceof Preview ? `preview ${i.step}` : i.status)),
      ['preview 1', 'in_progress', 'in_progress', 'preview 2', 'completed']);
    connections = 0;
    const steps = [];
    for await (const p of client.videos.streamPreviews('video_1')) steps.push(p.step);
    assert.deepEqual(steps, [1, 2]);
    connections = 0;
    const jobs = [];
    for await (const j of client.videos.streamEvents('video_1')) jobs.push(j.status);
    assert.deepEqual(jobs, ['in_progress', 'in_progress', 'completed']); // previews not asked for
  });
});
