"""The report's output: the PNG (plot_report) and the command line's summary (format_summary)."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import numpy as np

from cli.bench.options import BenchError


def plot_report(report: Mapping[str, Any], path: str | Path) -> None:
    """A PNG of latency over time (per task; errors marked), the latency histogram, and throughput."""
    try:
        from matplotlib.figure import Figure  # no pyplot: no global backend, works headless
    except ImportError:
        raise BenchError("--output-png needs matplotlib: pip install -e '.[bench]'") from None

    records = report["records"]
    ok = [r for r in records if r["ok"]]
    failed = [r for r in records if not r["ok"]]
    fig = Figure(figsize=(15, 4.2), layout="constrained")
    over_time, histogram, throughput = fig.subplots(1, 3)

    for task in sorted({r["task"] for r in ok}):
        mine = [r for r in ok if r["task"] == task]
        over_time.scatter([r["sent_at"] for r in mine], [r["latency_s"] for r in mine], s=10, label=task)
    if failed:
        over_time.scatter([r["sent_at"] for r in failed], [0.0] * len(failed), marker="x", color="red",
                          label=f"errors ({len(failed)})")
    over_time.set(title="latency by send time", xlabel="sent at (s)", ylabel="latency (s)")
    over_time.legend(fontsize="small")

    latencies = [r["latency_s"] for r in ok]
    if latencies:
        histogram.hist(latencies, bins=min(40, max(5, len(latencies) // 4)), color="tab:blue")
        for name in ("p50", "p90", "p99"):
            value = report["latency_s"][name]
            histogram.axvline(value, linestyle="--", color="black", linewidth=0.8)
            histogram.annotate(name, (value, 0.98), xycoords=("data", "axes fraction"), rotation=90, va="top", fontsize=8)
    histogram.set(title="latency", xlabel="latency (s)", ylabel="requests")

    finishes = np.array([r["sent_at"] + r["latency_s"] for r in ok])
    wall = max(report["wall_s"], 1e-9)
    width = max(wall / 30, 0.1)  # about 30 bins over the run, none shorter than 0.1 s
    if len(finishes):
        edges = np.arange(0.0, wall + width, width)
        counts, _ = np.histogram(finishes, bins=edges)
        throughput.stairs(counts / width, edges, fill=True, alpha=0.6)
        throughput.axhline(report["videos_per_second"], linestyle="--", color="black", linewidth=0.8, label="mean")
        throughput.legend(fontsize="small")
    throughput.set(title="throughput", xlabel="time (s)", ylabel="videos / s")

    config = report["config"]
    load = f"{config['concurrency']} workers" if config["mode"] == "closed" else f"{config['rate']:g}/s Poisson"
    fig.suptitle(f"kinetoscope bench: {config['url']}, {config['mode']} loop, {load}")
    fig.savefig(path, dpi=100)


def format_summary(report: Mapping[str, Any]) -> str:
    """A few human-readable lines of the report, for the command line."""
    lat = report["latency_s"]

    def seconds(v: float | None) -> str:
        return "n/a" if v is None else f"{v:.3f}s"

    vps, batch = report["videos_per_second"], report["mean_batch_size"]
    lines = [
        f"requests {report['requests']}, completed {report['completed']}, errors {report['errors']}"
        + (f" {report['error_counts']}" if report["error_counts"] else ""),
        f"throughput {vps:.3f} videos/s over {report['wall_s']:.1f}s" if vps is not None else "throughput n/a",
        f"latency p50 {seconds(lat['p50'])}  p90 {seconds(lat['p90'])}  p99 {seconds(lat['p99'])}",
        f"mean queue {seconds(report['mean_queue_s'])}  mean compute {seconds(report['mean_compute_s'])}",
        "mean batch size " + (", ".join(f"{engine} {'n/a' if v is None else f'{v:.2f}'}" for engine, v in batch.items())
                              if batch else "n/a"),
    ]
    roof = report.get("roofline") or {}
    if "share_of_peak" in roof:
        lines.append(f"roofline {roof['gflop_per_clip']:.2f} GFLOP per clip, {roof['achieved_gflop_per_s']:.1f} GFLOP/s "
                     f"= {roof['share_of_peak']:.0%} of this machine's measured peak {roof['peak_gflop_per_s']:.0f} GFLOP/s "
                     f"(ceiling {roof['ceiling_videos_per_second']:.2f} videos/s)")
    elif roof.get("reason"):
        lines.append(f"roofline n/a: {roof['reason']}")
    return "\n".join(lines)
