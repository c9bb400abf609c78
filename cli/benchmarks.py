"""`kinetoscope bench` (load-test any deployment over HTTP) and `kinetoscope bench-runtime` (the
runs behind BENCHMARKS.md: seconds per task in-process, and live servers started here)."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer


def bench(url: Annotated[str, typer.Option(help="base URL of a deployment")] = "http://127.0.0.1:8000",
          mode: Annotated[str, typer.Option(help="closed (concurrency N) | open (Poisson arrivals at --rate)")] = "closed",
          concurrency: int = 4, rate: float = 1.0,
          duration: Annotated[Optional[float], typer.Option(help="seconds to send requests")] = None,
          requests: Annotated[Optional[int], typer.Option(help="requests to send")] = None,
          task_mix: Annotated[str, typer.Option(help="e.g. class_conditional=0.5,frame_prediction=0.5")] = "class_conditional=1",
          size: Optional[str] = None, frames: Optional[int] = None,
          output_json: Optional[Path] = None, output_png: Optional[Path] = None,
          api_key: Optional[str] = None, seed: int = 0,
          target: Annotated[str, typer.Option(help="kinetoscope (the job API) | litserve | fastapi "
                                              "(the peers of cli/bench/peers/)")] = "kinetoscope",
          steps: Annotated[Optional[str], typer.Option(help="MaskGIT step counts, one drawn per request, "
                                                       "e.g. 4,8,12 (default: the server's sampler)")] = None,
          model_repository: Annotated[Optional[Path], typer.Option(
              help="the served model's repository, for the roofline (default: model_repository/<model id> here)")] = None,
          roofline: Annotated[bool, typer.Option(help="report FLOPs per clip and the share of this machine's "
                                                 "measured matmul peak")] = True):
    """Load-test a deployment: videos/s, latency percentiles, queue/compute split, batch size."""
    from cli.bench import BenchError, bench_command, format_summary

    try:
        report = bench_command(url=url, mode=mode, concurrency=concurrency, rate=rate, duration=duration,
                               requests=requests, task_mix=task_mix, size=size, frames=frames, output_json=output_json,
                               output_png=output_png, api_key=api_key, seed=seed, target=target, steps=steps,
                               model_repository=model_repository, roofline=roofline)
    except BenchError as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(2)
    typer.echo(format_summary(report))


def bench_runtime(what: Annotated[str, typer.Argument(help="tasks (seconds per clip in-process, per backend) | "
                                                       "serving (live `kinetoscope serve` processes under load) | roofline (FLOPs per clip, the peak) | "
                                                       "peers (Kinetoscope, LitServe and plain FastAPI side by side)")],
                  repo: Annotated[Path, typer.Option(help="model repository folder")] = Path("model_repository"),
                  repeat: Annotated[int, typer.Option(help="tasks: timed requests per case (median)")] = 3,
                  backends: Annotated[str, typer.Option(help="tasks: comma-separated backends")] = "onnxruntime,torch",
                  requests: Annotated[int, typer.Option(help="serving: requests per measurement")] = 48,
                  concurrency: Annotated[int, typer.Option(help="serving: closed-loop concurrency")] = 16,
                  port: Annotated[int, typer.Option(help="serving: port of the servers started")] = 8765,
                  duration: Annotated[float, typer.Option(help="peers: seconds of arrivals per measurement")] = 30.0,
                  targets: Annotated[str, typer.Option(help="peers: comma-separated targets")] = "kinetoscope,litserve,fastapi",
                  steps: Annotated[str, typer.Option(help="peers: MaskGIT step counts drawn per request")] = "4,8,12",
                  threads: Annotated[int, typer.Option(help="roofline: ONNX Runtime intra-op threads of the peak "
                                                        "probe (0: its default)")] = 0,
                  json_path: Annotated[Optional[Path], typer.Option("--json", help="also write the raw results here")] = None):
    """The benchmarks behind BENCHMARKS.md: a Markdown table and JSON lines (server/benchmarks.py,
    cli/bench/serving.py, cli/bench/peers/side_by_side.py)."""
    import asyncio
    import json

    from server import benchmarks

    if what == "tasks":
        chosen = [b for b in backends.split(",") if b]
        rows = asyncio.run(benchmarks.run(repo, chosen, repeat))
        result: object = rows
        from cli.bench.roofline import tasks_roofline

        text = benchmarks.table(rows, chosen) + "\n\n" + tasks_roofline(repo, rows)
    elif what == "serving":
        from cli.bench import serving

        result = serving.serving(repo, requests, concurrency, port)
        text = serving.serving_table(result, concurrency)
    elif what == "roofline":
        from cli.bench.roofline import roofline_table

        result, text = None, roofline_table(repo, threads)
    elif what == "peers":
        from cli.bench import BenchError, parse_steps
        from cli.bench.peers.side_by_side import run_side_by_side, side_by_side_table

        try:
            step_counts = parse_steps(steps)
        except BenchError as e:
            typer.echo(f"error: {e}", err=True)
            raise typer.Exit(2)
        chosen = [t.strip() for t in targets.split(",") if t.strip()]
        result = run_side_by_side(repo, duration_s=duration, targets=chosen, steps=step_counts or [12],
                                  progress=lambda line: typer.echo(line, err=True))
        text = side_by_side_table(result)
    else:
        typer.echo(f"error: bench-runtime runs tasks, serving, roofline or peers, not {what!r}", err=True)
        raise typer.Exit(2)
    if json_path:
        json_path.write_text(json.dumps(result, indent=2, default=str))
    typer.echo(f"\nmachine: {benchmarks.machine()}\n")
    typer.echo(text)
