"""The peers' model: the served networks and a static-batch ("lockstep") decode of a list of requests.

This is the decode loop a user of a request-level batching server writes in `predict(batch)`:
every request of the batch starts together, the batch advances one decoding step at a time with
one network call covering every request still decoding, a request whose decoding ends early (fewer
MaskGIT steps, fewer windows, no super-resolution) drops out of the later calls, and the batch is
done when its last request is. Nothing joins a batch once it has started.

It is built from the server's pieces below its scheduler, so only the batching differs from
Kinetoscope: the engines (server/engines), the conditioning and task rules (server/conditioning.py,
server/tasks.py), the samplers and the one-call-for-many-jobs steppers (server/samplers,
server/decoding.py: gather -> forward -> update, each job sampling with its own generator), the
per-window seeds (server.pipeline.window_seed). The steps follow server/pipeline.py's numbering:

1. condition: the given pixels of the whole clip;
2. per window, for the whole batch: the condition video, one encoder call for every request that
   is given pixels, the sampler's jobs;
3. lockstep sampling: each round is one MaskGIT call for all unfinished MaskGIT jobs and one
   autoregressive call per group of unfinished autoregressive jobs that share past and feed lengths
   (a KV cache cannot be concatenated otherwise, server/decoding.py);
4. one decoder call for the batch, the given pixels put back;
5. extension: the next window is frame prediction from the last frames made;
6. super-resolution, one call per stage for every chunk of every request that asked for it.

What it leaves out: previews, exact edits, resuming, deadlines (common.PeerModel.prepare, which
answers the peers' HTTP requests, refuses the first two; it is the one place that does).
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from server import tasks as T
from server.assembly import (decoder_frames, mask_args, place_window, restore_given, sr_chain, sr_chunks, sr_join,
                             sr_name, window_inputs)
from server.conditioning import Window, clip_condition, plan_windows, window_condition
from server.decoding import ARJob, ARStepper, MaskGITJob, MaskGITStepper
from server.engines.base import Engine, create_engine
from server.manifest import Manifest, SuperResolutionStage
from server.pipeline import window_seed
from server.request import VideoRequest
from server.samplers import ar_init, maskgit_init
from server.video import fit_to_size, frames_to_float, frames_to_uint8


@dataclass(eq=False)
class Work:
    """One request of a batch as it goes through the decode."""

    req: VideoRequest
    frames: np.ndarray | None  # the caller's input video, uint8 (T, h, w, 3), or None
    stages: list[tuple[SuperResolutionStage, str]]  # SR stages up to its size (stage, engine name)
    given: np.ndarray  # (num_frames, H, W) the clip's given pixels
    windows: list[Window]
    out: np.ndarray  # float (num_frames, H, W, 3): what is made so far, the given pixels in place
    # the current window's mask, pixels, condition tokens and sampler job
    wg: np.ndarray | None = None
    wv: np.ndarray | None = None
    cond: np.ndarray | None = None
    job: MaskGITJob | ARJob | None = None


def open_engines(repo: Path, manifest: Manifest, backend: str = "onnxruntime", threads: int = 0) -> dict[str, Engine]:
    """Every network of the model, opened as the server opens them (server.runtime.build_pipeline)."""
    engines = {}
    for name, net in manifest.networks().items():
        engine = create_engine(backend, repo, name, net.file, threads=threads)
        engine.set_names(net.inputs, net.outputs)
        engines[name] = engine
    return engines


class StaticBatchModel:
    """A model's engines and `generate(batch)`: the lockstep decode of a list of requests."""

    def __init__(self, manifest: Manifest, engines: dict[str, Engine]):
        self.manifest, self.engines = manifest, engines
        self.base = tuple(manifest.base_size)
        self.prior = MaskGITStepper(engines["prior"])
        self.ar = ARStepper(engines["ar_prior"]) if "ar_prior" in engines else None
        self.calls: dict[str, int] = defaultdict(int)  # network calls made, per engine (for tests)

    def _run(self, name: str, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        self.calls[name] += 1
        return self.engines[name].run(feeds)

    def stages_for(self, size: tuple[int, int]) -> list[tuple[SuperResolutionStage, str]]:
        """The SR stages from the base size to `size` (H, W), with their engine names."""
        return [(stage, sr_name(stage)) for stage in sr_chain(self.manifest, size)]

    # --- 1. the plan of each request --------------------------------------------------------------

    def plan(self, req: VideoRequest, frames: np.ndarray | None) -> Work:
        m, (height, width) = self.manifest, self.base
        if req.sampler.method == "autoregressive" and self.ar is None:
            raise T.TaskError("this model has no autoregressive prior")
        stages = self.stages_for(req.size.hw)
        base_in = None if frames is None else frames_to_float(fit_to_size(frames, height, width))
        given, pixels = clip_condition(req.task, req.num_frames, height, width, base_in, **mask_args(req))
        windows = plan_windows(req.num_frames, m.window_frames, m.default_condition_frames)
        return Work(req, frames, stages, given, windows, pixels.copy())

    def generate(self, batch: list[tuple[VideoRequest, np.ndarray | None]]) -> list[np.ndarray]:
        """The batch's videos, uint8 (num_frames, H, W, 3) each, in order. Raises TaskError for a
        request this decode cannot serve (before any network call)."""
        works = [self.plan(req, frames) for req, frames in batch]
        for index in range(max(len(w.windows) for w in works)):
            self.decode_window([w for w in works if index < len(w.windows)], index)
        for level in range(max(len(w.stages) for w in works)):
            self.super_resolve([w for w in works if level < len(w.stages)], level)
        return [self.finish(w) for w in works]

    # --- 2-4. one window of every request still decoding --------------------------------------------

    def decode_window(self, works: list[Work], index: int) -> None:
        m = self.manifest
        for w in works:  # overlap frames are given: what the last window made
            w.wg, w.wv = window_inputs(w.given, w.out, w.windows[index], m.window_frames)
        self.condition_tokens(works)
        for w in works:
            w.job = self.make_job(w, window_seed(w.req.seed, index))
        self.sample(works)
        self.decode_tokens(works, index)

    def condition_tokens(self, works: list[Work]) -> None:
        """Each request's condition tokens: one encoder call for all that are given pixels."""
        m = self.manifest
        needing = [w for w in works if w.wg.any()]
        if needing:
            videos = [window_condition(w.wv, w.wg, w.req.task).transpose(3, 0, 1, 2) for w in needing]
            tokens = self._run("encoder", {"video": np.stack(videos).astype(np.float32)})["tokens"]
            for w, row in zip(needing, tokens):
                w.cond = np.asarray(row).reshape(-1).astype(np.int64)
        for w in works:
            if not w.wg.any():
                w.cond = np.full(m.num_tokens, m.null_cond_id, dtype=np.int64)

    def make_job(self, w: Work, seed: int) -> MaskGITJob | ARJob:
        """The window's sampler job, exactly as server/pipeline.py makes it."""
        m, s, req = self.manifest, w.req.sampler, w.req
        token_state = T.token_states(w.wg, m.temporal_stride, m.spatial_stride).reshape(-1)
        fixed = token_state == T.STATE_FULL
        class_id = m.null_class_id if req.class_label is None else int(req.class_label)
        if s.method == "maskgit":
            state = maskgit_init(np.where(fixed, w.cond, m.mask_token_id), fixed, mask_id=m.mask_token_id,
                                 steps=s.steps, temperature=s.temperature, choice_temperature=s.choice_temperature,
                                 guidance_scale=s.guidance_scale, top_k=s.top_k, seed=seed, factors=m.token_factors)
            return MaskGITJob(state, w.cond, token_state, class_id, m.null_class_id)
        spec = m.ar
        state = ar_init(np.where(fixed, w.cond, 0), fixed, vocab_size=m.vocab_size, num_classes=len(m.classes),
                        class_id=req.class_label, temperature=s.temperature, top_k=s.top_k,
                        guidance_scale=s.guidance_scale, seed=seed, factors=m.token_factors)
        return ARJob(state, w.cond, token_state, shape=(spec.num_layers, spec.num_heads, spec.head_dim))

    def sample(self, works: list[Work]) -> None:
        """Lockstep rounds until every job is done: each round advances every unfinished job once."""
        while True:
            masked = [w for w in works if isinstance(w.job, MaskGITJob) and not w.job.state.done]
            regressive = [w for w in works if isinstance(w.job, ARJob) and not w.job.state.done]
            if not masked and not regressive:
                return
            if masked:
                self._step(self.prior, "prior", masked)
            groups: dict[tuple[int, int], list[Work]] = defaultdict(list)
            for w in regressive:
                groups[w.job.group()].append(w)
            for group in groups.values():
                self._step(self.ar, "ar_prior", group)

    def _step(self, stepper, name: str, works: list[Work]) -> None:
        self.calls[name] += 1
        stepper([w.job for w in works])

    def decode_tokens(self, works: list[Work], index: int) -> None:
        """One decoder call for the batch; each window's new frames go into its clip."""
        grid = tuple(self.manifest.token_grid)
        tokens = np.stack([np.asarray(w.job.state.tokens, np.int64).reshape(grid) for w in works])
        videos = self._run("decoder", {"tokens": tokens})["video"]
        for w, video in zip(works, videos):
            place_window(w.out, np.where(w.wg[..., None], w.wv, decoder_frames(video)), w.windows[index])

    # --- 6. super-resolution --------------------------------------------------------------------------

    def super_resolve(self, works: list[Work], level: int) -> None:
        """Stage `level` of every request that goes that far: all their chunks in one call."""
        pieces, owners = [], []
        for w in works:
            chunks = sr_chunks(w.out, self.manifest.window_frames)
            pieces += chunks
            owners += [w] * len(chunks)
        stage, name = works[0].stages[level]  # every request shares the one cascade
        hi = self._run(name, {"video": np.stack(pieces).astype(np.float32),
                              "noise_level": np.full(len(pieces), stage.noise_level, dtype=np.float32)})["video_hr"]
        for w in works:
            w.out = sr_join([h for h, owner in zip(hi, owners) if owner is w], len(w.out))

    def finish(self, w: Work) -> np.ndarray:
        """The given pixels once more at the output size (after SR), then uint8."""
        return frames_to_uint8(restore_given(w.req, w.frames, w.given, w.out, bool(w.stages)))
