"""The runtime: the catalogue's models with their engines and pipelines, and `generate`, the one
call the worker makes per job, in three named steps: decode the input -> run the pipeline ->
encode the outputs (the video in the request's format, a PNG thumbnail, the lossless frames and
the token grids)."""
from __future__ import annotations

import asyncio
import base64
import json
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable

import numpy as np

from server import metrics
from server.catalogue import Catalogue, load_catalogue
from server.engines.base import create_engine
from server.jobs import states
from server.errors import InputError
from server.jobs.base import Job, JobResult
from server.manifest import Manifest
from server.output import encode_frames, encode_video
from server.pipeline import Pipeline, Preview, RunLog, confidence_bytes
from server.resume import Checkpoint
from server.settings import Settings
from server.video import decode_input, encode_png

log = logging.getLogger("kinetoscope.runtime")


def tokens_document(manifest: Manifest, windows: list[np.ndarray]) -> bytes:
    """A job's `variant=tokens` (docs/api.md): its token grids, one flat raster list per window."""
    return json.dumps({"model": manifest.model_id, "token_grid": list(manifest.token_grid),
                       "vocab_size": manifest.vocab_size, "tokenizer_sha256": manifest.encoder.sha256,
                       "windows": [w.reshape(-1).tolist() for w in windows]}, separators=(",", ":")).encode()


def confidence_document(manifest: Manifest, maps: list[np.ndarray | None]) -> bytes | None:
    """A MaskGIT job's `variant=confidence`: per window, the confidence the sampler used for each
    token (its probability under the model when drawn, 0..255; given tokens 255), in raster
    order as the tokens are. None when a window was decoded autoregressively."""
    if not maps or any(m is None for m in maps):
        return None
    return json.dumps({"model": manifest.model_id, "token_grid": list(manifest.token_grid), "scale": 255,
                       "windows": [list(confidence_bytes(m)) for m in maps]}, separators=(",", ":")).encode()


def preview_image(frames: np.ndarray) -> str:
    """A preview's image: the clip's frames side by side as one PNG (a 16-frame 32x32 clip is a
    512x32 strip of a few KB), as a data URL. PNG because every client can show it and it keeps
    the exact pixels; a strip because it shows the whole clip at once, with no player."""
    strip = np.concatenate(list(frames), axis=1)  # (H, T*W, 3)
    return "data:image/png;base64," + base64.b64encode(encode_png(strip)).decode()


class Runtime:
    """Runs jobs on the models of `catalogue` (one Pipeline per model)."""

    resumable = True  # generate takes resume / on_checkpoint (server.worker.run_worker)

    def __init__(self, settings: Settings, catalogue: Catalogue, pipelines: dict[str, Pipeline],
                 executor: ThreadPoolExecutor | None = None):
        self.settings = settings
        self.catalogue = catalogue
        self.pipelines = pipelines
        self._executor = executor

    async def generate(self, job: Job, input_video: bytes | None, on_progress: Callable[[float], None],
                       should_stop: Callable[[], bool], frames: np.ndarray | None = None,
                       on_preview: Callable[[dict], None] | None = None, resume: bytes | None = None,
                       on_checkpoint: Callable[[bytes], None] | None = None) -> JobResult:
        """`frames`: the input already decoded (uint8 (T, H, W, 3)), when the caller has done it.
        `on_preview` (a request with previews): gets {"step", "steps", "decided", "image"} after
        every MaskGIT step (autoregressive: every settings.ar_preview_every_tokens tokens and at each
        window's end), `image` a PNG data URL (`preview_image`).
        `on_checkpoint` gets the decoding state (server/resume.py, as bytes) every
        settings.checkpoint_every_steps steps and at each window's end; `resume`: such bytes, to
        go on from (the result is the uninterrupted run's).
        InputError for what no retry can fix; any other exception is ours (the queue retries)."""
        pipeline = self.pipelines.get(job.model)
        if pipeline is None:
            raise InputError("model_not_found", f"model {job.model!r} is not served by this worker")
        request = job.request
        # 1. Decode the input: a video (tasks without one ignore any bytes they were sent), or for
        # an edit its source's token document.
        source_tokens = None
        if request.edit_from is not None:
            source_tokens = self.edit_tokens(pipeline.manifest, input_video)
        elif frames is None and input_video is not None and request.has_input:
            frames = await self.decode_input(input_video)
        # 2. The pipeline.
        log = RunLog()
        # TaskError and DeadlineExceeded are InputErrors (the job fails); anything else is ours (retried)
        publish = None
        if on_preview is not None and request.previews:
            def publish(p: Preview) -> None:
                on_preview({"step": p.step, "steps": p.steps, "decided": round(p.decided, 4),
                            "image": preview_image(p.frames), "token_grid": list(pipeline.manifest.token_grid),
                            "confidence": base64.b64encode(p.confidence).decode()})
        video = await pipeline.generate(request, frames, on_progress, should_stop,
                                        past_deadline=lambda: states.past_deadline(job, time.time()),
                                        on_preview=publish, log=log, source_tokens=source_tokens,
                                        resume=Checkpoint.from_bytes(resume) if resume else None,
                                        on_checkpoint=self._checkpointer(on_checkpoint))
        if log.truncated:
            metrics.truncated_jobs_total.inc()
        # 3. Encode the outputs.
        return await self.encode_outputs(pipeline.manifest, video, request.fps, request.output_format, log)

    def _checkpointer(self, on_checkpoint: Callable[[bytes], None] | None) -> Callable[[Checkpoint], None] | None:
        every = self.settings.checkpoint_every_steps
        if on_checkpoint is None or every == 0:
            return None

        def keep(point: Checkpoint) -> None:
            if point.state is None or point.step % every == 0:
                on_checkpoint(point.to_bytes())

        return keep

    @staticmethod
    def edit_tokens(manifest: Manifest, document: bytes | None) -> list[np.ndarray]:
        """An edit's input (its source's `variant=tokens` document) -> the (t, h, w) token grid of
        each of its windows (the pipeline checks that their count fits the edit's num_frames)."""
        try:
            doc = json.loads(document or b"")
            grids = [np.asarray(w, np.int64).reshape(doc["token_grid"]) for w in doc["windows"]]
            shape = grids[0].shape
        except (ValueError, KeyError, IndexError, TypeError) as e:
            raise InputError("invalid_input_video", f"the edit's source tokens are unreadable ({e})") from e
        if doc.get("model") != manifest.model_id or tuple(shape) != tuple(manifest.token_grid):
            raise InputError("invalid_request", f"the edit's source tokens are of model {doc.get('model')} "
                             f"{list(shape)}, not {manifest.model_id} {list(manifest.token_grid)}")
        return grids

    async def decode_input(self, data: bytes) -> np.ndarray:
        """The job's input frames; a VideoError is an InputError (the job fails, not retried)."""
        return (await asyncio.to_thread(decode_input, data, self.settings)).frames

    @staticmethod
    async def encode_outputs(manifest: Manifest, video: np.ndarray, fps: int, output_format: str,
                             log: RunLog) -> JobResult:
        start = time.perf_counter()
        encoded = await asyncio.to_thread(encode_video, video, fps, output_format)
        png = await asyncio.to_thread(encode_png, video[0])
        frames_zip = await asyncio.to_thread(encode_frames, video)
        metrics.encode_seconds.observe(time.perf_counter() - start)
        return JobResult(encoded, png, frames_zip, tokens_document(manifest, log.tokens), log.truncated,
                         confidence=confidence_document(manifest, log.confidence))

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)


