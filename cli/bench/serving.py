"""`kinetoscope bench-runtime serving`: `kinetoscope bench` against live `kinetoscope serve`
processes started here: throughput with step-level batching on and off at concurrency 16
(closed loop), a single request's latency, p50/p99 latency in an open loop at half the peak
throughput, and the HTTP throughput against the pipeline's own in-process throughput at the same
concurrency (serving efficiency; server/benchmarks.py measures that part)."""
from __future__ import annotations

import asyncio
import json
from dataclasses import asdict
from pathlib import Path

from cli.bench.client import run_bench
from cli.bench.peers.launch import serve_target


def live_server(repo: Path, port: int, batching: bool):
    """A `kinetoscope serve` subprocess (embedded queue and worker), ready when this yields its URL;
    batching off is a max batch of one row (what `--no-batching` sets)."""
    return serve_target("kinetoscope", repo, port=port, max_batch_size=None if batching else 1)


def sampler_fields(sampler) -> dict:
    """A fully given sampler as create-body fields: the model's recommendations do not enter, so
    the HTTP runs decode exactly what the in-process run does."""
    return {"sampler": {k: v for k, v in asdict(sampler).items() if v is not None}}


def serving(repo: Path, requests: int, concurrency: int, port: int) -> dict:
    from server.samplers import SamplerOptions

    # MaskGIT, 12 steps, no guidance: the in-process run's sampler (server.benchmarks.in_process).
    # Without it the requests would get the model's default for the task (the demo's is the
    # autoregressive sampler with guidance), another workload than the one compared with.
    maskgit = sampler_fields(SamplerOptions())

    def bench(url: str, fields=maskgit, **kw) -> dict:
        return asyncio.run(run_bench(url, task_mix={"class_conditional": 1.0}, size="32x32", seed=0, wait="prefer",
                                     fields=fields, roofline=True, model_repository=repo, **kw))

    out: dict = {}
    for batching in (True, False):
        with live_server(repo, port, batching) as url:
            bench(url, mode="closed", concurrency=concurrency, num_requests=8)  # warm-up
            out["batching_on" if batching else "batching_off"] = bench(url, mode="closed", concurrency=concurrency,
                                                                       num_requests=requests)
            if batching:
                # The in-process run right after the HTTP one it is compared with: on a VM whose
                # speed drifts by tens of percent within minutes, runs far apart compare the hours.
                from server.benchmarks import in_process

                out["in_process_clips_per_second"] = asyncio.run(in_process(repo, requests, concurrency))
            print(json.dumps({k: out[k]["videos_per_second"] for k in out}), flush=True)
    peak = out["batching_on"]["videos_per_second"]
    with live_server(repo, port, True) as url:
        out["single"] = bench(url, mode="closed", concurrency=1, num_requests=8)
        out["half_peak"] = bench(url, mode="open", rate=peak / 2, num_requests=requests)
        # The autoregressive sampler (temperature 1, no guidance) at the same concurrency, against its own roofline.
        out["autoregressive"] = bench(url, sampler_fields(SamplerOptions(method="autoregressive")), mode="closed",
                                      concurrency=concurrency, num_requests=requests)
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
    for name, run in (("MaskGIT, batching on", on), ("autoregressive", out.get("autoregressive"))):
        roof = (run or {}).get("roofline") or {}
        if "share_of_peak" in roof:
            if name == "autoregressive":
                rows.append(f"| autoregressive (T 1, no guidance), closed loop c={concurrency} (videos/s) | "
                            f"{run['videos_per_second']:.2f} |")
            rows.append(f"| {name}: GFLOP per clip, achieved GFLOP/s, share of the measured peak "
                        f"({roof['peak_gflop_per_s']:.0f} GFLOP/s) | {roof['gflop_per_clip']:.2f}, "
                        f"{roof['achieved_gflop_per_s']:.1f}, {roof['share_of_peak']:.0%} |")
    return "\n".join(rows)
