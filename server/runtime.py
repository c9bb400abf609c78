"""The runtime: the models of a repository, their engines and pipelines, and `generate`, the
one call the worker makes per job (decode input -> pipeline -> MP4 + thumbnail)."""
from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable

import numpy as np

from server import metrics
from server.engines.base import create_engine
from server.jobs.base import InputError, Job
from server.manifest import Manifest, load_manifest
from server.output import encode_frames, encode_video
from server.jobs import states
from server.pipeline import DeadlineExceeded, GenerationRequest, Pipeline
from server.settings import DEFAULT_MODEL_REPOSITORY, Settings
from server.tasks import TaskError
from server.video import VideoError, decode_input, encode_png

log = logging.getLogger("kinetoscope.runtime")


def find_repositories(root: Path) -> list[Path]:
    """`root` itself when it holds a manifest.json, else each sub-folder that does. When `root` is
    the default (`model_repository`, relative) and holds no model, the demo model: the checkout's
    own model_repository/, else assembled from the installed package's bundle into the user's
    cache folder. So `kinetoscope generate` and `serve` work from any directory."""
    root = Path(root)
    if (root / "manifest.json").is_file():
        return [root]
    found = sorted(p.parent for p in root.glob("*/manifest.json"))
    if not found and root == DEFAULT_MODEL_REPOSITORY:
        found = _demo_repositories()
    if not found:
        raise FileNotFoundError(f"no model repository under {root.resolve()} (set --model-repository or "
                                "KINETOSCOPE_MODEL_REPOSITORY, or run `make model` in the checkout)")
    return found


def _demo_repositories(package_root: Path | None = None, cache_root: Path | None = None) -> list[Path]:
    from server.repository import assemble

    package_root = package_root or Path(__file__).resolve().parent.parent
    checkout = package_root / "model_repository" / "moving-digits"
    if (checkout / "manifest.json").is_file():
        return [checkout]
    demo = package_root / "models" / "checkpoints" / "demo"
    if not (demo / "onnx" / "manifest.json").is_file():
        return []
    cache_root = cache_root or Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "kinetoscope"
    cache = cache_root / "moving-digits"
    bundled = (demo / "onnx" / "manifest.json").read_text()
    if not (cache / "manifest.json").is_file() or (cache / "manifest.json").read_text() != bundled:  # absent or stale
        log.info("assembling the demo model into %s", cache)
        assemble(demo / "onnx", demo, cache)
    return [cache]


def tokens_document(manifest: Manifest, windows: list[np.ndarray]) -> bytes:
    """A job's `variant=tokens` (docs/api.md): its token grids, one flat raster list per window."""
    return json.dumps({"model": manifest.model_id, "token_grid": list(manifest.token_grid),
                       "vocab_size": manifest.vocab_size, "tokenizer_sha256": manifest.encoder.sha256,
                       "windows": [w.reshape(-1).tolist() for w in windows]}, separators=(",", ":")).encode()


