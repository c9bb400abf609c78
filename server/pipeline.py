"""The generation pipeline of one model: request -> uint8 frames, in numbered steps.

1. condition: the caller's pixels and mask for the whole clip (server.conditioning);
2. per window: pad the condition, tokenize it, fix the fully given tokens;
3. sample the free tokens: MaskGIT parallel decoding or autoregressive decoding, one batched
   network call per step shared with every other request in flight (server.decoding);
4. decode tokens to pixels and put the given pixels back;
5. extend: the next window is frame prediction from the last frames made;
6. super-resolution stages up to the requested size, then the given pixels once more at the
   output size.

Every network call goes through a `BatchQueue`, so concurrent requests share batches at every
stage. A request's result depends only on itself (its seed, its own random generators).
"""
from __future__ import annotations

import asyncio
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np

from server import tasks as T
from server.batching import BatchQueue, FeedsQueue
from server.assembly import (decoder_frames, mask_args, place_window, restore_given, sr_chain, sr_chunks,
                             sr_join, sr_name, window_inputs)
from server.conditioning import clip_condition, plan_windows, window_condition
from server.decoding import ARJob, ARStepper, MaskGITJob, MaskGITStepper, ar_guess
from server.engines.base import Engine
from server.errors import InputError
from server.jobs.base import JobCanceled
from server.manifest import Manifest
from server.request import VideoRequest
from server.resume import Checkpoint, capture, finished_window, restore, window_arrays
from server.samplers import UNKNOWN, ar_init, maskgit_init, token_log_prob
from server.video import fit_to_size, frames_to_float, frames_to_uint8


@dataclass(frozen=True)
class Preview:
    """One MaskGIT step's (or every N autoregressive tokens') current guess of a window, decoded:
    `step` counts across windows (MaskGIT steps; autoregressive: tokens decided, given ones
    included, out of num_tokens per window)."""

    step: int
    steps: int
    decided: float  # share of the window's generated tokens decided so far (1 at its last step)
    frames: np.ndarray  # uint8 (T, H, W, 3) at the base size
    confidence: bytes  # the sampler's confidence per token, (t, h, w) raster order, 0..255 (AR: 0 = not decided)


@dataclass
class RunLog:
    """What a run reports besides its video: per window its tokens and confidence map,
    and {"steps_done", "steps"} when the deadline cut decoding short."""

    tokens: list[np.ndarray] = field(default_factory=list)
    confidence: list[np.ndarray | None] = field(default_factory=list)
    truncated: dict[str, int] | None = None


def confidence_bytes(confidence: np.ndarray) -> bytes:
    """A confidence map (probabilities) quantised to 8 bits: round(255 p), raster order."""
    return np.rint(np.clip(np.asarray(confidence, np.float64).reshape(-1), 0.0, 1.0) * 255).astype(np.uint8).tobytes()


class DeadlineExceeded(InputError):
    """The request's deadline passed while the autoregressive sampler was decoding."""

    def __init__(self, message: str):
        super().__init__("deadline_exceeded", message)


def window_seed(seed: int, window: int) -> int:
    """An independent, reproducible seed per window of a request."""
    return int(np.random.SeedSequence([seed, window]).generate_state(1)[0])


@dataclass
class WindowRun:
    """What a window's sampler loop reports to and asks of its request (see `Pipeline.generate`)."""
    advance: Callable[[int], None]  # progress units done
    should_stop: Callable[[], bool]  # the job was canceled
    past_deadline: Callable[[], bool]
    log: RunLog
    preview: Callable | None = None  # async (guess, step, steps, decided, confidence): a request with previews
    checkpoint: Callable | None = None  # (sampler state): a request that saves checkpoints