GUIDED_NETWORKS = ("prior", "ar_prior")  # classifier-free guidance adds a null-class row per request


def build_pipeline(repo: Path, manifest: Manifest, settings: Settings, executor, on_batch=None) -> Pipeline:
    batch = settings.max_batch_size if settings.batching else 1
    engines = {}
    for name, net in manifest.networks().items():
        engine = create_engine(settings.backend, repo, name, net.file, threads=settings.intra_op_threads,
                               providers=settings.onnx_providers, spinning=settings.onnx_thread_spinning,
                               plan_max_batch=settings.tensorrt_max_batch, plan_precision=settings.tensorrt_precision,
                               device=settings.torch_device, dtype=settings.torch_dtype,
                               compile_mode=settings.torch_compile, cuda_graphs=settings.torch_cuda_graphs)
        engine.set_names(net.inputs, net.outputs)
        # An engine with a batch limit (a TensorRT plan) must take the largest batch the queues
        # send: checked here, at start-up, rather than failing every job of a full batch later.
        rows = batch * (2 if name in GUIDED_NETWORKS else 1)
        limit = engine.max_batch
        if limit is not None and limit < rows:
            raise ValueError(f"{name}: the engine takes batches of at most {limit}, but max_batch_size {batch} "
                             f"can send {rows} rows{' (guidance doubles them)' if rows > batch else ''}: "
                             f"build plans with --max-batch {rows} (and set tensorrt_max_batch), or lower "
                             f"max_batch_size")
        engines[name] = engine
    return Pipeline(manifest, engines, max_batch_size=batch, max_wait_ms=settings.max_batch_wait_ms,
                    executor=executor, on_batch=on_batch, preview_every_tokens=settings.ar_preview_every_tokens)


def observe_batch(name: str, rows: int) -> None:
    metrics.batch_size.labels(engine=name).observe(rows)


def load_runtime(settings: Settings) -> Runtime:
    """The catalogue of settings.model_repository (each network file checked against its
    manifest's sha256), with every network opened on settings.backend."""
    catalogue = load_catalogue(settings, verify=True)
    # One thread per batching queue: each queue runs one call at a time, queues run side by side.
    executor = ThreadPoolExecutor(max_workers=settings.engine_threads, thread_name_prefix="engine")
    try:
        pipelines = {}
        for model_id, manifest in catalogue.manifests.items():
            repo = catalogue.repositories[model_id]
            pipelines[model_id] = build_pipeline(repo, manifest, settings, executor, observe_batch)
            log.info("loaded model %s from %s on %s", model_id, repo, settings.backend)
        return Runtime(settings, catalogue, pipelines, executor)
    except BaseException:
        executor.shutdown(wait=False)  # nothing will use the engine threads
        raise
