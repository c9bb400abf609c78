"""Benchmarks of the serving stack, each printed as Markdown for BENCHMARKS.md.

    kinetoscope bench-runtime tasks [--repo model_repository] [--repeat 3] [--backends onnxruntime,torch]

Seconds per clip for every task, on ONNX Runtime CPU and on PyTorch CPU (the torch engine,
running the `torch.export` programs), and MaskGIT against autoregressive decoding at equal clip
size: all measured in one run, one request at a time, through the serving pipeline.

    kinetoscope bench-runtime serving [--repo model_repository] [--requests 48] [--concurrency 16]

`kinetoscope bench` against live `kinetoscope serve` processes started here: throughput with
step-level batching on and off at concurrency 16 (closed loop), a single request's latency,
p50/p99 latency in an open loop at half the peak throughput, and the HTTP throughput against
the pipeline's own throughput in-process at the same concurrency (serving efficiency).

Prints a Markdown table (for BENCHMARKS.md) and JSON lines. Not a test: timings depend on the
machine; the command and machine go next to the figures.
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from server.pipeline import GenerationRequest
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


@contextlib.contextmanager
def live_server(repo: Path, port: int, batching: bool):
    """A `kinetoscope serve` subprocess (embedded queue and worker), ready when this yields."""
    import httpx

    cmd = [sys.executable, "-m", "cli", "serve", "--port", str(port), "--model-repository", str(repo),
           "--batching" if batching else "--no-batching"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        else:
            raise RuntimeError("server did not become ready")
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)


async def in_process(repo: Path, requests: int, concurrency: int) -> float:
    """Clips per second of the pipeline itself (no HTTP, no queue, no MP4), same load."""
    runtime = load_runtime(Settings(model_repository=repo))
    pipeline = next(iter(runtime.pipelines.values()))
    gate = asyncio.Semaphore(concurrency)

    async def one(i: int):
        async with gate:
            await pipeline.generate(GenerationRequest(task="class_conditional", num_frames=16, size=(32, 32), seed=i,
                                                      class_label=i % 10), None)

    await one(requests)  # warm-up (a seed outside the timed ones)
    start = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(requests)))
    runtime.close()
    return requests / (time.perf_counter() - start)


def serving(repo: Path, requests: int, concurrency: int, port: int) -> dict:
    from cli.bench import run_bench  # the load tester (a client of the SDK) lives above the server

    def bench(url: str, **kw) -> dict:
        return asyncio.run(run_bench(url, task_mix={"class_conditional": 1.0}, size="32x32", seed=0, wait="prefer", **kw))

    out: dict = {}
    for batching in (True, False):
        with live_server(repo, port, batching) as url:
            bench(url, mode="closed", concurrency=concurrency, num_requests=8)  # warm-up
            out["batching_on" if batching else "batching_off"] = bench(url, mode="closed", concurrency=concurrency,
                                                                       num_requests=requests)
            print(json.dumps({k: out[k]["videos_per_second"] for k in out}), flush=True)
    peak = out["batching_on"]["videos_per_second"]
    with live_server(repo, port, True) as url:
        out["single"] = bench(url, mode="closed", concurrency=1, num_requests=8)
        out["half_peak"] = bench(url, mode="open", rate=peak / 2, num_requests=requests)
    out["in_process_clips_per_second"] = asyncio.run(in_process(repo, requests, concurrency))
    return out


def serving_table(out: dict, concurrency: int) -> str:
    on, off = out["batching_on"], out["batching_off"]
    lat = lambda r, q: r["latency_s"][q]  # noqa: E731
    rows = [
        "| measurement | value |", "| --- | ---: |",
        f"| throughput, batching on, closed loop c={concurrency} (videos/s) | {on['videos_per_second']:.2f} |",
        f"| throughput, batching off, closed loop c={concurrency} (videos/s) | {off['videos_per_second']:.2f} |",
        f"| ratio on / off | {on['videos_per_second'] / off['videos_per_second']:.2f} |",
        f"| mean prior batch size, on / off | {(on.get('mean_batch_size') or {}).get('prior', float('nan')):.1f} / "
        f"{(off.get('mean_batch_size') or {}).get('prior', float('nan')):.1f} |",
        f"| single request latency p50 (s) | {lat(out['single'], 'p50'):.2f} |",
        f"| open loop at half peak ({on['videos_per_second'] / 2:.2f}/s): latency p50 / p99 (s) | "
        f"{lat(out['half_peak'], 'p50'):.2f} / {lat(out['half_peak'], 'p99'):.2f} |",
        f"| pipeline in-process, c={concurrency} (clips/s) | {out['in_process_clips_per_second']:.2f} |",
        f"| serving efficiency (HTTP / in-process) | {on['videos_per_second'] / out['in_process_clips_per_second']:.0%} |",
    ]
    return "\n".join(rows)


def machine() -> str:
    return (f"{platform.processor() or platform.machine()}, {len(os.sched_getaffinity(0))} cores, "
            f"Python {platform.python_version()}, numpy {np.__version__}")

