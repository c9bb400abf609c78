"""Benchmarks of the serving stack, each printed as Markdown for BENCHMARKS.md.

    kinetoscope bench-runtime tasks [--repo model_repository] [--repeat 3] [--backends onnxruntime,torch]

Seconds per clip for every task, on ONNX Runtime CPU and on PyTorch CPU (the torch engine,
running the `torch.export` programs), and MaskGIT against autoregressive decoding at equal clip
size: all measured in one run, one request at a time, through the serving pipeline.

`in_process` is the pipeline's own throughput (no HTTP, no queue, no MP4), which
`kinetoscope bench-runtime serving` (cli/bench/serving.py, live servers under load) compares the
HTTP throughput with.

Prints a Markdown table (for BENCHMARKS.md) and JSON lines. Not a test: timings depend on the
machine; the command and machine go next to the figures.
"""
from __future__ import annotations

import asyncio
import json
import os
import platform
import statistics
import time
from pathlib import Path

import numpy as np

from server.api.validation import pipeline_request
from server.request import VideoRequest
from server.samplers import SamplerOptions
from server.runtime import load_runtime
from server.settings import Settings

CASES: list[tuple[str, dict]] = [
    ("class_conditional", {"class_label": 3}),
    ("class_conditional_frame_prediction", {"class_label": 3, "condition_frames": 4}),
    ("frame_prediction", {"condition_frames": 4}),
    ("frame_interpolation", {}),
    ("inpainting center", {"preset": "center"}),
    ("inpainting dynamic", {"preset": "dynamic"}),
    ("outpainting center", {"preset": "center"}),
    ("outpainting vertical", {"preset": "vertical"}),
    ("outpainting horizontal", {"preset": "horizontal"}),
    ("outpainting dynamic", {"preset": "dynamic"}),
]
EXTRA: list[tuple[str, str, dict, SamplerOptions, tuple[int, int], int]] = [
    ("class_conditional, autoregressive", "class_conditional", {"class_label": 3}, SamplerOptions(method="autoregressive"), (32, 32), 16),
    ("class_conditional, autoregressive, guidance 3", "class_conditional", {"class_label": 3},
     SamplerOptions(method="autoregressive", temperature=0.5, guidance_scale=3.0), (32, 32), 16),
    ("class_conditional, MaskGIT, guidance 3", "class_conditional", {"class_label": 3},
     SamplerOptions(guidance_scale=3.0), (32, 32), 16),
    ("class_conditional, 128x128", "class_conditional", {"class_label": 3}, SamplerOptions(), (128, 128), 16),
    ("frame_prediction, 48 frames", "frame_prediction", {"condition_frames": 4}, SamplerOptions(), (32, 32), 48),
]


def all_cases() -> list[tuple[str, str, dict, SamplerOptions, tuple[int, int], int]]:
    """(case, task, fields, sampler, (H, W), frames) of every case `run` times."""
    return [(name, name.split()[0], kw, SamplerOptions(), (32, 32), 16) for name, kw in CASES] + EXTRA


def case_body(task: str, kw: dict, sampler: SamplerOptions, size: tuple[int, int], frames: int) -> dict:
    """A case as an API create body (what cli/bench/roofline.py counts the FLOPs of)."""
    from dataclasses import asdict

    body = {"task": task, "sampler": asdict(sampler), "size": f"{size[1]}x{size[0]}", "num_frames": frames,
            **{k: v for k, v in kw.items() if k != "preset"}}
    if "preset" in kw:
        body["mask"] = {"preset": kw["preset"]}
    return body


async def time_request(pipeline, req: VideoRequest, frames, repeat: int) -> float:
    await pipeline.generate(req, frames)  # warm-up
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        await pipeline.generate(req, frames)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


async def run(repo: Path, backends: list[str], repeat: int) -> list[dict]:
    rows: list[dict] = []
    for backend in backends:
        runtime = load_runtime(Settings(model_repository=repo, backend=backend))
        pipeline = next(iter(runtime.pipelines.values()))
        m = pipeline.manifest
        source = await pipeline.generate(pipeline_request(m, "class_conditional", 1, sampler=SamplerOptions(),
                                                          size=(32, 32), num_frames=16, class_label=5), None)
        for name, task, kw, sampler, size, frames in all_cases():
            req = pipeline_request(m, task, 0, sampler=sampler, size=size, num_frames=frames, **kw)
            seconds = await time_request(pipeline, req, None if task == "class_conditional" else source, repeat)
            row = {"case": name, "backend": backend, "seconds_per_clip": round(seconds, 3)}
            rows.append(row)
            print(json.dumps(row), flush=True)
        runtime.close()
    return rows


def table(rows: list[dict], backends: list[str]) -> str:
    cases = list(dict.fromkeys(r["case"] for r in rows))
    by = {(r["case"], r["backend"]): r["seconds_per_clip"] for r in rows}
    lines = ["| case (32x32, 16 frames, 12 MaskGIT steps unless named) | " + " | ".join(f"{b} s/clip" for b in backends) + " |",
             "| --- | " + " | ".join("---:" for _ in backends) + " |"]
    for c in cases:
        lines.append(f"| {c} | " + " | ".join(f"{by.get((c, b), float('nan')):.3f}" for b in backends) + " |")
    return "\n".join(lines)


async def in_process(repo: Path, requests: int, concurrency: int) -> float:
    """Clips per second of the pipeline itself (no HTTP, no queue, no MP4), same load."""
    runtime = load_runtime(Settings(model_repository=repo))
    pipeline = next(iter(runtime.pipelines.values()))
    gate = asyncio.Semaphore(concurrency)

    async def one(i: int):
        async with gate:
            await pipeline.generate(pipeline_request(pipeline.manifest, "class_conditional", i, sampler=SamplerOptions(),
                                                     size=(32, 32), num_frames=16, class_label=i % 10), None)

    await one(requests)  # warm-up (a seed outside the timed ones)
    start = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(requests)))
    runtime.close()
    return requests / (time.perf_counter() - start)


def machine() -> str:
    return (f"{platform.processor() or platform.machine()}, {len(os.sched_getaffinity(0))} cores, "
            f"Python {platform.python_version()}, numpy {np.__version__}")

