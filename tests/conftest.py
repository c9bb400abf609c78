import os as _os

# The embedded queue's on-disk job store is on by default (job_store_dir); tests that want it
# give it a temporary folder. Everything else runs in memory, so no test sees another's jobs.
_os.environ["KINETOSCOPE_JOB_STORE_DIR"] = ""

# PyTorch (and OpenBLAS) with one intra-op thread, here and in every process a test starts. The
# networks the tests train and export are tiny, and on a shared 2-core machine two OpenMP threads
# mostly wait for each other: a 25-step tokenizer fit took ~5 s on one thread and ~30 s on two
# while another process was busy. Set before anything imports torch; OMP_NUM_THREADS=2 make test
# puts the old behaviour back. Nothing here checks a thread count.
_os.environ.setdefault("OMP_NUM_THREADS", "1")

# ==== Jobs: a private redis-server for the queue and worker tests ============================
# Owned by the job-queue tests (test_jobs_redis.py, test_worker.py). It never touches the
# shared Redis at 127.0.0.1:6379: it starts its own server on a free port with AOF on.
import shutil as _jobs_shutil
import socket as _jobs_socket
import subprocess as _jobs_subprocess
import time as _jobs_time

import pytest
from live_server import free_port

REDIS_SERVER_BINARY = "/usr/bin/redis-server"


class RedisServer:
    """A private redis-server with `appendonly yes, appendfsync always`: `kill()` is kill -9,
    `start()` brings it back on the same port and data folder (so it replays its AOF)."""

    def __init__(self, binary: str, port: int, folder):
        self.binary, self.port, self.folder = binary, port, folder
        self.url = f"redis://127.0.0.1:{port}/0"
        self.process: _jobs_subprocess.Popen | None = None

    def start(self) -> None:
        self.process = _jobs_subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.folder),
             "--appendonly", "yes", "--appendfsync", "always", "--save", "",
             "--maxmemory-policy", "noeviction", "--protected-mode", "yes"],
            stdout=_jobs_subprocess.DEVNULL, stderr=_jobs_subprocess.DEVNULL)
        deadline = _jobs_time.monotonic() + 10
        while _jobs_time.monotonic() < deadline:
            if self.answers_ping():
                return
            if self.process.poll() is not None:
                break
            _jobs_time.sleep(0.02)
        raise RuntimeError(f"redis-server did not start on port {self.port}")

    def kill(self) -> None:
        """SIGKILL: no shutdown save, only what the AOF already holds survives."""
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def restart(self) -> None:
        self.kill()
        self.start()

    def answers_ping(self) -> bool:
        try:
            with _jobs_socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as conn:
                conn.sendall(b"PING\r\n")
                return conn.recv(16).startswith(b"+PONG")
        except OSError:
            return False


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory):
    """A private Redis for the whole session (skips when redis-server is not installed).
    Tests isolate themselves with a unique key prefix; nothing ever flushes it."""
    binary = REDIS_SERVER_BINARY if _jobs_shutil.which(REDIS_SERVER_BINARY) else _jobs_shutil.which("redis-server")
    if not binary:
        pytest.skip(f"redis-server not found at {REDIS_SERVER_BINARY} or on PATH")
    server = RedisServer(binary, free_port(), tmp_path_factory.mktemp("redis-data"))
    server.start()
    yield server
    server.kill()
# ==== end of the jobs section ==================================================================


# ==== API: a fake runtime, a demo-like manifest and an in-process client ========================
# Owned by the HTTP API tests (tests/test_api_*.py). The fake runtime stands in for
# server.runtime.Runtime: the API treats generate()'s bytes as opaque, but they are a real MP4
# and PNG so that chaining (input_video_id) and downloads behave as with the real one.
import asyncio as _api_asyncio
import contextlib as _api_contextlib
import functools as _api_functools

import httpx as _api_httpx
import pytest  # noqa: F811 - also imported above; this section must stand on its own


def _api_network(name: str) -> dict:
    return {"file": f"{name}.onnx", "sha256": "0" * 64, "inputs": ["x"], "outputs": ["y"]}


def make_api_manifest(model_id: str = "demo", **overrides):
    """A manifest shaped like the demo model's: 16-frame window, 32x32 base, SR to 64 and 128."""
    from server.manifest import Manifest

    data = {
        "model_id": model_id, "description": "test model", "classes": [f"digit_{i}" for i in range(10)],
        "window_frames": 16, "default_condition_frames": 5, "base_size": (32, 32), "fps": 8,
        "token_grid": (4, 8, 8), "temporal_stride": 4, "spatial_stride": 4, "vocab_size": 512,
        "mask_token_id": 512, "null_class_id": 10, "null_cond_id": 512,
        "encoder": _api_network("encoder"), "decoder": _api_network("decoder"), "prior": _api_network("prior"),
        "super_resolution": [
            {**_api_network("sr64"), "in_size": (32, 32), "out_size": (64, 64)},
            {**_api_network("sr128"), "in_size": (64, 64), "out_size": (128, 128)},
        ],
        "opset": 18,
    }
    data.update(overrides)
    return Manifest.model_validate(data)


@_api_functools.lru_cache(maxsize=None)
def video_request(**fields):
    """A VideoRequest as validation would make it for the demo's 32x32 16-frame window (the
    fields given override)."""
    from server.request import Size, VideoRequest
    from server.samplers import SamplerOptions

    values = dict(task="class_conditional", num_frames=16, size=Size(32, 32), fps=8, seed=0,
                  sampler=SamplerOptions(), priority="normal", output_format="mp4", deadline_seconds=3600.0)
    values.update(fields)
    return VideoRequest(**values)


