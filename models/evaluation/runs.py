"""Running requests through the pipeline: bounded concurrency (so the pipeline batches them as
a busy server would), the requests the measurements make, and the tokenizer and super-resolution
stages run on their own."""
from __future__ import annotations

import asyncio
from typing import Any, Awaitable, Callable

import numpy as np

from models.data.moving_digits import FRAMES
from server.api.validation import pipeline_request
from server.manifest import Manifest
from server.pipeline import Pipeline
from server.request import VideoRequest
from server.samplers import SamplerOptions

CONCURRENCY = 16  # requests in flight: the pipeline's default max batch size


async def bounded(calls: list[Callable[[], Awaitable[Any]]], limit: int = CONCURRENCY) -> list[Any]:
    """Runs the calls with at most `limit` in flight, results in order."""
    sem = asyncio.Semaphore(limit)

    async def one(call):
        async with sem:
            return await call()

    return await asyncio.gather(*(one(c) for c in calls))


def request(manifest: Manifest, task: str, seed: int, *, sampler: SamplerOptions, size: tuple[int, int] = (32, 32),
            num_frames: int = FRAMES, **fields) -> VideoRequest:
    """An evaluation request (`size`: (H, W)), validated as the API would (server.api.validation)."""
    return pipeline_request(manifest, task, seed, sampler=sampler, size=size, num_frames=num_frames, **fields)


async def generate_many(pipe: Pipeline, requests: list[VideoRequest],
                        inputs: list[np.ndarray | None]) -> list[np.ndarray]:
    return await bounded([lambda r=r, x=x: pipe.generate(r, x) for r, x in zip(requests, inputs)])


async def reconstruct(pipe: Pipeline, clip: np.ndarray) -> np.ndarray:
    """uint8 clip -> encoder -> decoder -> uint8 clip, through the pipeline's batching queues."""
    return await pipe.reconstruct(clip)


async def super_resolve(pipe: Pipeline, clip: np.ndarray, stages: list[int]) -> np.ndarray:
    """uint8 clip -> the given super-resolution stages (indices into the cascade) -> uint8, as a
    generation request of a larger size runs them."""
    return await pipe.super_resolve(clip, stages)



def describe(s: SamplerOptions) -> str:
    """A sampler in a few words: the fields that differ from the built-in defaults."""
    changed = [f"{k} {v:g}" if isinstance(v, float) else f"{k} {v}"
               for k, v in vars(s).items() if k != "method" and v != getattr(SamplerOptions(), k)]
    return s.method + (", " + ", ".join(changed) if changed else "")