class Runtime:
    def __init__(self, settings: Settings, manifests: dict[str, Manifest], pipelines: dict[str, Pipeline],
                 executor: ThreadPoolExecutor | None = None):
        self.settings = settings
        self.manifests = manifests
        self.pipelines = pipelines
        self.backend = settings.backend
        self.default_model = settings.default_model or next(iter(manifests))
        if self.default_model not in manifests:
            raise ValueError(f"default model {self.default_model!r} is not among {sorted(manifests)}")
        self._executor = executor

    async def generate(self, job: Job, input_video: bytes | None, on_progress: Callable[[float], None],
                       should_stop: Callable[[], bool], frames: np.ndarray | None = None
                       ) -> tuple[bytes, bytes, bytes, bytes]:
        """-> (the video in the request's output_format, the PNG thumbnail, the lossless frames zip,
        the token grids as JSON).
        `frames`: the input already decoded (uint8 (T, H, W, 3)), when the caller has done it."""
        pipeline = self.pipelines.get(job.model)
        if pipeline is None:
            raise InputError("model_not_found", f"model {job.model!r} is not served by this worker")
        s = self.settings
        if frames is None and input_video is not None and job.request.get("has_input", True) and job.task != "class_conditional":
            try:
                frames = (await asyncio.to_thread(decode_input, input_video, s)).frames
            except VideoError as e:
                raise InputError(e.code, e.message) from e
        try:
            request = GenerationRequest.from_dict(job.request, pipeline.manifest)  # ValueError: a malformed size
        except ValueError as e:
            raise InputError("invalid_request", str(e)) from e
        truncated: dict[str, int] = {}
        windows: list[np.ndarray] = []
        try:
            video = await pipeline.generate(request, frames, on_progress, should_stop,
                                            past_deadline=lambda: states.past_deadline(job, time.time()),
                                            truncated=truncated, tokens_out=windows)
        except TaskError as e:  # the request cannot be served; any other error is ours (logged, retried)
            raise InputError("invalid_request", str(e)) from e
        except DeadlineExceeded as e:
            raise InputError("deadline_exceeded", str(e)) from e
        if truncated:
            metrics.truncated_jobs_total.inc()
            job.truncated = truncated  # the worker reports it with the result
        start = time.perf_counter()
        encoded = await asyncio.to_thread(encode_video, video, int(job.fps), job.request.get("output_format", "mp4"))
        png = await asyncio.to_thread(encode_png, video[0])
        frames_zip = await asyncio.to_thread(encode_frames, video)
        metrics.encode_seconds.observe(time.perf_counter() - start)
        return encoded, png, frames_zip, tokens_document(pipeline.manifest, windows)

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)


GUIDED_NETWORKS = ("prior", "ar_prior")  # classifier-free guidance adds a null-class row per request


def build_pipeline(repo: Path, manifest: Manifest, settings: Settings, executor, on_batch=None) -> Pipeline:
    batch = settings.max_batch_size if settings.batching else 1
    engines = {}
    for name, net in manifest.networks().items():
        engine = create_engine(settings.backend, repo, name, net.file, threads=settings.intra_op_threads,
                               providers=settings.onnx_providers, plan_max_batch=settings.tensorrt_max_batch,
                               plan_precision=settings.tensorrt_precision)
        if hasattr(engine, "set_names"):
            engine.set_names(net.inputs, net.outputs)
        # An engine with a batch limit (a TensorRT plan) must take the largest batch the queues
        # send: checked here, at start-up, rather than failing every job of a full batch later.
        rows = batch * (2 if name in GUIDED_NETWORKS else 1)
        limit = getattr(engine, "max_batch", None)
        if limit is not None and limit < rows:
            raise ValueError(f"{name}: the engine takes batches of at most {limit}, but max_batch_size {batch} "
                             f"can send {rows} rows{' (guidance doubles them)' if rows > batch else ''}: "
                             f"build plans with --max-batch {rows} (and set tensorrt_max_batch), or lower "
                             f"max_batch_size")
        engines[name] = engine
    return Pipeline(manifest, engines, max_batch_size=batch, max_wait_ms=settings.max_batch_wait_ms,
                    executor=executor, on_batch=on_batch)


def observe_batch(name: str, rows: int) -> None:
    metrics.batch_size.labels(engine=name).observe(rows)


def load_runtime(settings: Settings, *, engines: bool = True) -> Runtime:
    """Reads every manifest under settings.model_repository; with `engines`, opens each network
    (an API replica that only enqueues for Redis workers needs the manifests alone)."""
    manifests: dict[str, Manifest] = {}
    pipelines: dict[str, Pipeline] = {}
    repos = find_repositories(settings.model_repository)
    # One thread per batching queue: each queue runs one call at a time, queues run side by side.
    executor = ThreadPoolExecutor(max_workers=settings.engine_threads, thread_name_prefix="engine") if engines else None
    try:
        for repo in repos:
            manifest = load_manifest(repo, verify=engines)
            if manifest.model_id in manifests:
                raise ValueError(f"two repositories declare model id {manifest.model_id!r}")
            manifests[manifest.model_id] = manifest
            if engines:
                pipelines[manifest.model_id] = build_pipeline(repo, manifest, settings, executor, observe_batch)
                log.info("loaded model %s from %s on %s", manifest.model_id, repo, settings.backend)
        return Runtime(settings, manifests, pipelines, executor)
    except BaseException:
        if executor is not None:  # nothing will use the engine threads
            executor.shutdown(wait=False)
        raise
