"""One decoding step of many requests in one network call: the `run_batch` functions that the
prior's batching queues run off the event loop.

A request's decoding state (a job) goes through `BatchQueue.submit` as itself, so the queue packs
the next step of every active request — any task, any step number — into one batch. A stepper
runs that batch in three steps, in the engine's thread:

1. `gather`: every job's feeds stacked into one batch (plus a null-class row per guided job);
2. `forward`: the one network call;
3. `update`: each job's own state advanced from its rows of the outputs (each job samples with
   its own random generator, so its tokens do not depend on its batch).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from server.engines.base import Engine
from server.samplers import (UNKNOWN, ARState, MaskGITState, ar_input_ids, ar_next_positions, ar_step,
                             factored_argmax, maskgit_step)
from server.samplers.sampling import guided_logits


@dataclass(eq=False)
class MaskGITJob:
    state: MaskGITState
    cond: np.ndarray  # (N,) condition tokens (null id where none)
    token_state: np.ndarray  # (N,) 0 / 1 / 2: not / partly / fully given
    class_id: int
    null_class: int
    preview: bool = False  # keep `guess` after each step (the request asked for previews)
    guess: np.ndarray | None = None  # (N,) decided tokens, and the most likely token where still masked


@dataclass(eq=False)
class ARJob:
    state: ARState
    cond: np.ndarray
    token_state: np.ndarray
    key: np.ndarray | None = None  # (L, 1, heads, P, head_dim): this request's KV cache
    value: np.ndarray | None = None
    uncond_key: np.ndarray | None = None  # the null-class row's KV cache (guided requests only)
    uncond_value: np.ndarray | None = None
    shape: tuple[int, int, int] = field(default=(0, 0, 0))  # (layers, heads, head_dim)

    def cache(self, uncond: bool) -> tuple[np.ndarray | None, np.ndarray | None]:
        """(key, value) of the request's row, or of its null-class row when `uncond`."""
        return (self.uncond_key, self.uncond_value) if uncond else (self.key, self.value)

    def keep_cache(self, uncond: bool, key: np.ndarray, value: np.ndarray) -> None:
        if uncond:
            self.uncond_key, self.uncond_value = key, value
        else:
            self.key, self.value = key, value

    def group(self) -> tuple[int, int]:
        """Requests share a call only with the same past length and feed length."""
        return self.state.position, ar_next_positions(self.state)


def guided_rows(out: np.ndarray, base: list, guided: list[int]) -> list:
    """Both steppers append one null-class row per guided job after the jobs' own rows: job
    guided[k]'s unconditional output is out[len(base) + k]. Returns `base` with those filled in."""
    for extra, i in enumerate(guided):
        base[i] = out[len(base) + extra]
    return base


@dataclass(eq=False)
class MaskGITBatch:
    """One gathered MaskGIT step: the jobs, which of them got a null-class row, the feeds."""
    jobs: list[MaskGITJob]
    guided: list[int]  # indices of the jobs whose null-class row follows the jobs' own rows
    feeds: dict[str, np.ndarray]


class MaskGITStepper:
    """run_batch for the masked prior: one forward pass for every job (plus an unconditional row
    for each job that uses classifier-free guidance), then one MaskGIT step per job."""

    def __init__(self, engine: Engine):
        self.engine = engine

    def __call__(self, jobs: list[MaskGITJob]) -> list[MaskGITJob]:
        batch = self.gather(jobs)
        self.update(batch, self.forward(batch))
        return jobs

    def gather(self, jobs: list[MaskGITJob]) -> MaskGITBatch:
        """The feeds of one call for every job; no job's state changes."""
        # A guided job without a class needs no second row: its unconditional logits are its own
        # (cond + g * 0), so they are passed back as they are.
        guided = [i for i, j in enumerate(jobs) if j.state.needs_uncond and j.class_id != j.null_class]
        rows = list(range(len(jobs))) + guided
        return MaskGITBatch(jobs, guided, {
            "tokens": np.stack([jobs[i].state.tokens for i in rows]),
            "cond": np.stack([jobs[i].cond for i in rows]),
            "state": np.stack([jobs[i].token_state for i in rows]),
            "class_id": np.array([j.class_id for j in jobs] + [jobs[i].null_class for i in guided], dtype=np.int64),
        })

    def forward(self, batch: MaskGITBatch) -> np.ndarray:
        """The network call: logits for every row of the batch."""
        return self.engine.run(batch.feeds)["logits"]

    def update(self, batch: MaskGITBatch, logits: np.ndarray) -> None:
        """One MaskGIT step of every job, from its own rows of `logits`."""
        jobs = batch.jobs
        uncond = guided_rows(logits, [logits[i] if j.state.needs_uncond else None for i, j in enumerate(jobs)],
                             batch.guided)
        maskgit_step([j.state for j in jobs], logits[:len(jobs)], uncond)
        for b, job in enumerate(jobs):
            if job.preview:
                job.guess = current_guess(job.state, logits[b], uncond[b])


