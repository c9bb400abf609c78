// Starts a real Kinetoscope server (`kinetoscope serve`, as python -m cli serve) for the tests, and small real HTTP
// proxies that misbehave on purpose. No HTTP is mocked: every request reaches a live server.
import { spawn } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../..');
export const PYTHON = process.env.KINETOSCOPE_PYTHON ?? path.join(REPO_ROOT, '.venv/bin/python');
export const MODEL_REPOSITORY =
  process.env.KINETOSCOPE_TEST_MODEL_REPOSITORY ?? path.join(REPO_ROOT, 'model_repository');

/** Why the live-server tests cannot run here, or null when they can. */
export const skipReason = (() => {
  if (!existsSync(PYTHON)) return `no Python at ${PYTHON} (set KINETOSCOPE_PYTHON)`;
  if (!existsSync(path.join(REPO_ROOT, 'cli/__main__.py'))) {
    return 'the server command (cli/) is not built yet';
  }
  const models = existsSync(MODEL_REPOSITORY)
    ? readdirSync(MODEL_REPOSITORY).filter((d) => existsSync(path.join(MODEL_REPOSITORY, d, 'manifest.json')))
    : [];
  if (models.length === 0) return `no model repository with a manifest.json under ${MODEL_REPOSITORY}`;
  return null;
})();

/** The poll interval the test servers suggest (KINETOSCOPE_POLL_INTERVAL_SECONDS; default 1 s). */
export const POLL_INTERVAL_S = 0.25;

/** A quick request: the demo model's smallest, fastest generation. */
export const QUICK = Object.freeze({
  task: 'class_conditional',
  class_label: 1,
  size: '32x32',
  seed: 0,
  sampler: { method: 'maskgit', steps: 2 },
});

/** A request that runs for a long time on a CPU (for cancel, 409 and queue-full tests). */
export const SLOW = Object.freeze({
  task: 'class_conditional',
  class_label: 2,
  size: '128x128',
  num_frames: 64,
  seed: 0,
  sampler: { method: 'maskgit', steps: 64 },
});

export function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

/**
 * Spawns the server from the repo root on a free port and waits for /readyz.
 * `env`: extra KINETOSCOPE_* settings. Returns { url, port, stop(), output() }.
 */
export async function startServer({ env = {}, readyTimeoutMs = 120_000 } = {}) {
  const port = await freePort();
  const args = ['-m', 'cli', 'serve', '--host', '127.0.0.1', '--port', String(port), '--model-repository', MODEL_REPOSITORY];
  const child = spawn(PYTHON, args, {
    cwd: REPO_ROOT,
    // KINETOSCOPE_JOB_STORE_DIR '': jobs in memory, so no test server sees another's jobs.
    env: { ...process.env, PYTHONUNBUFFERED: '1', KINETOSCOPE_POLL_INTERVAL_SECONDS: String(POLL_INTERVAL_S),
      KINETOSCOPE_JOB_STORE_DIR: '', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  const keep = (chunk) => {
    output = (output + chunk.toString()).slice(-20_000);
  };
  child.stdout.on('data', keep);
  child.stderr.on('data', keep);
  const exited = new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
  let exitInfo = null;
  exited.then((info) => (exitInfo = info));

  const url = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + readyTimeoutMs;
  for (;;) {
    if (exitInfo) throw new Error(`server exited (${JSON.stringify(exitInfo)}) before it was ready:\n${output}`);
    try {
      const res = await fetch(`${url}/readyz`);
      await res.arrayBuffer();
      if (res.ok) break;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`server not ready after ${readyTimeoutMs} ms:\n${output}`);
    }
    await new Promise((r) => setTimeout(r, 200));
  }

  return {
    url,
    port,
    output: () => output,
    async stop() {
      if (exitInfo) return;
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
      await exited;
      clearTimeout(timer);
    },
  };
}

/**
 * A real HTTP proxy in front of `target`. For requests that `match`, the first `failFirst` get
 * `status` (with `Retry-After: retryAfter`) instead of an answer:
 *   mode 'reject'          the request never reaches the target;
 *   mode 'forward-then-fail' the target handles it, then its answer is thrown away
 *                          (a response lost on the way back: the case idempotency keys exist for).
 * Records every request it sees in `requests` ({ method, url, headers, at, upstreamBody }).
 */
export async function startProxy(target, { failFirst = 0, status = 503, retryAfter = '0', mode = 'reject', match = () => true } = {}) {
  const targetURL = new URL(target);
  const requests = [];
  let failed = 0;
  const server = http.createServer((req, res) => {
    const record = { method: req.method, url: req.url, headers: req.headers, at: Date.now(), upstreamBody: null };
    requests.push(record);
    const fail = match(req) && failed < failFirst;
    if (fail) failed++;
    const sendFailure = () => {
      const body = JSON.stringify({ error: { type: 'server_error', code: 'proxy_unavailable', message: 'injected by the test proxy', param: null } });
      res.writeHead(status, { 'Content-Type': 'application/json', 'Retry-After': retryAfter, 'X-Request-ID': `proxy-${requests.length}` });
      res.end(body);
    };
    if (fail && mode === 'reject') {
      req.resume();
      req.on('end', sendFailure);
      return;
    }
    const upstream = http.request(
      { host: targetURL.hostname, port: targetURL.port, method: req.method, path: req.url, headers: { ...req.headers, host: targetURL.host } },
      (upRes) => {
        if (fail) {
          const chunks = [];
          upRes.on('data', (c) => chunks.push(c));
          upRes.on('end', () => {
            record.upstreamBody = Buffer.concat(chunks).toString();
            sendFailure();
          });
          return;
        }
        res.writeHead(upRes.statusCode, upRes.headers);
        upRes.pipe(res);
      },
    );
    upstream.on('error', (err) => {
      res.writeHead(502, { 'Content-Type': 'text/plain' });
      res.end(String(err));
    });
    req.pipe(upstream);
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${server.address().port}`,
    requests,
    get failed() {
      return failed;
    },
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections?.();
        server.close(() => resolve());
      }),
  };
}

/** An HTTP server that accepts connections and never answers (for timeouts). */
export async function startSilentServer() {
  const sockets = new Set();
  const server = http.createServer(() => {});
  server.on('connection', (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${server.address().port}`,
    close: () =>
      new Promise((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}

/** Cancels (and ignores errors of) jobs a test left running, so they stop using the CPU. */
export async function cancelQuietly(client, ids) {
  await Promise.all(ids.map((id) => client.videos.cancel(id).catch(() => {})));
}
