"""Running requests through the pipeline: bounded concurrency (so the pipeline batches them as
a busy server would), the requests the measurements make, and the tokenizer and super-resolution
stages run on their own."""
from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any, Awaitable, Callable

import numpy as np

from models.data.moving_digits import FRAMES
from server.pipeline import Pipeline
from server.samplers import SamplerOptions
from server.video import frames_to_float, frames_to_uint8

if TYPE_CHECKING:
    from server.pipeline import GenerationRequest

CONCURRENCY = 16  # requests in flight: the pipeline's default max batch size


async def bounded(calls: list[Callable[[], Awaitable[Any]]], limit: int = CONCURRENCY) -> list[Any]:
    """Runs the calls with at most `limit` in flight, results in order."""
    sem = asyncio.Semaphore(limit)

    async def one(call):
        async with sem:
            return await call()

    return await asyncio.gather(*(one(c) for c in calls))


def request(task: str, seed: int, *, sampler: SamplerOptions, size: tuple[int, int] = (32, 32),
            num_frames: int = FRAMES, class_label: int | None = None, preset: str | None = None,
            condition_frames: int | None = None) -> GenerationRequest:
    from server.pipeline import GenerationRequest

    return GenerationRequest(task=task, num_frames=num_frames, size=size, seed=seed, class_label=class_label,
                             preset=preset, condition_frames=condition_frames, sampler=sampler)


async def generate_many(pipe: Pipeline, requests: list[GenerationRequest],
                        inputs: list[np.ndarray | None]) -> list[np.ndarray]:
    return await bounded([lambda r=r, x=x: pipe.generate(r, x) for r, x in zip(requests, inputs)])


async def reconstruct(pipe: Pipeline, clip: np.ndarray) -> np.ndarray:
    """uint8 clip -> encoder -> decoder -> uint8 clip, through the pipeline's batching queues."""
    video = frames_to_float(clip).transpose(3, 0, 1, 2)[None]  # (1, 3, T, H, W)
    tokens = (await pipe.encoder.submit({"video": video}))["tokens"]
    tokens = tokens.reshape((1, *pipe.manifest.token_grid)).astype(np.int64)
    out = (await pipe.decoder.submit({"tokens": tokens}))["video"][0]  # (3, T, H, W)
    return frames_to_uint8(np.clip(out.transpose(1, 2, 3, 0), 0.0, 1.0))


async def super_resolve(pipe: Pipeline, clip: np.ndarray, stages: list[int]) -> np.ndarray:
    """uint8 clip -> the pipeline's super-resolution step through the given stages (indices
    into pipe.sr) -> uint8, as a generation request of a larger size runs them."""
    video = frames_to_float(clip)
    for i in stages:
        stage, queue = pipe.sr[i]
        video = await pipe._super_resolve(queue, stage.noise_level, video)
    return frames_to_uint8(video)



def describe(s: SamplerOptions) -> str:
    """A sampler in a few words: the fields that differ from the built-in defaults."""
    changed = [f"{k} {v:g}" if isinstance(v, float) else f"{k} {v}"
               for k, v in vars(s).items() if k != "method" and v != getattr(SamplerOptions(), k)]
    return s.method + (", " + ", ".join(changed) if changed else "")