def current_guess(state: MaskGITState, logits: np.ndarray, uncond: np.ndarray | None) -> np.ndarray:
    """A preview's tokens: the decided ones, and at every still-masked position its most likely
    token under this step's (guided) logits (factorized: each factor's most likely sub-token).
    Reads no random numbers: asking for previews does not change the video."""
    guess = state.tokens.copy()
    masked = np.flatnonzero(guess == state.mask_id)
    if masked.size:
        rows = guided_logits(logits[masked], None if uncond is None else uncond[masked], state.guidance_scale)
        if state.factors:
            guess[masked] = factored_argmax(rows, state.factors)
            return guess
        if state.mask_id < rows.shape[-1]:
            rows = rows.astype(np.float64)
            rows[:, state.mask_id] = -np.inf
        guess[masked] = rows.argmax(axis=-1)
    return guess


def joined_cache(parts: list[np.ndarray | None], empty: np.ndarray) -> np.ndarray:
    """The rows' KV caches as one (L, rows, heads, P, head_dim) feed. When the rows are exactly
    the previous call's, in its order (a batch of requests decoding in lockstep, the usual case),
    each part is still the [:, b:b+1] slice of that call's present cache that `keep_cache` kept,
    and the whole array is fed again as it is: no copy. Otherwise the parts are concatenated,
    which copies every row's cache, O(past length) per step: measured, that copy was 12% of an
    autoregressive decode's time at 16 concurrent requests on two cores (BENCHMARKS.md)."""
    base = parts[0].base if parts[0] is not None else None
    if (isinstance(base, np.ndarray) and base.ndim == 5 and base.shape[1] == len(parts)
            and all(part is not None and part.base is base and part.shape[1] == 1
                    and part.__array_interface__["data"][0] == base[:, b:b + 1].__array_interface__["data"][0]
                    for b, part in enumerate(parts))):
        return base
    return np.concatenate([empty if part is None else part for part in parts], axis=1)


@dataclass(eq=False)
class ARBatch:
    """One gathered autoregressive step: its rows (job, whether it is the job's null-class row),
    the indices of the guided jobs, the feeds."""
    jobs: list[ARJob]
    rows: list[tuple[ARJob, bool]]
    guided: list[int]
    feeds: dict[str, np.ndarray]


class ARStepper:
    """run_batch for the autoregressive prior: feeds every job's next ids with its KV cache
    (all jobs of a batch share past length and feed length), plus a null-class row with its own
    cache for each job that uses classifier-free guidance; samples, keeps the new caches."""

    def __init__(self, engine: Engine):
        self.engine = engine

    def __call__(self, jobs: list[ARJob]) -> list[ARJob]:
        batch = self.gather(jobs)
        self.update(batch, self.forward(batch))
        return jobs

    def gather(self, jobs: list[ARJob]) -> ARBatch:
        """The feeds of one call for every job, caches included; no job's state changes."""
        start, count = jobs[0].group()
        if any(j.group() != (start, count) for j in jobs):
            raise ValueError("autoregressive jobs of one batch must share past and feed lengths")
        guided = [i for i, j in enumerate(jobs) if j.state.needs_uncond]
        rows = [(j, False) for j in jobs] + [(jobs[i], True) for i in guided]
        layers, heads, dim = jobs[0].shape
        empty = np.zeros((layers, 1, heads, 0, dim), np.float32)
        pasts = [job.cache(uncond) for job, uncond in rows]
        return ARBatch(jobs, rows, guided, {
            "ids": np.stack([ar_input_ids(j.state, start, count, unconditional=u) for j, u in rows]),
            "cond": np.stack([j.cond[start:start + count] for j, _ in rows]),
            "state": np.stack([j.token_state[start:start + count] for j, _ in rows]),
            "past_key": joined_cache([key for key, _ in pasts], empty),
            "past_value": joined_cache([value for _, value in pasts], empty),
        })

    def forward(self, batch: ARBatch) -> dict[str, np.ndarray]:
        """The network call: logits and the grown KV caches of every row."""
        return self.engine.run(batch.feeds)

    def update(self, batch: ARBatch, out: dict[str, np.ndarray]) -> None:
        """Every row keeps its new cache; every job samples its next tokens from its own rows."""
        for b, (job, uncond) in enumerate(batch.rows):
            job.keep_cache(uncond, out["present_key"][:, b:b + 1], out["present_value"][:, b:b + 1])
        last = out["logits"][:, -1]
        jobs = batch.jobs
        uncond = guided_rows(last, [None] * len(jobs), batch.guided)
        ar_step([j.state for j in jobs], last[:len(jobs)], uncond)


def ar_guess(state: ARState, cond: np.ndarray, token_state: np.ndarray, grid: tuple[int, int, int]) -> np.ndarray:
    """An autoregressive preview's (N,) tokens: every decided one, and at each position not
    decided yet its condition token where the task gives the position in part (token_state 1),
    else the token at the same position of the previous latent frame (decided or filled in the
    same way), and 0 in the first latent frame (a fixed filler: token 0 of the vocabulary). So
    each undecided position shows the last token decided at its (h, w). Reads no random
    numbers: asking for previews does not change the video."""
    tokens = state.tokens.copy()
    open_ = tokens == UNKNOWN
    partly = open_ & (np.asarray(token_state) == 1)
    tokens[partly] = np.asarray(cond)[partly]
    frames = tokens.reshape(grid[0], -1)
    for t in range(grid[0]):
        rest = frames[t] == UNKNOWN
        frames[t, rest] = frames[t - 1, rest] if t else 0
    return frames.reshape(-1)