def api_sample_media():
    """(a 4-frame 32x32 MP4, a 32x32 PNG), made once per session with server.video."""
    import numpy as np

    from server.video import encode_mp4, encode_png

    frames = np.zeros((4, 32, 32, 3), dtype=np.uint8)
    for t in range(4):
        frames[t, 8:24, 4 + 4 * t:12 + 4 * t] = 255  # a white block moving right
    return encode_mp4(frames, 8), encode_png(frames[0])


class FakeRuntime:
    """Runtime stand-in: `steps` progress steps of `step_seconds`; it checks should_stop at each
    step (raising JobCanceled, like the real pipeline) and waits while `hold` is clear."""

    backend = "onnxruntime"

    def __init__(self, manifests=None, steps: int = 4, step_seconds: float = 0.0):
        from server.catalogue import Catalogue

        manifests = manifests or [make_api_manifest()]
        self.catalogue = Catalogue({m.model_id: m for m in manifests}, {}, manifests[0].model_id, self.backend)
        self.steps, self.step_seconds = steps, step_seconds
        self.hold = _api_asyncio.Event()
        self.hold.set()
        self.calls: list = []  # (job, input bytes) per generate call

    async def generate(self, job, input_video, on_progress, should_stop):
        from server.jobs.base import JobCanceled

        self.calls.append((job, input_video))
        for step in range(self.steps):
            while not self.hold.is_set():
                if should_stop():
                    raise JobCanceled()
                await _api_asyncio.sleep(0.01)
            if should_stop():
                raise JobCanceled()
            await _api_asyncio.sleep(self.step_seconds)
            on_progress((step + 1) / self.steps)
        from server.jobs.base import JobResult

        return JobResult(*api_sample_media())


@pytest.fixture
def api_sample():
    return api_sample_media()


@pytest.fixture
def make_api():
    """`async with make_api(worker=False, **settings) as api:` -> an object with .client (httpx
    AsyncClient on the app, lifespan run), .app, .queue (a MemoryQueue), .runtime (FakeRuntime),
    .settings. worker=True runs the embedded worker on the fake runtime."""
    from server.api.app import create_app
    from server.jobs.memory import MemoryQueue
    from server.settings import Settings

    class Api:
        pass

    @_api_contextlib.asynccontextmanager
    async def factory(worker: bool = False, runtime=None, queue=None, **overrides):
        overrides.setdefault("allowed_hosts", ["test"])  # the in-process client's Host header
        settings = Settings(embedded_workers=worker, redis_url=None, **overrides)
        api = Api()
        api.settings, api.runtime = settings, runtime or FakeRuntime()
        api.queue = queue or MemoryQueue.from_settings(settings)
        api.app = create_app(settings, runtime=api.runtime, queue=api.queue)
        async with api.app.router.lifespan_context(api.app):
            transport = _api_httpx.ASGITransport(app=api.app)
            async with _api_httpx.AsyncClient(transport=transport, base_url="http://test") as client:
                api.client = client
                yield api

    return factory
# ==== end of the API section =====================================================================


@_api_contextlib.asynccontextmanager
async def demo_api(**overrides):
    """`async with demo_api() as client:` the demo model served in-process: the real runtime, the
    embedded worker, an in-memory queue; `client` is an httpx AsyncClient on the app. Skips
    when the demo model has not been assembled (`make model`)."""
    from pathlib import Path

    from server.api.app import create_app
    from server.jobs.memory import MemoryQueue
    from server.runtime import load_runtime
    from server.settings import Settings

    repo = Path(__file__).resolve().parent.parent / "model_repository"
    if not (repo / "moving-digits" / "manifest.json").is_file():
        pytest.skip("no demo model: run `make model`")
    settings = Settings(model_repository=repo, embedded_workers=True, redis_url=None, job_store_dir=None,
                        allowed_hosts=["test"], **overrides)
    runtime = load_runtime(settings)
    app = create_app(settings, runtime=runtime, queue=MemoryQueue.from_settings(settings))
    try:
        async with app.router.lifespan_context(app):
            transport = _api_httpx.ASGITransport(app=app)
            async with _api_httpx.AsyncClient(transport=transport, base_url="http://test", timeout=300) as client:
                yield client
    finally:
        runtime.close()


# ==== Export: one real export of the tiny test family, shared ====================================
# test_export.py and test_repository.py both export tests/test_export.py's tiny random family
# (torch.export + ONNX + the parity check: ~20 s on two cores whatever the network size). It runs
# once per session; tests copy the folders before changing anything in them.
@pytest.fixture(scope="session")
def tiny_export(tmp_path_factory):
    """(checkpoint folder, repository folder, manifest) of one export_repository(check=True) of
    test_export.write_checkpoints(); read-only."""
    pytest.importorskip("torch")
    pytest.importorskip("onnx")
    from export.onnx import export_repository
    from test_export import write_checkpoints

    root = tmp_path_factory.mktemp("export")
    checkpoints = write_checkpoints(root / "checkpoints")
    manifest = export_repository(checkpoints, root / "repo" / "tiny", model_id="tiny", check=True)
    return checkpoints, root / "repo" / "tiny", manifest
# ==== end of the export section ==================================================================


# ==== Order: files with slow tests first ======================================================
def pytest_collection_modifyitems(session, config, items):
    """Files holding a `slow` test run first, each file's tests in their own order. Under
    pytest-xdist (`make test`, one worker per core, --dist loadfile) a long file dealt out last
    leaves the other workers idle while it runs: dealing the long ones first evens the finish."""
    slow_files = {item.path for item in items if item.get_closest_marker("slow")}
    items.sort(key=lambda item: item.path not in slow_files)
