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

    def group(self) -> tuple[int, int]:
        """Requests share a call only with the same past length and feed length."""
        return self.state.position, ar_next_positions(self.state)


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
        uncond: list[np.ndarray | None] = [out[i] if j.state.needs_uncond else None for i, j in enumerate(jobs)]
        for extra, i in enumerate(guided):
            uncond[i] = out[len(jobs) + extra]
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

        def cache(job: ARJob, uncond: bool, which: str) -> np.ndarray:
            held = getattr(job, f"uncond_{which}" if uncond else which)
            return empty if held is None else held

        out = self.engine.run({
            "ids": np.stack([ar_input_ids(j.state, start, count, unconditional=u) for j, u in rows]),
            "cond": np.stack([j.cond[start:start + count] for j, _ in rows]),
            "state": np.stack([j.token_state[start:start + count] for j, _ in rows]),
            "past_key": np.concatenate([cache(j, u, "key") for j, u in rows], axis=1),
            "past_value": np.concatenate([cache(j, u, "value") for j, u in rows], axis=1),
        })
        for b, (job, uncond) in enumerate(rows):
            prefix = "uncond_" if uncond else ""
            setattr(job, f"{prefix}key", out["present_key"][:, b:b + 1])
            setattr(job, f"{prefix}value", out["present_value"][:, b:b + 1])
        last = out["logits"][:, -1]
        uncond_last: list[np.ndarray | None] = [None] * len(jobs)
        for extra, i in enumerate(guided):
            uncond_last[i] = last[len(jobs) + extra]
        ar_step([j.state for j in jobs], last[:len(jobs)], uncond_last)
        return {"done": np.array([j.state.done for j in jobs])}
