"""End to end with the real exported demo model and real processes.

1. A live `kinetoscope serve` (embedded queue and worker, as `make serve` runs it) on a free port:
   every task of tasks.md runs through HTTP, with a client written from api.md alone (httpx, not
   our SDK): base64, multipart and input_video_id inputs; MP4 and PNG downloads, Range, SSE,
   cancel, models, readiness, metrics, determinism under batching, and a corrupt input.
2. Redis: an API `kinetoscope serve --redis-url` and `kinetoscope worker` processes on a private
   redis-server: a SIGKILLed worker's job finishes on the other one, and a kill -9 of Redis
   between enqueue and completion loses nothing.

Every process logs to the test's tmp dir (`<name>.log`); assertion messages name the file.
Skips only when the model repository (`make model`) or redis-server is missing.
"""
from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import io
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

from live_server import free_port

REPO_ROOT = Path(__file__).resolve().parent.parent
MODEL_DIR = REPO_ROOT / "model_repository" / "moving-digits"
MODEL_ID = "moving-digits"
START_TIMEOUT = 180.0  # loading the ONNX sessions on a busy 2-core machine
JOB_TIMEOUT = 240.0  # generous: the machine is shared
TERMINAL = ("completed", "failed", "canceled")
# decode_video limits for reading our own downloads back
DECODE_LIMITS = dict(max_bytes=64 << 20, max_frames=1024, max_pixels=1 << 22)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


# ---------------------------------------------------------------------------------------------
# processes
# ---------------------------------------------------------------------------------------------
def _require_model() -> None:
    if not (MODEL_DIR / "manifest.json").is_file():
        pytest.skip(f"no exported demo model at {MODEL_DIR} (run `make model` / `kinetoscope export onnx`)")


def _kinetoscope_command() -> list[str]:
    """The installed `kinetoscope` console script of this interpreter's environment."""
    script = Path(sys.executable).parent / "kinetoscope"
    if script.is_file():
        return [str(script)]
    return [sys.executable, "-m", "cli"]  # cli/__main__.py runs the Typer app


def _env(**settings: object) -> dict[str, str]:
    """The subprocess environment: ours without any KINETOSCOPE_* (a developer's
    KINETOSCOPE_REDIS_URL must not turn the embedded server into a Redis one), plus `settings`
    as KINETOSCOPE_<NAME>."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("KINETOSCOPE_")}
    env.update(PYTHONUNBUFFERED="1", KINETOSCOPE_MODEL_REPOSITORY=str(MODEL_DIR), KINETOSCOPE_LOG_LEVEL="info",
               KINETOSCOPE_JOB_STORE_DIR="")  # in memory unless a test gives it a folder
    env.update({f"KINETOSCOPE_{k.upper()}": str(v) for k, v in settings.items()})
    return env


class Proc:
    """One kinetoscope subprocess whose stdout+stderr go to `<log_dir>/<name>.log`."""

    def __init__(self, name: str, args: list[str], env: dict[str, str], log_dir: Path):
        self.name, self.args, self.env = name, args, env
        self.log_path = log_dir / f"{name}.log"
        self.process: subprocess.Popen | None = None
        self._log = None

    def start(self) -> "Proc":
        self._log = open(self.log_path, "ab")
        self._log.write(f"==== start {' '.join(self.args)}\n".encode())
        self._log.flush()
        self.process = subprocess.Popen(_kinetoscope_command() + self.args, cwd=REPO_ROOT, env=self.env,
                                        stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        return self

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def tail(self, lines: int = 40) -> str:
        return f"--- last lines of {self.log_path} ---\n" + "\n".join(self.log().splitlines()[-lines:])

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs."""
        if self.alive():
            self.process.kill()
        if self.process is not None:
            self.process.wait()
        self._close_log()

    def stop(self, grace: float = 30.0) -> None:
        """SIGTERM, then SIGKILL after `grace` seconds."""
        if self.alive():
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(grace)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._close_log()

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None

    def wait_for_log(self, pattern: str, timeout: float) -> re.Match:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            match = re.search(pattern, self.log())
            if match:
                return match
            if not self.alive():
                break
            time.sleep(0.2)
        raise AssertionError(f"{self.name}: no log line matching {pattern!r}\n{self.tail()}")


