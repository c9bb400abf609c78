"""What previews and checkpoints cost: seconds per batch of concurrent MaskGIT jobs through the
runtime (the worker's call), without them, with previews, with a checkpoint after every step.

    .venv/bin/python scripts/bench_job_extras.py [--jobs 8] [--steps 12] [--repeat 3]

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=8)
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    runtime = load_runtime(Settings(model_repository=REPO))
    manifest = next(iter(runtime.catalogue.manifests.values()))
    rows = []
    for mode in ("plain", "previews", "checkpoints"):
        jobs = [Job(id=f"b{i}", model=manifest.model_id, request=validate_request(
            {"task": "class_conditional", "class_label": i % 10, "seed": i, "previews": mode == "previews",
             "sampler": {"method": "maskgit", "steps": args.steps}}, manifest, Settings())) for i in range(args.jobs)]
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
