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
        guided = [i for i, j in enumerate(jobs) if j.state.needs_uncond]
        rows = list(range(len(jobs))) + guided
        out = self.engine.run({
            "tokens": np.stack([jobs[i].state.tokens for i in rows]),
            "cond": np.stack([jobs[i].cond for i in rows]),
            "state": np.stack([jobs[i].token_state for i in rows]),
            "class_id": np.array([jobs[i].class_id for i in range(len(jobs))] + [jobs[i].null_class for i in guided],
                                 dtype=np.int64),
        })["logits"]
        uncond: list[np.ndarray | None] = [None] * len(jobs)
        for extra, i in enumerate(guided):
            uncond[i] = out[len(jobs) + extra]
        maskgit_step([j.state for j in jobs], out[:len(jobs)], uncond)
        return {"done": np.array([j.state.done for j in jobs])}


class ARStepper:
    """run_batch for the autoregressive prior: feeds every job's next ids with its KV cache
    (all jobs of a batch share past length and feed length), samples, keeps the new cache."""

    def __init__(self, engine: Engine):
        self.engine = engine

    def __call__(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        jobs: list[ARJob] = list(feeds["job"])
        start, count = jobs[0].group()
        if any(j.group() != (start, count) for j in jobs):
            raise ValueError("autoregressive jobs of one batch must share past and feed lengths")
        layers, heads, dim = jobs[0].shape
        empty = np.zeros((layers, 1, heads, 0, dim), np.float32)
        out = self.engine.run({
            "ids": np.stack([ar_input_ids(j.state, start, count) for j in jobs]),
            "cond": np.stack([j.cond[start:start + count] for j in jobs]),
            "state": np.stack([j.token_state[start:start + count] for j in jobs]),
            "past_key": np.concatenate([empty if j.key is None else j.key for j in jobs], axis=1),
            "past_value": np.concatenate([empty if j.value is None else j.value for j in jobs], axis=1),
        })
        for b, job in enumerate(jobs):
            job.key = out["present_key"][:, b:b + 1]
            job.value = out["present_value"][:, b:b + 1]
        ar_step([j.state for j in jobs], out["logits"][:, -1])
        return {"done": np.array([j.state.done for j in jobs])}
