"""Seconds per clip for every task, on ONNX Runtime CPU and on PyTorch CPU (the torch engine,
running the `torch.export` programs), and MaskGIT against autoregressive decoding at equal clip
size: all measured in one run, one request at a time, through the serving pipeline.

    python -m server.benchmarks [--repo model_repository] [--repeat 3] [--backends onnxruntime,torch]

Prints a Markdown table (for BENCHMARKS.md) and JSON lines. Not a test: timings depend on the
machine; the command and machine go next to the figures.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import platform
import statistics
import time
from pathlib import Path

import numpy as np

from server.pipeline import GenerationRequest, SamplerOptions
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
    ("class_conditional, 128x128", "class_conditional", {"class_label": 3}, SamplerOptions(), (128, 128), 16),
    ("frame_prediction, 48 frames", "frame_prediction", {"condition_frames": 4}, SamplerOptions(), (32, 32), 48),
]


async def time_request(pipeline, req: GenerationRequest, frames, repeat: int) -> float:
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
        source = await pipeline.generate(GenerationRequest(task="class_conditional", num_frames=16, size=(32, 32), seed=1,
                                                           class_label=5), None)
        cases = [(name, name.split()[0], kw, SamplerOptions(), (32, 32), 16) for name, kw in CASES] + EXTRA
        for name, task, kw, sampler, size, frames in cases:
            req = GenerationRequest(task=task, num_frames=frames, size=size, seed=0, sampler=sampler, **kw)
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


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repo", type=Path, default=Path("model_repository"))
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--backends", default="onnxruntime,torch")
    args = parser.parse_args(argv)
    backends = [b for b in args.backends.split(",") if b]
    rows = asyncio.run(run(args.repo, backends, args.repeat))
    print(f"\nmachine: {platform.processor() or platform.machine()}, {len(__import__('os').sched_getaffinity(0))} cores, "
          f"numpy {np.__version__}\n")
    print(table(rows, backends))


if __name__ == "__main__":
    main()