class Server:
    """A `kinetoscope serve` process and an httpx client on it."""

    def __init__(self, proc: Proc, port: int):
        self.proc, self.port = proc, port
        self.url = f"http://127.0.0.1:{port}"
        self.client = httpx.Client(base_url=self.url, timeout=httpx.Timeout(120.0, connect=10.0))

    def wait_ready(self, timeout: float = START_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        last = "no answer"
        while time.monotonic() < deadline:
            if not self.proc.alive():
                raise AssertionError(f"{self.proc.name} exited with {self.proc.process.returncode}\n{self.proc.tail()}")
            try:
                r = self.client.get("/readyz", timeout=5)
                if r.status_code == 200 and r.json().get("status") == "ready":
                    return
                last = f"{r.status_code} {r.text[:200]}"
            except httpx.HTTPError as exc:
                last = repr(exc)
            time.sleep(0.25)
        raise AssertionError(f"{self.proc.name} not ready after {timeout:.0f} s (last: {last})\n{self.proc.tail()}")

    def close(self) -> None:
        self.client.close()
        self.proc.stop()


def start_server(log_dir: Path, name: str = "serve", extra_args: tuple[str, ...] = (), **settings) -> Server:
    """`kinetoscope serve --port <free> --model-repository <demo>`, ready. A port taken between
    choosing and binding gets one more try on another port."""
    for attempt in range(2):
        port = free_port()
        proc = Proc(name, ["serve", "--port", str(port), "--model-repository", str(MODEL_DIR), *extra_args],
                    _env(**settings), log_dir).start()
        server = Server(proc, port)
        try:
            server.wait_ready()
            return server
        except AssertionError:
            server.close()
            if attempt == 1 or "address already in use" not in proc.log().lower():
                raise
    raise AssertionError("unreachable")


# ---------------------------------------------------------------------------------------------
# a client written from api.md
# ---------------------------------------------------------------------------------------------
def create(client: httpx.Client, body: dict | None = None, *, files=None, data=None, expect: int | tuple = 202,
           headers: dict | None = None) -> dict:
    """POST /v1/videos; returns the job object (asserting the status)."""
    if files is not None:
        r = client.post("/v1/videos", files=files, data=data, headers=headers)
    else:
        r = client.post("/v1/videos", json=body, headers=headers)
    expected = (expect,) if isinstance(expect, int) else expect
    assert r.status_code in expected, f"POST /v1/videos {body or data}: {r.status_code} {r.text[:500]}"
    return r.json()


def get_job(client: httpx.Client, job_id: str) -> dict:
    r = client.get(f"/v1/videos/{job_id}")
    assert r.status_code == 200, f"GET {job_id}: {r.status_code} {r.text[:300]}"
    return r.json()


def wait_terminal(client: httpx.Client, job_id: str, timeout: float = JOB_TIMEOUT, log: Proc | None = None) -> dict:
    """Waits with `Prefer: wait=N` (api.md) until the job is completed, failed or canceled."""
    deadline = time.monotonic() + timeout
    job = None
    while time.monotonic() < deadline:
        wait = max(1, min(20, int(deadline - time.monotonic())))
        r = client.get(f"/v1/videos/{job_id}", headers={"Prefer": f"wait={wait}"}, timeout=wait + 30)
        assert r.status_code == 200, f"GET {job_id}: {r.status_code} {r.text[:300]}"
        job = r.json()
        if job["status"] in TERMINAL:
            return job
    raise AssertionError(f"job {job_id} not finished after {timeout:.0f} s: {job}\n{log.tail() if log else ''}")


def wait_status(client: httpx.Client, job_id: str, predicate, timeout: float, what: str) -> dict:
    deadline = time.monotonic() + timeout
    job = get_job(client, job_id)
    while not predicate(job):
        assert time.monotonic() < deadline, f"job {job_id}: never {what}; last {job}"
        assert job["status"] not in TERMINAL or predicate(job), f"job {job_id} ended before {what}: {job}"
        time.sleep(0.1)
        job = get_job(client, job_id)
    return job


def content(client: httpx.Client, job_id: str, variant: str = "video", headers: dict | None = None) -> httpx.Response:
    return client.get(f"/v1/videos/{job_id}/content", params={"variant": variant}, headers=headers)


def decode_mp4(data: bytes) -> np.ndarray:
    from server.video import decode_video

    return decode_video(data, **DECODE_LIMITS).frames


def check_completed(client: httpx.Client, job: dict, *, frames: int, size: str, log: Proc | None = None) -> np.ndarray:
    """A completed job per api.md; its MP4 decodes to `frames` frames of `size`; its thumbnail is
    a PNG of that size. Returns the decoded frames."""
    from PIL import Image

    assert job["status"] == "completed", f"job {job['id']} ended {job['status']}: {job.get('error')}\n" + (log.tail() if log else "")
    assert job["progress"] == 100 and job["error"] is None, job
    assert job["object"] == "video" and job["model"] == MODEL_ID
    assert job["size"] == size and job["num_frames"] == frames, job
    assert job["completed_at"] >= job["started_at"] >= job["created_at"] - 1
    r = content(client, job["id"])
    assert r.status_code == 200 and r.headers["content-type"].startswith("video/mp4"), r.headers
    assert r.content[4:8] == b"ftyp", "not an MP4"
    width, height = (int(v) for v in size.split("x"))
    video = decode_mp4(r.content)
    assert video.shape == (frames, height, width, 3), video.shape
    assert video.dtype == np.uint8 and video.std() > 1.0, "the video is blank"
    thumb = content(client, job["id"], "thumbnail")
    assert thumb.status_code == 200 and thumb.headers["content-type"].startswith("image/png"), thumb.headers
    assert thumb.content.startswith(b"\x89PNG\r\n\x1a\n")
    image = Image.open(io.BytesIO(thumb.content))
    assert image.size == (width, height)
    # the thumbnail is the first frame (up to the MP4's lossy coding)
    first = np.asarray(image.convert("RGB"), dtype=np.float32)
    assert np.abs(first - video[0].astype(np.float32)).mean() < 12.0
    return video


def run_job(client: httpx.Client, body: dict | None = None, *, frames: int, size: str, log: Proc | None = None,
            **create_kwargs) -> tuple[dict, np.ndarray]:
    job = create(client, body, **create_kwargs)
    assert job["status"] in ("queued", "in_progress", "completed"), job
    done = wait_terminal(client, job["id"], log=log)
    return done, check_completed(client, done, frames=frames, size=size, log=log)


def sse_events(client: httpx.Client, job_id: str, timeout: float = JOB_TIMEOUT) -> list[dict]:
    """GET /v1/videos/{id}/events until the server closes it; the job objects of its events."""
    events, data = [], []
    with client.stream("GET", f"/v1/videos/{job_id}/events", timeout=httpx.Timeout(timeout, connect=10)) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream"), r.headers
        for line in r.iter_lines():
            if line.startswith("data:"):
                data.append(line[5:].lstrip())
            elif line == "" and data:
                events.append(json.loads("\n".join(data)))
                data = []
    if data:
        events.append(json.loads("\n".join(data)))
    return events


def metric_samples(client: httpx.Client, name: str) -> dict[str, float]:
    """`name{labels} value` lines of GET /metrics -> {"{labels}": value}."""
    r = client.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain"), r.headers
    samples = {}
    for line in r.text.splitlines():
        m = re.match(rf"^{re.escape(name)}(\{{[^}}]*\}})?\s+(\S+)$", line)
        if m:
            samples[m.group(1) or ""] = float(m.group(2))
    return samples


def sampler(steps: int = 3) -> dict:
    return {"method": "maskgit", "steps": steps}


# ---------------------------------------------------------------------------------------------
# given pixels, from tasks.md (independent of server/tasks.py)
# ---------------------------------------------------------------------------------------------
def given_mask(task: str, frames: int, height: int, width: int, *, preset=None, box=None, k=None) -> np.ndarray:
    given = np.zeros((frames, height, width), dtype=bool)
    qh, qw, hh, hw = height // 4, width // 4, height // 2, width // 2
    if task in ("class_conditional_frame_prediction", "frame_prediction"):
        given[:k] = True
    elif task == "frame_interpolation":
        given[0] = given[-1] = True
    elif task in ("inpainting", "outpainting"):
        region = np.zeros_like(given)
        if box is not None:
            x0, y0, x1, y1 = box
            region[:, round(y0 * height):round(y1 * height), round(x0 * width):round(x1 * width)] = True
        elif preset == "center":
            region[:, qh:qh + hh, qw:qw + hw] = True
        elif preset == "vertical":
            region[:, :, qw:qw + hw] = True
        elif preset == "horizontal":
            region[:, qh:qh + hh, :] = True
        elif preset == "dynamic":
            rows = slice(qh, qh + hh) if task == "inpainting" else slice(0, height)
            for t, left in enumerate(np.linspace(0, width - hw, frames)):
                region[t, rows, int(round(left)):int(round(left)) + hw] = True
        # outpainting gives the region; inpainting gives everything else
        given = region if task == "outpainting" else ~region
    return given


def erode(mask: np.ndarray, margin: int) -> np.ndarray:
    """Shrinks each frame's mask by `margin` pixels (the MP4's lossy coding smears edges, and a
    rounding choice of a moving box may differ by a pixel)."""
    out = mask.copy()
    for _ in range(margin):
        inner = out.copy()
        inner[:, 1:, :] &= out[:, :-1, :]
        inner[:, :-1, :] &= out[:, 1:, :]
        inner[:, :, 1:] &= out[:, :, :-1]
        inner[:, :, :-1] &= out[:, :, 1:]
        inner[:, 0, :] = inner[:, -1, :] = False
        inner[:, :, 0] = inner[:, :, -1] = False
        out = inner
    return out


def given_error(output: np.ndarray, source: np.ndarray, mask: np.ndarray) -> float:
    """Mean absolute difference (0..255) of output and source on the (eroded) given pixels."""
    inner = erode(mask, 2)
    assert inner.any(), "no given pixel left to compare"
    diff = np.abs(output.astype(np.float32) - source.astype(np.float32)).mean(axis=-1)
    return float(diff[inner].mean())


# ---------------------------------------------------------------------------------------------
# 1. a live `kinetoscope serve` with the embedded queue
# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def live(tmp_path_factory):
    """`kinetoscope serve` on a free port with the demo model (embedded queue and worker)."""
    _require_model()
    server = start_server(tmp_path_factory.mktemp("e2e-serve"))
    try:
        yield server
    finally:
        server.close()


@pytest.fixture(scope="module")
def source(live):
    """A class_conditional job's output: the input video of the conditional tasks."""
    body = {"task": "class_conditional", "class_label": 3, "num_frames": 16, "size": "32x32", "seed": 11,
            "sampler": sampler(4)}
    job, frames = run_job(live.client, body, frames=16, size="32x32", log=live.proc)
    mp4 = content(live.client, job["id"]).content
    return {"id": job["id"], "mp4": mp4, "frames": frames}


def test_models_ready_and_health(live):
    c = live.client
    assert c.get("/healthz").status_code == 200
    ready = c.get("/readyz")
    assert ready.status_code == 200 and ready.json()["status"] == "ready"
    r = c.get("/v1/models")
    assert r.status_code == 200
    model = next(m for m in r.json()["data"] if m["id"] == MODEL_ID)
    # api.md: id, tasks, sizes, window frames, default condition frames, fps, class names,
    # samplers, backend (the field names are the server's, documented in /openapi.json)
    assert set(model["tasks"]) == {"class_conditional", "class_conditional_frame_prediction", "frame_prediction",
                                   "frame_interpolation", "inpainting", "outpainting"}, model
    assert set(model["sizes"]) == {"32x32", "64x64", "128x128"}, model
    assert (model["window_frames"], model["default_condition_frames"], model["fps"]) == (16, 4, 8), model
    assert len(model["classes"]) == 10 and set(model["samplers"]) == {"maskgit", "autoregressive"}, model
    assert model["backend"] == "onnxruntime", model
    assert c.get(f"/v1/models/{MODEL_ID}").json()["id"] == MODEL_ID
    assert "/v1/videos" in c.get("/openapi.json").json()["paths"]


CONDITIONAL_CASES = [
    # (id, body fields, how the input is sent)
    ("cfp-base64", {"task": "class_conditional_frame_prediction", "class_label": 5, "condition_frames": 4}, "base64"),
    ("fp-multipart", {"task": "frame_prediction", "condition_frames": 6}, "multipart"),
    ("fi-chained", {"task": "frame_interpolation"}, "chain"),
    ("inpaint-center", {"task": "inpainting", "mask": {"preset": "center"}}, "base64"),
    ("inpaint-dynamic", {"task": "inpainting", "mask": {"preset": "dynamic"}}, "base64"),
    ("inpaint-box", {"task": "inpainting", "mask": {"box": [0.125, 0.25, 0.625, 0.75]}}, "base64"),
    ("outpaint-center", {"task": "outpainting", "mask": {"preset": "center"}}, "base64"),
    ("outpaint-vertical", {"task": "outpainting", "mask": {"preset": "vertical"}}, "base64"),
    ("outpaint-horizontal", {"task": "outpainting", "mask": {"preset": "horizontal"}}, "chain"),
    ("outpaint-dynamic", {"task": "outpainting", "mask": {"preset": "dynamic"}}, "multipart"),
]


@pytest.mark.parametrize("fields, via", [c[1:] for c in CONDITIONAL_CASES], ids=[c[0] for c in CONDITIONAL_CASES])
def test_conditional_task_end_to_end(live, source, fields, via):
    """Every conditional task, its input the class_conditional job's MP4; the given pixels come
    back (up to the MP4 coding of input and output)."""
    body = {**fields, "num_frames": 16, "size": "32x32", "seed": 5, "sampler": sampler(3)}
    if via == "base64":
        job, video = run_job(live.client, {**body, "input_video": base64.b64encode(source["mp4"]).decode()},
                             frames=16, size="32x32", log=live.proc)
    elif via == "chain":
        job, video = run_job(live.client, {**body, "input_video_id": source["id"]}, frames=16, size="32x32",
                             log=live.proc)
        assert job["request"].get("input_video_id") == source["id"]
    else:  # multipart: the video as a file part, every other field as form text (JSON for objects)
        form = {k: json.dumps(v) if isinstance(v, (dict, list)) else str(v) for k, v in body.items()}
        job, video = run_job(live.client, frames=16, size="32x32", log=live.proc,
                             files={"input_video": ("input.mp4", source["mp4"], "video/mp4")}, data=form)
    assert job["task"] == fields["task"] and job["seed"] == 5
    mask = given_mask(fields["task"], 16, 32, 32, preset=(fields.get("mask") or {}).get("preset"),
                      box=(fields.get("mask") or {}).get("box"), k=fields.get("condition_frames"))
    error = given_error(video, source["frames"], mask)
    assert error < 4.0, f"{fields['task']}: given pixels differ from the input by {error:.1f}/255 on average"


def test_class_conditional_larger_and_longer(live):
    """Autoregressive extension (24 > 16 frames) and the super-resolution cascade (64x64)."""
    body = {"task": "class_conditional", "class_label": 7, "num_frames": 24, "size": "64x64", "seed": 3,
            "sampler": sampler(2)}
    run_job(live.client, body, frames=24, size="64x64", log=live.proc)


def test_frame_prediction_upscaled_keeps_given_frames(live, source):
    """frame_prediction at 64x64 from a 32x32 input: 20 frames, the given ones preserved."""
    body = {"task": "frame_prediction", "condition_frames": 4, "num_frames": 20, "size": "64x64", "seed": 9,
            "sampler": sampler(2), "input_video_id": source["id"]}
    _, video = run_job(live.client, body, frames=20, size="64x64", log=live.proc)
    # the given frames, downscaled back to the input's size, match it
    small = video[:4].reshape(4, 32, 2, 32, 2, 3).astype(np.float32).mean(axis=(2, 4))
    error = np.abs(small - source["frames"][:4].astype(np.float32)).mean()
    assert error < 12.0, f"given frames differ by {error:.1f}/255"


def test_content_range_sse_and_delete(live):
    c = live.client
    job = create(c, {"task": "class_conditional", "class_label": 1, "size": "32x32", "seed": 21, "sampler": sampler(4)})
    events = sse_events(c, job["id"])
    assert events, "no events"
    assert all(e["id"] == job["id"] for e in events)
    assert events[-1]["status"] == "completed" and events[-1]["progress"] == 100, events[-1]
    assert all(e["status"] not in TERMINAL for e in events[:-1]), [e["status"] for e in events]
    progress = [e["progress"] for e in events if e["status"] == "in_progress"] + [100]
    assert progress == sorted(progress), f"progress went down: {progress}"
    # the stream of a finished job: its final state, then the end
    again = sse_events(c, job["id"], timeout=30)
    assert again and again[-1]["status"] == "completed"

    full = content(c, job["id"]).content
    assert len(full) > 200
    r = content(c, job["id"], headers={"Range": "bytes=0-99"})
    assert r.status_code == 206 and r.content == full[:100], (r.status_code, r.headers)
    assert r.headers["content-range"] == f"bytes 0-99/{len(full)}"
    r = content(c, job["id"], headers={"Range": "bytes=-50"})
    assert r.status_code == 206 and r.content == full[-50:]
    r = content(c, job["id"], headers={"Range": "bytes=100-"})
    assert r.status_code == 206 and r.content == full[100:]
    r = content(c, job["id"], headers={"Range": f"bytes={len(full) + 10}-"})
    assert r.status_code == 416

    listed = c.get("/v1/videos", params={"limit": 100}).json()
    assert job["id"] in [j["id"] for j in listed["data"]]
    assert c.delete(f"/v1/videos/{job['id']}").status_code == 200
    assert c.get(f"/v1/videos/{job['id']}").status_code == 404
    assert content(c, job["id"]).status_code == 404


def test_cancel_running_long_job(live):
    c = live.client
    body = {"task": "class_conditional", "class_label": 8, "num_frames": 128, "size": "128x128", "seed": 2,
            "sampler": sampler(48)}
    job = create(c, body)
    wait_status(c, job["id"], lambda j: j["status"] == "in_progress" and j["progress"] > 0, 120, "running")
    running = c.get(f"/v1/videos/{job['id']}")
    assert "retry-after" in running.headers or "x-poll-interval" in running.headers, running.headers
    r = c.post(f"/v1/videos/{job['id']}/cancel")
    assert r.status_code == 200, r.text
    done = wait_terminal(c, job["id"], timeout=120, log=live.proc)
    assert done["status"] == "canceled", done
    assert done["progress"] < 100
    again = c.post(f"/v1/videos/{job['id']}/cancel")  # idempotent
    assert again.status_code == 200 and again.json()["status"] == "canceled"
    r = content(c, job["id"])
    assert r.status_code == 409 and r.json()["error"]["code"], r.text
    # DELETE of a running job: gone at once, and its worker lets it go
    doomed = create(c, {**body, "seed": 3})
    wait_status(c, doomed["id"], lambda j: j["status"] == "in_progress" and j["progress"] > 0, 120, "running")
    assert c.delete(f"/v1/videos/{doomed['id']}").status_code == 200
    assert c.get(f"/v1/videos/{doomed['id']}").status_code == 404
    live.proc.wait_for_log(rf"job dropped job_id={doomed['id']}\b", 120)
    # the worker is free again
    run_job(c, {"task": "class_conditional", "class_label": 0, "size": "32x32", "seed": 1, "sampler": sampler(2)},
            frames=16, size="32x32", log=live.proc)


def _error(r: httpx.Response, status: int) -> dict:
    assert r.status_code == status, f"expected {status}, got {r.status_code}: {r.text[:300]}"
    err = r.json()["error"]
    assert set(err) >= {"type", "code", "message", "param"}, err
    return err


def _cut_inside_moov(mp4: bytes) -> bytes:
    """The file up to the middle of its `moov` box (the index of every sample): corrupt by
    construction, whatever the encoder wrote (half of a file may still hold a few whole frames)."""
    offset = 0
    while offset + 8 <= len(mp4):
        size, kind = int.from_bytes(mp4[offset:offset + 4], "big"), mp4[offset + 4:offset + 8]
        if kind == b"moov":
            return mp4[: offset + size // 2]
        if size < 8:
            break
        offset += size
    raise AssertionError("the source MP4 has no moov box")


def test_bad_inputs_are_refused_and_the_server_keeps_serving(live, source):
    c = live.client
    base = {"task": "frame_prediction", "size": "32x32", "seed": 1, "sampler": sampler(2)}
    # bytes that claim to be an MP4 but are not one
    corrupt = source["mp4"][:32] + bytes(range(256)) * 8
    err = _error(c.post("/v1/videos", json={**base, "input_video": base64.b64encode(corrupt).decode()}), 400)
    assert err["param"] == "input_video"
    # the same, as a file part
    _error(c.post("/v1/videos", files={"input_video": ("x.mp4", corrupt, "video/mp4")},
                  data={k: json.dumps(v) if isinstance(v, dict) else str(v) for k, v in base.items()}), 400)
    # a truncated MP4: cut inside its moov box, so no encoder's bytes can make it decodable
    cut = _cut_inside_moov(source["mp4"])
    _error(c.post("/v1/videos", json={**base, "input_video": base64.b64encode(cut).decode()}), 400)
    _error(c.post("/v1/videos", json={**base, "input_video": "not base64 at all!"}), 400)
    _error(c.post("/v1/videos", json={**base, "input_video": base64.b64encode(b"hello world").decode()}), 415)
    _error(c.post("/v1/videos", content=b"{not json", headers={"content-type": "application/json"}), 400)
    _error(c.post("/v1/videos", json={"task": "class_conditional", "class_label": 42}), 422)
    _error(c.post("/v1/videos", json={**base, "input_video_id": "video_doesnotexist"}), 404)
    # and the next job runs
    run_job(c, {**base, "input_video_id": source["id"]}, frames=16, size="32x32", log=live.proc)
    assert c.get("/readyz").status_code == 200


def _frames_of(client: httpx.Client, job_id: str) -> np.ndarray:
    r = content(client, job_id)
    assert r.status_code == 200, r.text
    return decode_mp4(r.content)


def test_batching_never_changes_a_result(live, source):
    """The same request and seed alone and among 8 concurrent requests gives the same frames
    (MaskGIT, MaskGIT with classifier-free guidance, the autoregressive sampler); /metrics shows
    the batches, and at least one prior call that took more than one request."""
    c = live.client
    probes = [
        {"task": "class_conditional", "class_label": 4, "size": "32x32", "seed": 1234, "sampler": sampler(4)},
        {"task": "frame_prediction", "condition_frames": 4, "size": "32x32", "seed": 99, "input_video_id": source["id"],
         "sampler": {"method": "maskgit", "steps": 3, "guidance_scale": 2.0, "top_k": 64}},
        {"task": "class_conditional", "class_label": 2, "num_frames": 8, "size": "32x32", "seed": 7,
         "sampler": {"method": "autoregressive", "top_k": 32}},
    ]
    alone = []
    for body in probes:
        job = wait_terminal(c, create(c, body)["id"], log=live.proc)
        assert job["status"] == "completed", job
        alone.append(_frames_of(c, job["id"]))

    before = metric_samples(c, "kinetoscope_batch_size_count")
    before_sum = metric_samples(c, "kinetoscope_batch_size_sum")
    others = [
        {"task": "class_conditional", "class_label": 0, "size": "32x32", "seed": 500, "sampler": sampler(4)},
        {"task": "class_conditional", "class_label": 9, "size": "32x32", "seed": 501,
         "sampler": {"method": "maskgit", "steps": 4, "guidance_scale": 1.0}},
        {"task": "class_conditional", "class_label": 5, "num_frames": 8, "size": "32x32", "seed": 502,
         "sampler": {"method": "autoregressive"}},
        {"task": "inpainting", "mask": {"preset": "center"}, "size": "32x32", "seed": 600, "sampler": sampler(3),
         "input_video_id": source["id"]},
    ]
    bodies = [probes[0], others[0], probes[1], others[1], probes[2], others[2], others[3], probes[0]]
    probe_of = {0: 0, 2: 1, 4: 2, 7: 0}  # position in bodies -> probe
    with concurrent.futures.ThreadPoolExecutor(len(bodies)) as pool:
        jobs = list(pool.map(lambda b: create(c, b), bodies))
    finished = [wait_terminal(c, j["id"], log=live.proc) for j in jobs]
    assert all(j["status"] == "completed" for j in finished), [(j["status"], j["error"]) for j in finished]
    for index, probe in probe_of.items():
        together = _frames_of(c, jobs[index]["id"])
        diff = np.abs(together.astype(int) - alone[probe].astype(int))
        assert np.array_equal(together, alone[probe]), (
            f"{bodies[index]} : frames differ when batched "
            f"(max {diff.max()}, mean {diff.mean():.2f}, {np.count_nonzero(diff)} values)")

    after = metric_samples(c, "kinetoscope_batch_size_count")
    after_sum = metric_samples(c, "kinetoscope_batch_size_sum")
    prior = next(k for k in after if 'engine="prior"' in k)
    calls = after[prior] - before.get(prior, 0.0)
    rows = after_sum[prior] - before_sum.get(prior, 0.0)
    assert calls > 0, "no prior calls observed in kinetoscope_batch_size"
    assert rows > calls, f"{calls:.0f} prior calls for {rows:.0f} rows: concurrent jobs were never batched"
    assert any('engine="decoder"' in k for k in after), after
    assert "kinetoscope_batch_size_bucket" in c.get("/metrics").text


# ---------------------------------------------------------------------------------------------
# 2. Redis: API replica + worker processes
# ---------------------------------------------------------------------------------------------
REDIS_LEASE = {"lease_seconds": 2, "heartbeat_seconds": 0.5}


class RedisDeployment:
    """An API (`serve --redis-url`) and workers (`worker --redis-url`) on one Redis database."""

    def __init__(self, redis_server, db: int, log_dir: Path):
        self.redis = redis_server
        self.url = f"redis://127.0.0.1:{redis_server.port}/{db}"
        self.log_dir = log_dir
        self.api: Server | None = None
        self.workers: dict[str, Proc] = {}

    def start_api(self) -> Server:
        self.api = start_server(self.log_dir, "api", ("--redis-url", self.url), **REDIS_LEASE)
        return self.api

    def start_worker(self, name: str) -> Proc:
        proc = Proc(name, ["worker", "--redis-url", self.url, "--model-repository", str(MODEL_DIR)],
                    _env(**REDIS_LEASE), self.log_dir).start()
        self.workers[name] = proc
        return proc

    def wait_workers(self, *names: str) -> None:
        for name in names:
            self.workers[name].wait_for_log(r"worker started worker_id=", START_TIMEOUT)

    def logs(self) -> str:
        procs = ([self.api.proc] if self.api else []) + list(self.workers.values())
        return "\n".join(p.tail(25) for p in procs)

    def close(self) -> None:
        for proc in self.workers.values():
            proc.stop(grace=15)
        if self.api is not None:
            self.api.close()


@pytest.fixture
def redis_deployment(redis_server, tmp_path):
    _require_model()
    deployments = []

    def make(db: int) -> RedisDeployment:
        d = RedisDeployment(redis_server, db, tmp_path)
        deployments.append(d)
        return d

    try:
        yield make
    finally:
        for d in deployments:
            d.close()
        if not redis_server.answers_ping():  # a failed restart must not break later Redis tests
            redis_server.start()


@pytest.mark.redis
def test_redis_killed_worker_job_completes_on_the_other(redis_deployment):
    d = redis_deployment(2)
    d.start_worker("worker-a")
    d.start_worker("worker-b")
    api = d.start_api().client
    d.wait_workers("worker-a", "worker-b")
    body = {"task": "class_conditional", "class_label": 6, "num_frames": 48, "size": "128x128", "seed": 17,
            "sampler": sampler(12)}
    job = create(api, body)
    wait_status(api, job["id"], lambda j: j["status"] == "in_progress" and j["progress"] > 0, 120, "running")
    started = rf"job started job_id={job['id']}\b"
    holder = next((n for n, p in d.workers.items() if re.search(started, p.log())), None)
    assert holder is not None, f"no worker logged the start of {job['id']}\n{d.logs()}"
    survivor = "worker-b" if holder == "worker-a" else "worker-a"
    d.workers[holder].kill()
    done = wait_terminal(api, job["id"], timeout=JOB_TIMEOUT, log=d.workers[survivor])
    check_completed(api, done, frames=48, size="128x128", log=d.workers[survivor])
    log = d.workers[survivor].log()
    assert re.search(rf"job completed job_id={job['id']}\b", log), d.workers[survivor].tail()
    assert re.search(rf"job started job_id={job['id']} attempt=[2-9]\b", log), d.workers[survivor].tail()


@pytest.mark.redis
def test_redis_restart_between_enqueue_and_completion_loses_nothing(redis_deployment, redis_server):
    """kill -9 of Redis (AOF on) while one job is mid-run on a dead worker and others wait:
    after the restart, with new workers, every job completes; results survive a second kill."""
    d = redis_deployment(3)
    api = d.start_api().client
    assert api.get("/v1/models").json()["data"][0]["id"] == MODEL_ID  # manifests only, no engines
    assert "worker started" not in d.api.proc.log(), "an API with --redis-url must not run a worker"
    base = {"size": "32x32", "seed": 31, "sampler": sampler(2)}
    early = create(api, {**base, "task": "class_conditional", "class_label": 1})
    time.sleep(1.0)
    assert get_job(api, early["id"])["status"] == "queued", "a job ran with no worker process"

    worker = d.start_worker("worker-a")
    d.wait_workers("worker-a")
    long = create(api, {"task": "class_conditional", "class_label": 9, "num_frames": 32, "size": "64x64", "seed": 8,
                        "sampler": sampler(8)})
    wait_status(api, long["id"], lambda j: j["status"] == "in_progress" and j["progress"] > 0, 120, "running")
    worker.kill()  # mid-job: its lease lapses; nobody is left to run anything
    source = create(api, {**base, "task": "class_conditional", "class_label": 2, "priority": "high"})
    keyed = create(api, {**base, "task": "class_conditional", "class_label": 3},
                   headers={"Idempotency-Key": "e2e-restart"})
    jobs = [early, long, source, keyed]
    before = {j["id"]: get_job(api, j["id"])["status"] for j in jobs}
    assert before[long["id"]] == "in_progress" and before[source["id"]] == before[keyed["id"]] == "queued", before

    redis_server.kill()  # kill -9: only the AOF survives
    assert not redis_server.answers_ping()
    redis_server.start()
    d.api.wait_ready(timeout=60)  # the API reconnects by itself
    after = {j["id"]: get_job(api, j["id"])["status"] for j in jobs}
    assert after == before, f"statuses changed across the restart: {before} -> {after}"
    again = create(api, {**base, "task": "class_conditional", "class_label": 3},
                   headers={"Idempotency-Key": "e2e-restart"}, expect=(200, 202))
    assert again["id"] == keyed["id"], "an Idempotency-Key made a second job after the Redis restart"

    d.start_worker("worker-b")
    d.start_worker("worker-c")
    for j in jobs:
        done = wait_terminal(api, j["id"], log=d.workers["worker-b"])
        check_completed(api, done, frames=j["num_frames"], size=j["size"], log=d.workers["worker-b"])
    # chaining from a job that finished after the restart
    follow = create(api, {**base, "task": "inpainting", "mask": {"preset": "center"}, "input_video_id": source["id"]})
    check_completed(api, wait_terminal(api, follow["id"], log=d.workers["worker-b"]), frames=16, size="32x32")
    # finished results survive a second kill -9 too
    videos = {j["id"]: content(api, j["id"]).content for j in jobs}
    redis_server.kill()
    redis_server.start()
    d.api.wait_ready(timeout=60)
    for job_id, data in videos.items():
        r = content(api, job_id)
        assert r.status_code == 200 and r.content == data, f"{job_id}: {r.status_code} after the second restart"


def test_output_formats_and_the_lossless_frames(live):
    """`output_format` webm and gif give decodable videos of the job's frames; `variant=frames`
    gives exactly the frames the model made (the MP4 and WebM only approximate them)."""
    from server.output import decode_frames

    c = live.client
    body = {"task": "class_conditional", "class_label": 2, "size": "32x32", "seed": 5, "sampler": sampler(3)}
    results = {}
    for fmt, media in (("mp4", "video/mp4"), ("webm", "video/webm"), ("gif", "image/gif")):
        job = wait_terminal(c, create(c, {**body, "output_format": fmt})["id"], log=live.proc)
        assert job["status"] == "completed" and job["request"]["output_format"] == fmt, job
        video = content(c, job["id"])
        assert video.status_code == 200 and video.headers["content-type"] == media
        assert video.headers["content-disposition"].endswith(f'.{fmt}"')
        frames = content(c, job["id"], "frames")
        assert frames.status_code == 200 and frames.headers["content-type"] == "application/zip"
        results[fmt] = (decode_mp4(video.content), decode_frames(frames.content))
    lossless = results["mp4"][1]
    assert lossless.shape == (16, 32, 32, 3) and lossless.dtype == np.uint8
    for fmt, (decoded, frames) in results.items():
        assert np.array_equal(frames, lossless), f"same seed, same frames ({fmt})"  # the format changes no frame
        assert decoded.shape == lossless.shape
        err = np.mean((decoded.astype(float) - lossless) ** 2)
        assert 10 * np.log10(255 ** 2 / max(err, 1e-9)) > 20, fmt  # an approximation of them
    assert not np.array_equal(results["mp4"][0], lossless)  # 4:2:0 H.264 is not lossless on 32x32 colour
    r = c.post("/v1/videos", json={**body, "output_format": "avi"})
    assert r.status_code == 422 and r.json()["error"]["param"] == "output_format"


def test_the_embedded_server_keeps_its_jobs_across_a_restart(tmp_path):
    """SIGTERM and start again on the same job store: earlier jobs and their content answer."""
    store = tmp_path / "store"
    body = {"task": "class_conditional", "class_label": 6, "size": "32x32", "seed": 11, "sampler": sampler(2),
            "metadata": {"run": "before"}}
    first = start_server(tmp_path, "first", job_store_dir=store)
    try:
        job = wait_terminal(first.client, create(first.client, body)["id"], log=first.proc)
        assert job["status"] == "completed", job
        video = content(first.client, job["id"]).content
        frames = content(first.client, job["id"], "frames").content
    finally:
        first.close()  # SIGTERM
    second = start_server(tmp_path, "second", job_store_dir=store)
    try:
        again = second.client.get(f"/v1/videos/{job['id']}").json()
        for field in ("status", "seed", "request", "metadata", "created_at", "completed_at"):
            assert again[field] == job[field], field
        assert content(second.client, job["id"]).content == video
        assert content(second.client, job["id"], "frames").content == frames
        assert [j["id"] for j in second.client.get("/v1/videos").json()["data"]] == [job["id"]]
    finally:
        second.close()


def test_a_busy_port_fails_at_once_and_ctrl_c_stops_quickly(tmp_path):
    """A second server on a taken port says so in one line without loading a model; Ctrl-C
    (SIGINT) stops a server with a job running (the time is logged, not asserted)."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = subprocess.run(_kinetoscope_command() + ["serve", "--port", str(port), "--model-repository",
                                                        str(MODEL_DIR)], env=_env(), capture_output=True, text=True,
                              timeout=60, cwd=REPO_ROOT)
    assert proc.returncode == 2, proc.stderr
    assert f"cannot listen on 127.0.0.1:{port}" in proc.stderr and "Traceback" not in proc.stderr
    assert proc.stderr.count("\n") == 1  # one line: it never got as far as loading the model

    server = start_server(tmp_path, "sigint")
    job = create(server.client, {"task": "class_conditional", "class_label": 1, "num_frames": 48, "sampler": sampler(12)})
    start = time.monotonic()
    server.proc.process.send_signal(signal.SIGINT)
    server.proc.process.wait(timeout=30)
    print(f"SIGINT with a job {job['status']}: stopped in {time.monotonic() - start:.2f} s")
    server.close()


def test_a_deadline_truncates_a_running_maskgit_job_over_http(live):
    c = live.client
    body = {"task": "class_conditional", "class_label": 8, "size": "32x32", "seed": 2,
            "sampler": {"method": "maskgit", "steps": 64}, "deadline_seconds": 0.25}
    job = wait_terminal(c, create(c, body)["id"], log=live.proc)
    # 64 steps take over a second on a CPU: the deadline falls inside the decoding
    assert job["status"] == "completed" and job["truncated"]["steps"] == 64, job
    assert 0 <= job["truncated"]["steps_done"] < 64
    check_completed(c, job, frames=16, size="32x32", log=live.proc)
    ar = wait_terminal(c, create(c, {**body, "sampler": {"method": "autoregressive"}, "deadline_seconds": 0.05,
                                     "num_frames": 48})["id"], log=live.proc)
    assert ar["status"] == "failed" and ar["error"]["code"] == "deadline_exceeded", ar


def test_tokens_are_an_artifact_and_the_tokenizer_an_endpoint(live, source):
    """A job keeps its token grids (variant=tokens); /v1/detokenize of them gives the job's own
    frames back; /v1/tokenize -> /v1/detokenize equals the encoder and decoder run in-process;
    bad tokens get the documented 422."""
    from server.output import decode_frames
    from server.runtime import load_runtime
    from server.settings import Settings

    c = live.client
    job = wait_terminal(c, create(c, {"task": "class_conditional", "class_label": 5, "size": "32x32", "seed": 9,
                                      "sampler": sampler(4)})["id"], log=live.proc)
    doc = content(c, job["id"], "tokens").json()
    assert doc["model"] == job["model"] and doc["token_grid"] == [4, 8, 8] and len(doc["windows"]) == 1
    made = decode_frames(content(c, job["id"], "frames").content)
    again = c.post("/v1/detokenize", json={"tokens": doc["windows"][0]})
    assert again.status_code == 200 and again.headers["content-type"] == "video/mp4"
    assert again.content == content(c, job["id"]).content  # the same frames, the same encoder: the same file
    # tokenize -> detokenize through the API == the networks in this process
    tok = c.post("/v1/tokenize", json={"input_video": base64.b64encode(source["mp4"]).decode()})
    assert tok.status_code == 200, tok.text
    tokens = tok.json()["tokens"]
    runtime = load_runtime(Settings(model_repository=MODEL_DIR, batching=False))
    try:
        pipe = runtime.pipelines[runtime.catalogue.default_model]
        frames = decode_mp4(source["mp4"])
        want = asyncio.run(pipe.tokenize(frames)).reshape(-1).tolist()
        assert tokens == want
        local = asyncio.run(pipe.detokenize(np.array(want).reshape(4, 8, 8)))
    finally:
        runtime.close()
    from server.video import encode_mp4

    remote = c.post("/v1/detokenize", json={"tokens": tokens}).content
    assert remote == encode_mp4(local, 8)  # the same frames as in-process, through the same encoder here
    assert local.shape == made.shape
    big = c.post("/v1/detokenize", json={"tokens": tokens, "size": "128x128"})
    assert big.status_code == 200 and decode_mp4(big.content).shape == (16, 128, 128, 3)
    for body, param in (({"tokens": tokens[:10]}, "tokens"), ({"tokens": [99999] * 256}, "tokens"),
                        ({"tokens": tokens, "size": "7x7"}, "size")):
        r = c.post("/v1/detokenize", json=body)
        assert r.status_code == 422 and r.json()["error"]["param"] == param, r.text
    assert c.post("/v1/tokenize", json={"input_video": "bm90IGEgdmlkZW8="}).status_code in (400, 415)


def test_score_ranks_real_clips_above_shuffled_ones(live):
    """/v1/score: deterministic, and the autoregressive prior finds a real held-out clip more likely
    than the same clip with its frames shuffled, on most of 20 clips."""
    from models.data.moving_digits import MovingDigits
    from server.video import encode_mp4

    c = live.client
    clips, _ = MovingDigits("test", seed=77).batch(0, 20)
    rng = np.random.default_rng(0)
    wins = 0
    for clip in clips:
        real = c.post("/v1/score", json={"input_video": base64.b64encode(encode_mp4(clip, 8)).decode()})
        assert real.status_code == 200, real.text
        body = real.json()
        assert len(body["per_latent_frame"]) == 4 and body["bits_per_token"] > 0
        assert abs(sum(body["per_latent_frame"]) - body["log_likelihood"]) < 1e-6 * abs(body["log_likelihood"])
        shuffled = clip[rng.permutation(len(clip))]
        fake = c.post("/v1/score", json={"input_video": base64.b64encode(encode_mp4(shuffled, 8)).decode()}).json()
        wins += body["log_likelihood"] > fake["log_likelihood"]
    print(f"score: real above shuffled on {wins} of 20 clips")
    assert wins >= 15, f"real above shuffled on {wins} of 20 clips"
    tokens = c.post("/v1/tokenize", json={"input_video": base64.b64encode(encode_mp4(clips[0], 8)).decode()}).json()
    once = c.post("/v1/score", json={"tokens": tokens["tokens"]}).json()
    assert c.post("/v1/score", json={"tokens": tokens["tokens"]}).json() == once  # deterministic
    r = c.post("/v1/score", json={"tokens": tokens["tokens"], "input_video": "AAAA"})
    assert r.status_code == 422 and r.json()["error"]["param"] == "tokens"
    assert c.post("/v1/score", json={"tokens": [1, 2, 3]}).status_code == 422
