"""One decoding step of many requests in one network call: the `run_batch` functions that the
prior's batching queues run off the event loop.

A request's decoding state travels through `BatchQueue.submit` as a one-element object array
(`{"job": ...}`), so the queue packs the next step of every active request — any task, any
step number — into one batch; the network call and the per-request sampling (each with its own
random generator) both happen here, in the engine's thread.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from server.engines.base import Engine
from server.samplers import ARState, MaskGITState, ar_input_ids, ar_next_positions, ar_step, maskgit_step


@dataclass(eq=False)
class MaskGITJob:
    state: MaskGITState
    cond: np.ndarray  # (N,) condition tokens (null id where none)
    token_state: np.ndarray  # (N,) 0 / 1 / 2: not / partly / fully given
    class_id: int
    null_class: int


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


def wrap(job) -> dict[str, np.ndarray]:
    holder = np.empty(1, dtype=object)
    holder[0] = job
    return {"job": holder}


class MaskGITStepper:
    """run_batch for the masked prior: one forward pass for every job (plus an unconditional row
    for each job that uses classifier-free guidance), then one MaskGIT step per job."""

    def __init__(self, engine: Engine):
        self.engine = engine

    def __call__(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        jobs: list[MaskGITJob] = list(feeds["job"])
        # A guided job without a class needs no second row: its unconditional logits are its own
        # (cond + g * 0), so they are passed back as they are.
        guided = [i for i, j in enumerate(jobs) if j.state.needs_uncond and j.class_id != j.null_class]
        rows = list(range(len(jobs))) + guided
        out = self.engine.run({
            "tokens": np.stack([jobs[i].state.tokens for i in rows]),
            "cond": np.stack([jobs[i].cond for i in rows]),
            "state": np.stack([jobs[i].token_state for i in rows]),
            "class_id": np.array([jobs[i].class_id for i in range(len(jobs))] + [jobs[i].null_class for i in guided],
                                 dtype=np.int64),
        })["logits"]
        uncond = guided_rows(out, [out[i] if j.state.needs_uncond else None for i, j in enumerate(jobs)], guided)
        maskgit_step([j.state for j in jobs], out[:len(jobs)], uncond)
        return {"done": np.array([j.state.done for j in jobs])}


class ARStepper:
    """run_batch for the autoregressive prior: feeds every job's next ids with its KV cache
    (all jobs of a batch share past length and feed length), plus a null-class row with its own
    cache for each job that uses classifier-free guidance; samples, keeps the new caches."""

    def __init__(self, engine: Engine):
        self.engine = engine

    def __call__(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        jobs: list[ARJob] = list(feeds["job"])
        start, count = jobs[0].group()
        if any(j.group() != (start, count) for j in jobs):
            raise ValueError("autoregressive jobs of one batch must share past and feed lengths")
        guided = [i for i, j in enumerate(jobs) if j.state.needs_uncond]
        rows = [(j, False) for j in jobs] + [(jobs[i], True) for i in guided]
        layers, heads, dim = jobs[0].shape
        empty = np.zeros((layers, 1, heads, 0, dim), np.float32)
        pasts = [job.cache(uncond) for job, uncond in rows]
        out = self.engine.run({
            "ids": np.stack([ar_input_ids(j.state, start, count, unconditional=u) for j, u in rows]),
            "cond": np.stack([j.cond[start:start + count] for j, _ in rows]),
            "state": np.stack([j.token_state[start:start + count] for j, _ in rows]),
            "past_key": np.concatenate([empty if key is None else key for key, _ in pasts], axis=1),
            "past_value": np.concatenate([empty if value is None else value for _, value in pasts], axis=1),
        })
        for b, (job, uncond) in enumerate(rows):
            job.keep_cache(uncond, out["present_key"][:, b:b + 1], out["present_value"][:, b:b + 1])
        last = out["logits"][:, -1]
        ar_step([j.state for j in jobs], last[:len(jobs)], guided_rows(last, [None] * len(jobs), guided))
        return {"done": np.array([j.state.done for j in jobs])}
