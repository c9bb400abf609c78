"""What previews and checkpoints cost: seconds per batch of concurrent MaskGIT jobs through the
runtime (the worker's call), without them, with previews, with a checkpoint after every step.

    .venv/bin/python scripts/bench_job_extras.py [--jobs 8] [--steps 12] [--repeat 3]

With `--concurrency 1 8 [--clips 16]`: clips/s with and without previews, `--clips` jobs per run
with at most N running at once (so concurrency 1 runs them one after another), the median of
`--repeat` runs after a warm-up, each run's figures printed as it ends (a shared machine is noisy).

Prints a Markdown table for BENCHMARKS.md. Not a test: timings depend on the machine.
"""
from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from pathlib import Path

from server.api.validation import validate_request
from server.jobs.base import Job
from server.runtime import load_runtime
from server.settings import Settings

REPO = Path(__file__).resolve().parent.parent / "model_repository"


async def batch(runtime, jobs: list[Job], mode: str) -> tuple[float, int]:
    sizes: list[int] = []

    def run(job):
        kw = {}
        if mode == "previews":
            kw["on_preview"] = lambda p: sizes.append(len(p["image"]) + len(p["confidence"]))
        if mode == "checkpoints":
            kw["on_checkpoint"] = lambda b: sizes.append(len(b))
        return runtime.generate(job, None, lambda f: None, lambda: False, **kw)

    start = time.perf_counter()
    await asyncio.gather(*(run(j) for j in jobs))
    return time.perf_counter() - start, (max(sizes) if sizes else 0)


def make_jobs(manifest, count: int, steps: int, previews: bool) -> list[Job]:
    """`count` class-conditional MaskGIT jobs of the demo's 32x32 16-frame window, seeds 0..count-1."""
    return [Job(id=f"b{i}", model=manifest.model_id, request=validate_request(
        {"task": "class_conditional", "class_label": i % 10, "seed": i, "previews": previews,
         "sampler": {"method": "maskgit", "steps": steps}}, manifest, Settings())) for i in range(count)]


async def clips_per_second(runtime, jobs: list[Job], concurrency: int) -> float:
    """Runs `jobs` with at most `concurrency` at once (previews published to a no-op, as a worker
    would hand them to the queue); returns clips per second."""
    gate = asyncio.Semaphore(concurrency)

    async def run(job: Job) -> None:
        kw = {"on_preview": lambda p: None} if job.request.previews else {}
        async with gate:
            await runtime.generate(job, None, lambda f: None, lambda: False, **kw)

    start = time.perf_counter()
    await asyncio.gather(*(run(j) for j in jobs))
    return len(jobs) / (time.perf_counter() - start)


def throughput(runtime, manifest, concurrencies: list[int], clips: int, steps: int, repeat: int) -> None:
    """The clips/s table: per concurrency, without and with previews (runs alternate, so drifting
    load on a shared machine falls on both alike)."""
    rows = []
    for c in concurrencies:
        runs: dict[bool, list[float]] = {False: [], True: []}
        for previews in (False, True):  # warm-up
            asyncio.run(clips_per_second(runtime, make_jobs(manifest, c, steps, previews), c))
        for r in range(repeat):
            for previews in (False, True):
                runs[previews].append(asyncio.run(clips_per_second(runtime, make_jobs(manifest, clips, steps, previews), c)))
            print(f"# concurrency {c} run {r + 1}: plain {runs[False][-1]:.3f}, previews {runs[True][-1]:.3f} clips/s",
                  flush=True)
        rows.append((c, statistics.median(runs[False]), statistics.median(runs[True]), runs))
    print("| concurrency | clips/s plain | clips/s with previews | previews cost | runs (plain; previews) |")
    print("| ---: | ---: | ---: | ---: | --- |")
    for c, plain, previews, runs in rows:
        spread = "; ".join(", ".join(f"{v:.2f}" for v in runs[k]) for k in (False, True))
        print(f"| {c} | {plain:.2f} | {previews:.2f} | {plain / previews:.2f}x the time | {spread} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=8)
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--concurrency", type=int, nargs="*", help="measure clips/s at these concurrencies instead")
    parser.add_argument("--clips", type=int, default=16, help="jobs per throughput run")
    args = parser.parse_args()
    runtime = load_runtime(Settings(model_repository=REPO))
    manifest = next(iter(runtime.catalogue.manifests.values()))
    if args.concurrency:
        throughput(runtime, manifest, args.concurrency, args.clips, args.steps, args.repeat)
        runtime.close()
        return
    rows = []
    for mode in ("plain", "previews", "checkpoints"):
        jobs = make_jobs(manifest, args.jobs, args.steps, mode == "previews")
        asyncio.run(batch(runtime, jobs, mode))  # warm-up
        runs = [asyncio.run(batch(runtime, jobs, mode)) for _ in range(args.repeat)]
        rows.append((mode, statistics.median(r[0] for r in runs), runs[0][1]))
    runtime.close()
    base = rows[0][1]
    print(f"| {args.jobs} concurrent jobs, MaskGIT {args.steps} steps, 32x32x16 | seconds (median of {args.repeat}) "
          "| vs plain | largest message (bytes) |")
    print("| --- | ---: | ---: | ---: |")
    for mode, seconds, size in rows:
        print(f"| {mode} | {seconds:.2f} | {seconds / base:.2f}x | {size or '-'} |")


if __name__ == "__main__":
    main()
