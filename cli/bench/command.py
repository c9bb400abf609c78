"""`kinetoscope bench` itself: options in, a run, the JSON and PNG out."""
from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from cli.bench.client import run_bench
from cli.bench.options import DEFAULT_REQUESTS, parse_steps, parse_task_mix
from cli.bench.report import plot_report


def bench_command(
    url: str = "http://127.0.0.1:8000",
    mode: str = "closed",
    concurrency: int = 4,
    rate: float = 1.0,
    duration: float | None = None,
    requests: int | None = None,
    task_mix: str = "class_conditional=1",
    size: str | None = None,
    frames: int | None = None,
    output_json: Path | None = None,
    output_png: Path | None = None,
    api_key: str | None = None,
    wait: str = "prefer",
    seed: int = 0,
    input_video: Path | None = None,
    target: str = "kinetoscope",
    steps: str | None = None,
    model_repository: Path | None = None,
    roofline: bool = True,
) -> dict[str, Any]:
    """What `kinetoscope bench` runs: parse the options, run, write the JSON and PNG, return the report.

    With neither `duration` nor `requests`, runs DEFAULT_REQUESTS requests. Raises BenchError
    with a message for the user when an option is wrong.
    """
    if duration is None and requests is None:
        requests = DEFAULT_REQUESTS
    report = asyncio.run(run_bench(
        url, mode=mode, concurrency=concurrency, rate=rate, duration_s=duration, num_requests=requests,
        task_mix=parse_task_mix(task_mix), size=size, num_frames=frames, seed=seed, api_key=api_key,
        wait=wait, input_video=input_video, target=target, steps=parse_steps(steps),
        roofline=roofline, model_repository=model_repository,
    ))
    if output_json is not None:
        Path(output_json).write_text(json.dumps(report, indent=2) + "\n")
    if output_png is not None:
        plot_report(report, output_png)
    return report
