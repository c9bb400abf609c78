"""`kinetoscope bench-runtime peers`: Kinetoscope, the LitServe peer and the plain FastAPI peer
under the same load, one after the other, each started here on a free port.

Per target: a short warm-up, then closed loop at concurrency 1, 4 and 16; the target's peak is
the best of those three throughputs; then open loop Poisson arrivals at 50% and 80% of that peak
(each target at its own). Every measurement runs `duration_s` seconds of arrivals and then waits
for the requests in flight. The load is the same everywhere: the same task mix, the same seeds,
the MaskGIT sampler at a step count drawn per request from `steps`, and one input video for the
conditional tasks, made here once (in-process, by the lockstep decode) so every target
conditions on the same bytes and no set-up request runs during a measurement.
"""
from __future__ import annotations

import asyncio
import json
import tempfile
from pathlib import Path
from typing import Any, Callable, Sequence

from cli.bench.client import run_bench
from cli.bench.peers.launch import TARGETS, serve_target

DEFAULT_MIX = {"class_conditional": 0.5, "frame_prediction": 0.25, "inpainting": 0.25}
DEFAULT_STEPS = (4, 8, 12)
CONCURRENCIES = (1, 4, 16)
LOAD_FRACTIONS = (0.5, 0.8)
SUMMARY_KEYS = ("requests", "completed", "errors", "error_counts", "wall_s", "videos_per_second", "latency_s",
                "mean_queue_s", "mean_compute_s", "mean_batch_size", "per_task")


def make_input_video(repo: Path, path: Path, seed: int = 0) -> Path:
    """One class_conditional MP4 (MaskGIT, 12 steps) of the repository's default model."""
    from cli.bench.peers.common import PeerModel

    peer = PeerModel(repo)
    prepared = peer.prepare({"task": "class_conditional", "class_label": 0, "seed": seed,
                             "sampler": {"method": "maskgit", "steps": 12}})
    [video] = peer.generate([prepared])
    path.write_bytes(peer.encode(video, prepared.request))
    return path


def summary(report: dict[str, Any]) -> dict[str, Any]:
    """A report without its per-request records (they stay in the full result)."""
    return {key: report.get(key) for key in SUMMARY_KEYS}


def measure_target(target: str, repo: Path, *, duration_s: float, input_video: Path, seed: int = 0,
                   mix: dict[str, float] | None = None, steps: Sequence[int] = DEFAULT_STEPS,
                   concurrencies: Sequence[int] = CONCURRENCIES, fractions: Sequence[float] = LOAD_FRACTIONS,
                   warmup_requests: int = 4, progress: Callable[[str], None] = print, **server_options) -> dict:
    """One target's closed- and open-loop runs: {"closed": {c: report}, "peak", "open": {f: report}}."""
    mix = mix or DEFAULT_MIX

    def bench(url: str, **load) -> dict:
        return asyncio.run(run_bench(url, target=target, task_mix=mix, steps=list(steps), seed=seed,
                                     input_video=input_video, **load))

    out: dict[str, Any] = {"target": target, "closed": {}, "open": {}}
    with serve_target(target, repo, **server_options) as url:
        bench(url, mode="closed", concurrency=min(4, warmup_requests), num_requests=warmup_requests)
        for c in concurrencies:
            out["closed"][c] = report = bench(url, mode="closed", concurrency=c, duration_s=duration_s)
            progress(f"{target} closed c={c}: {_line(report)}")
        out["peak"] = max(r["videos_per_second"] or 0.0 for r in out["closed"].values())
        for f in fractions:
            rate = f * out["peak"]
            if rate <= 0:
                continue
            out["open"][f] = report = bench(url, mode="open", rate=rate, duration_s=duration_s)
            progress(f"{target} open {f:.0%} of peak ({rate:.2f}/s): {_line(report)}")
    return out


def run_side_by_side(repo: str | Path, *, duration_s: float = 30.0, targets: Sequence[str] = TARGETS, seed: int = 0,
                     mix: dict[str, float] | None = None, steps: Sequence[int] = DEFAULT_STEPS,
                     progress: Callable[[str], None] = print, **options) -> dict:
    """Every target's measurements, one target at a time (never two servers at once)."""
    repo = Path(repo)
    unknown = [t for t in targets if t not in TARGETS]
    if unknown:
        raise ValueError(f"unknown target(s) {unknown}; choose from {', '.join(TARGETS)}")
    with tempfile.TemporaryDirectory() as tmp:
        video = make_input_video(repo, Path(tmp) / "input.mp4", seed)
        results = {t: measure_target(t, repo, duration_s=duration_s, input_video=video, seed=seed, mix=mix,
                                     steps=steps, progress=progress, **options) for t in targets}
    return {"duration_s": duration_s, "task_mix": mix or DEFAULT_MIX, "steps": list(steps), "seed": seed,
            "targets": results}


def _line(report: dict) -> str:
    lat = report["latency_s"]
    return (f"{report['completed']}/{report['requests']} ok, {report['videos_per_second'] or 0:.2f} videos/s, "
            f"p50 {_s(lat['p50'])} p99 {_s(lat['p99'])}")


def _s(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _batch(report: dict) -> str:
    batch = report.get("mean_batch_size") or {}
    value = batch.get("predict", batch.get("prior"))
    return "-" if value is None else f"{value:.1f}"


def rows(result: dict) -> list[tuple[str, str, dict]]:
    """(target, load, report) in table order."""
    out = []
    for target, measured in result["targets"].items():
        for c, report in measured["closed"].items():
            out.append((target, f"closed c={c}", report))
        for f, report in measured["open"].items():
            rate = report["config"]["rate"]
            out.append((target, f"open {float(f):.0%} of peak ({rate:.2f}/s)", report))
    return out


def side_by_side_table(result: dict) -> str:
    """One Markdown table: throughput, latency p50/p99, the queue/compute split, the mean batch."""
    lines = [f"task mix {json.dumps(result['task_mix'])}, MaskGIT steps drawn from {result['steps']}, "
             f"{result['duration_s']:g} s of arrivals per measurement",
             "",
             "| target | load | completed / sent | videos/s | p50 (s) | p99 (s) | mean queue (s) | mean compute (s) "
             "| mean batch |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for target, load, r in rows(result):
        lat = r["latency_s"]
        lines.append(f"| {target} | {load} | {r['completed']} / {r['requests']} | {_s(r['videos_per_second'])} | "
                     f"{_s(lat['p50'])} | {_s(lat['p99'])} | {_s(r['mean_queue_s'])} | {_s(r['mean_compute_s'])} | "
                     f"{_batch(r)} |")
    lines += ["", "mean batch: Kinetoscope, rows per call of the masked prior (/metrics); the peers, requests per "
              "predict call (LitServe) or 1 (FastAPI)."]
    return "\n".join(lines)