class Pipeline:
    def __init__(self, manifest: Manifest, engines: dict[str, Engine], *, max_batch_size: int = 16,
                 max_wait_ms: float = 2.0, executor: Executor | None = None,
                 on_batch: Callable[[str, int], None] | None = None, preview_every_tokens: int = 32):
        """`preview_every_tokens`: how often a request with previews decoded by the autoregressive
        sampler gets one (settings.ar_preview_every_tokens), besides at each window's end."""
        self.manifest = manifest
        m = manifest
        self.window = m.window_frames
        self.base = tuple(m.base_size)
        self.preview_every_tokens = preview_every_tokens

        def queue(name, fn, kind=FeedsQueue):  # FeedsQueue: an engine's arrays; BatchQueue: decoding jobs
            return kind(fn, name=name, max_batch_size=max_batch_size, max_wait_ms=max_wait_ms,
                        executor=executor, on_batch=on_batch)

        self.encoder = queue("encoder", engines["encoder"].run)
        self.decoder = queue("decoder", engines["decoder"].run)
        self.prior = queue("prior", MaskGITStepper(engines["prior"]), BatchQueue)
        self.ar = queue("ar_prior", ARStepper(engines["ar_prior"]), BatchQueue) if "ar_prior" in engines else None
        self.scorer = queue("ar_score", self._scoring(engines["ar_prior"])) if "ar_prior" in engines else None
        self.sr = [(s, queue(sr_name(s), engines[sr_name(s)].run)) for s in m.super_resolution]  # the cascade, in order

    def stages_for(self, size: tuple[int, int]) -> list:
        """Super-resolution stages that lead from the base size to `size` (H, W), with their queues."""
        queues = {sr_name(stage): q for stage, q in self.sr}
        return [(stage, queues[sr_name(stage)]) for stage in sr_chain(self.manifest, size)]

    async def generate(self, req: VideoRequest, frames: np.ndarray | None,
                       on_progress: Callable[[float], None] = lambda f: None,
                       should_stop: Callable[[], bool] = lambda: False,
                       past_deadline: Callable[[], bool] = lambda: False,
                       on_preview: Callable[["Preview"], None] | None = None,
                       log: "RunLog | None" = None, source_tokens: list[np.ndarray] | None = None,
                       resume: Checkpoint | None = None,
                       on_checkpoint: Callable[[Checkpoint], None] | None = None) -> np.ndarray:
        """-> uint8 (num_frames, H, W, 3). `frames`: the caller's input video, uint8 (T, h, w, 3).

        Once `past_deadline()` turns true, MaskGIT decoding ends at the end of its current step:
        one last call gives every still-masked token its most likely value, and later windows are
        decoded in one such call each; `log.truncated` receives {"steps_done", "steps"} of the
        first window cut short. The autoregressive sampler raises DeadlineExceeded instead.
        `log` (if given) also receives each window's tokens and confidence map.
        `source_tokens` (an edit): the source job's (t, h, w) tokens, one grid per window of
        `plan_windows` (the edit has the source's num_frames, so the same windows); they stand for
        the input video (each window decoded, its frames assembled as the source assembled them:
        the first window all its frames, every later one the frames after its overlap). Each window
        is edited independently from its own stored tokens: its mask is the region in its own
        frames (the overlap frames are not made given, as they are when extending), every token
        whose footprint is wholly given keeps its source value exactly (not a re-encoding of the
        pixels), the others are decoded again, and the window contributes the same frames it did
        in the source job (so overlap frames come from the earlier window's edit).
        `on_preview`: called with the window's current guess, decoded, after every MaskGIT step,
        or (autoregressive) every `preview_every_tokens` sampled tokens and at the window's end
        (`server.decoding.ar_guess` fills the tokens not decided yet); the decoder calls are
        batched with everyone else's, a request without it pays nothing, and asking for it does
        not change the video. A Preview's step/steps count across windows: MaskGIT steps, or
        (autoregressive) tokens decided of num_tokens per window.
        `on_checkpoint`: called after every MaskGIT step and at the end of every window with the
        decoding state (server.resume); `resume`: such a checkpoint of this same request, to go
        on from (the video is the same as an uninterrupted run's)."""
        m, (height, width) = self.manifest, self.base
        log = log if log is not None else RunLog()
        if req.sampler.method == "autoregressive" and self.ar is None:
            raise T.TaskError("this model has no autoregressive prior")
        stages = self.stages_for(req.size.hw)
        # 1. The clip's given pixels at the base resolution.
        windows = plan_windows(req.num_frames, self.window, m.default_condition_frames)
        if source_tokens is not None:
            if len(source_tokens) != len(windows):
                raise T.TaskError(f"the edit's source has {len(source_tokens)} windows; {req.num_frames} frames "
                                  f"take {len(windows)}")
            base_in = np.zeros((req.num_frames, height, width, 3), np.float32)
            # Every source window at once: the decoder queue batches them into one call.
            decoded = await asyncio.gather(*(self._decode_tokens(grid) for grid in source_tokens))
            for win, video in zip(windows, decoded):  # assembled as the source job assembled them
                place_window(base_in, video, win)
        else:
            base_in = None if frames is None else frames_to_float(fit_to_size(frames, height, width))
        given, pixels = clip_condition(req.task, req.num_frames, height, width, base_in, **mask_args(req))
        steps = req.sampler.steps if req.sampler.method == "maskgit" else m.num_tokens
        chunks = -(-req.num_frames // self.window)
        total, done = len(windows) * (steps + 2) + len(stages) * chunks, resume.units if resume else 0

        def advance(units: int = 1) -> None:
            nonlocal done
            done += units
            on_progress(min(1.0, done / total))

        out = pixels.copy()
        if resume is not None:
            log.truncated = resume.truncated
        for index, win in enumerate(windows):
            # 2. This window's mask and condition; overlap frames are what was already made.
            # An edit's window is edited on its own (see the docstring): its overlap is not given.
            wg, wv = window_inputs(given, out, win, self.window, overlap_given=source_tokens is None)
            cond_video = window_condition(wv, wg, req.task)
            # 3. Tokens.
            preview = None
            if on_preview is not None:
                async def preview(guess, step, steps, decided, confidence, index=index, wg=wg, wv=wv,
                                  length=win.length):
                    frames_now = frames_to_uint8((await self._decode_window(guess, wg, wv))[:length])
                    on_preview(Preview(index * steps + step, len(windows) * steps, decided, frames_now,
                                       confidence_bytes(confidence)))
            checkpoint = None
            if on_checkpoint is not None:
                def checkpoint(state, index=index):  # mid-window: finished windows + this one's state
                    on_checkpoint(Checkpoint(index, done, [finished_window(t, c) for t, c in
                                                          zip(log.tokens, log.confidence)], capture(state), log.truncated))
            if resume is not None and index < resume.window:  # finished before the resume: its tokens are kept
                tokens, confidence = window_arrays(resume.windows[index], tuple(m.token_grid))
            else:
                state = resume.state if resume is not None and index == resume.window else None
                tokens, confidence = await self._sample(
                    req, cond_video, wg, window_seed(req.seed, index),
                    WindowRun(advance, should_stop, past_deadline, log, preview, checkpoint),
                    None if source_tokens is None else source_tokens[index], state)
            log.tokens.append(tokens)
            log.confidence.append(confidence)
            # 4. Pixels, with the given ones put back.
            place_window(out, await self._decode_window(tokens, wg, wv), win)
            if resume is None or index >= resume.window:
                advance()
            if on_checkpoint is not None:
                on_checkpoint(Checkpoint(index + 1, done, [finished_window(t, c) for t, c in zip(log.tokens, log.confidence)],
                                         None, log.truncated))
        # 6. Super-resolution, chunk by chunk (the stages take windows of frames).
        for stage, q in stages:
            out = await self._run_stage(q, stage.noise_level, out)
            advance(chunks)
        return frames_to_uint8(restore_given(req, frames, given, out, bool(stages)))

    async def _decode_window(self, tokens: np.ndarray, given: np.ndarray, pixels: np.ndarray) -> np.ndarray:
        """(t, h, w) tokens -> float (T, H, W, 3) at the base size, the given pixels put back."""
        return np.where(given[..., None], pixels, await self._decode_tokens(tokens))

    async def _decode_tokens(self, tokens: np.ndarray) -> np.ndarray:
        """(t, h, w) tokens -> float (T, H, W, 3) at the base size, in [0, 1]: the decoder alone."""
        video = (await self.decoder.submit({"tokens": np.asarray(tokens, np.int64).reshape(self.manifest.token_grid)[None]}))["video"][0]
        return decoder_frames(video)

    async def _sample(self, req: VideoRequest, cond_video: np.ndarray, given: np.ndarray, seed: int,
                      run: "WindowRun", source_tokens: np.ndarray | None = None,
                      resume_state: dict | None = None) -> tuple[np.ndarray, np.ndarray]:
        """-> the window's (t, h, w) tokens, and the confidence map the sampler used: the window's
        condition tokenized, the fully given tokens fixed, then one sampler's loop."""
        m = self.manifest
        if given.any():
            feeds = {"video": cond_video.transpose(3, 0, 1, 2)[None].astype(np.float32)}  # (1, 3, T, H, W)
            cond = (await self.encoder.submit(feeds))["tokens"].reshape(-1).astype(np.int64)
        else:
            cond = np.full(m.num_tokens, m.null_cond_id, dtype=np.int64)
        if resume_state is None:  # a resumed window's checkpoint counted this already
            run.advance(1)
        token_state = T.token_states(given, m.temporal_stride, m.spatial_stride).reshape(-1)
        fixed = token_state == T.STATE_FULL
        if source_tokens is not None:  # an exact edit: the given tokens are the source's own
            cond = np.where(fixed, np.asarray(source_tokens, np.int64).reshape(-1), cond)
        window = self._maskgit_window if req.sampler.method == "maskgit" else self._ar_window
        tokens, confidence = await window(req, seed, cond, token_state, fixed, run, resume_state)
        return tokens.reshape(m.token_grid), confidence.reshape(m.token_grid).copy()

    async def _maskgit_window(self, req, seed, cond, token_state, fixed, run: "WindowRun", resume_state):
        """MaskGIT: one prior call per step (batched with every other request's), a preview and a
        checkpoint after each; past the deadline, the next step is the last (every masked token
        its most likely value)."""
        m, s = self.manifest, req.sampler
        class_id = m.null_class_id if req.class_label is None else int(req.class_label)
        job = MaskGITJob(maskgit_init(np.where(fixed, cond, m.mask_token_id), fixed, mask_id=m.mask_token_id,
                                      steps=s.steps, temperature=s.temperature, choice_temperature=s.choice_temperature,
                                      guidance_scale=s.guidance_scale, top_k=s.top_k, seed=seed,
                                      factors=m.token_factors),
                         cond, token_state, class_id, m.null_class_id, preview=run.preview is not None)
        if resume_state is not None:
            restore(job.state, resume_state)
        for _ in range(s.steps):
            if job.state.done:
                break
            if run.should_stop():
                raise JobCanceled()
            if run.past_deadline() and job.state.steps > job.state.step + 1:
                # Best so far: the next call is the last, every masked token its argmax.
                if run.log.truncated is None:
                    run.log.truncated = {"steps_done": job.state.step, "steps": job.state.steps}
                run.advance(job.state.steps - job.state.step - 1)
                job.state.steps, job.state.temperature = job.state.step + 1, 0.0
            await self.prior.submit(job)
            if run.preview is not None:
                unknown = job.state.n_unknown
                decided = 1.0 if unknown == 0 else 1.0 - job.state.num_masked / unknown
                await run.preview(job.guess, job.state.step, job.state.steps, decided, job.state.confidence)
            run.advance(1)
            if run.checkpoint is not None:
                run.checkpoint(job.state)
        return job.state.tokens, job.state.confidence

    async def _ar_window(self, req, seed, cond, token_state, fixed, run: "WindowRun", resume_state):
        """Autoregressive: one call per sampled token (batched with every other request at the same
        position), a preview every `preview_every_tokens` of them and at the window's end. There is
        no best-so-far video halfway through a raster order, so the deadline fails the window."""
        m, s, grid = self.manifest, req.sampler, tuple(self.manifest.token_grid)
        spec = m.ar
        job = ARJob(ar_init(np.where(fixed, cond, 0), fixed, vocab_size=m.vocab_size, num_classes=len(m.classes),
                            class_id=req.class_label, temperature=s.temperature, top_k=s.top_k,
                            guidance_scale=s.guidance_scale, seed=seed, factors=m.token_factors),
                    cond, token_state, shape=(spec.num_layers, spec.num_heads, spec.head_dim))
        free, sampled, before = int((~fixed).sum()), 0, 0
        while not job.state.done:
            if run.should_stop():
                raise JobCanceled()
            if run.past_deadline():
                raise DeadlineExceeded(f"the deadline passed after {job.state.position} of "
                                       f"{m.num_tokens} tokens (autoregressive decoding cannot stop early)")
            await self.ar.submit(job, group_key=job.group())
            run.advance(job.state.position - before)
            before = job.state.position
            sampled += 1  # every call samples exactly one free token
            if run.preview is not None and (sampled % self.preview_every_tokens == 0 or job.state.done):
                # step / steps: tokens of the window decided (given ones included) / all its tokens
                await run.preview(ar_guess(job.state, cond, token_state, grid), m.num_tokens - int(
                    (job.state.tokens == UNKNOWN).sum()), m.num_tokens, sampled / free, job.state.confidence)
        run.advance(m.num_tokens - before)
        return job.state.tokens, job.state.confidence

    async def tokenize(self, clip: np.ndarray) -> np.ndarray:
        """uint8 (T, H, W, 3) at any size -> the (t, h, w) tokens of its first window (resized to the
        base size; a clip shorter than the window holds its last frame)."""
        video = frames_to_float(fit_to_size(clip[:self.window], *self.base))
        if len(video) < self.window:
            video = np.concatenate([video, np.repeat(video[-1:], self.window - len(video), axis=0)])
        feeds = {"video": video.transpose(3, 0, 1, 2)[None].astype(np.float32)}  # (1, 3, T, H, W)
        return (await self.encoder.submit(feeds))["tokens"][0].reshape(self.manifest.token_grid).astype(np.int64)

    async def detokenize(self, tokens: np.ndarray, size: tuple[int, int] | None = None) -> np.ndarray:
        """(t, h, w) tokens -> uint8 (T, H, W, 3): the decoder, then the super-resolution stages up to `size`."""
        out = await self._decode_tokens(tokens)
        for stage, q in self.stages_for(size or self.base):
            out = await self._run_stage(q, stage.noise_level, out)
        return frames_to_uint8(out)

    async def reconstruct(self, clip: np.ndarray) -> np.ndarray:
        """uint8 (T, H, W, 3) -> encoder -> decoder -> uint8 at the base size (the tokenizer's
        round trip, as the evaluation measures it)."""
        return await self.detokenize(await self.tokenize(clip))

    async def super_resolve(self, clip: np.ndarray, stages: Sequence[int] | None = None) -> np.ndarray:
        """uint8 (T, h, w, 3) -> the super-resolution stages `stages` (indices into the cascade,
        default all of them), as a request of a larger size runs them -> uint8."""
        video = frames_to_float(clip)
        for i in range(len(self.sr)) if stages is None else stages:
            stage, q = self.sr[i]
            video = await self._run_stage(q, stage.noise_level, video)
        return frames_to_uint8(video)

    def _scoring(self, engine: Engine) -> Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]]:
        """One teacher-forced call of the autoregressive prior over whole token grids (an empty KV
        cache): each row's log-probability of every token given the ones before it (factorized:
        the sum of its sub-tokens' log-probabilities, server/samplers/factored.py)."""
        spec, factors = self.manifest.ar, self.manifest.token_factors

        def run(feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
            rows = feeds["ids"].shape[0]
            empty = np.zeros((spec.num_layers, rows, spec.num_heads, 0, spec.head_dim), np.float32)
            logits = engine.run({"ids": feeds["ids"], "cond": feeds["cond"], "state": feeds["state"],
                                 "past_key": empty, "past_value": empty})["logits"]  # (B, N, V or sum(factors))
            return {"log_prob": token_log_prob(logits, feeds["targets"], factors)}

        return run

    async def score(self, tokens: np.ndarray) -> np.ndarray:
        """(t, h, w) tokens -> (t, h, w) log-probabilities (nats) of each token under the
        autoregressive prior, unconditioned (no class, nothing given): exact, in raster order."""
        if self.scorer is None:
            raise T.TaskError("this model has no autoregressive prior to score with")
        m = self.manifest
        flat = np.asarray(tokens, np.int64).reshape(1, -1)
        ids = np.concatenate([[[m.vocab_size + m.null_class_id]], flat[:, :-1]], axis=1)  # [class, t_0 .. t_{N-2}]
        feeds = {"ids": ids, "cond": np.full_like(flat, m.null_cond_id), "state": np.full_like(flat, T.STATE_NONE),
                 "targets": flat}
        return (await self.scorer.submit(feeds))["log_prob"][0].reshape(m.token_grid)

    async def _run_stage(self, q: BatchQueue, noise_level: float, video: np.ndarray) -> np.ndarray:
        """video (T, h, w, 3) -> (T, 2h, 2w, 3); windows of frames go through the stage together."""
        results = await asyncio.gather(*(q.submit({"video": chunk[None], "noise_level": np.array([noise_level], dtype=np.float32)})
                                         for chunk in sr_chunks(video, self.window)))
        return sr_join([r["video_hr"][0] for r in results], len(video))
