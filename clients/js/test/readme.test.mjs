// The README's example runs as written, against a live server.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { after, before, describe, test } from 'node:test';

import { skipReason, startServer } from './helpers/server.mjs';

const PACKAGE_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

describe('README', { skip: skipReason ?? false, timeout: 300_000 }, () => {
  let server;
  before(async () => {
    server = await startServer();
  });
  after(async () => {
    await server?.stop();
  });

  test('the example runs and writes an MP4', async () => {
    const readme = await readFile(path.join(PACKAGE_DIR, 'README.md'), 'utf8');
    const block = readme.split('## Example')[1]?.match(/```js\n([\s\S]*?)```/)?.[1];
    assert.ok(block, 'README has a js block under "## Example"');
    assert.ok(block.trim().split('\n').length <= 12, 'the example stays short');

    // The script lives inside the package so that `import 'kinetoscope-client'` resolves to this
    // package (self-reference through "exports"); it runs in a scratch folder.
    const script = path.join(PACKAGE_DIR, `.readme-example-${process.pid}.mjs`);
    const cwd = await mkdtemp(path.join(os.tmpdir(), 'kinetoscope-readme-'));
    await writeFile(script, block);
    try {
      const { stdout } = await promisify(execFile)(process.execPath, [script], {
        cwd,
        env: { ...process.env, KINETOSCOPE_BASE_URL: server.url, KINETOSCOPE_API_KEY: '' },
        timeout: 120_000,
      });
      assert.match(stdout, /completed 100%/);
      assert.match(stdout, /frames, 32x32/);
      const file = path.join(cwd, 'digits.mp4');
      assert.ok(existsSync(file));
      assert.ok((await stat(file)).size > 100);
    } finally {
      await rm(script, { force: true });
      await rm(cwd, { recursive: true, force: true });
    }
  });
});
