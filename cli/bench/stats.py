"""The pure figures: percentiles, Poisson arrivals, per-request records and their summary, and
mean batch sizes from the Prometheus batch-size histogram."""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from cli.bench.options import BenchError

BATCH_HISTOGRAM = "kinetoscope_batch_size"


def percentile(values: Sequence[float], q: float) -> float | None:
    """The q-th percentile (0..100, linear interpolation between order statistics); None if empty."""
    if not 0 <= q <= 100:
        raise ValueError(f"q must lie in [0, 100]; got {q}")
    return float(np.percentile(np.asarray(values, dtype=np.float64), q)) if len(values) else None


def poisson_arrivals(rate: float, *, seed: int, duration_s: float | None = None, count: int | None = None) -> list[float]:
    """Arrival times (seconds from the start) of a Poisson process of `rate` per second.

    Gaps are exponential with mean 1/rate, drawn from a RNG seeded with `seed`, so a run can be
    repeated. Stops at `duration_s` or after `count` arrivals, whichever comes first.
    """
    if not rate > 0:
        raise BenchError(f"the arrival rate must be positive; got {rate}")
    if duration_s is None and count is None:
        raise BenchError("give a duration, a request count, or both")
    rng = np.random.default_rng(seed)
    arrivals: list[float] = []
    t = 0.0
    while count is None or len(arrivals) < count:
        t += float(rng.exponential(1.0 / rate))
        if duration_s is not None and t > duration_s:
            break
        arrivals.append(t)
    return arrivals


def histogram_totals(metrics_text: str, name: str = BATCH_HISTOGRAM, label: str = "engine") -> dict[str, tuple[float, float]]:
    """{label value: (sum, count)} of a Prometheus histogram in text exposition format.

    Series that differ in other labels are added up. Empty when the histogram is absent (a
    labelled histogram shows no series until its first observation).
    """
    from prometheus_client.parser import text_string_to_metric_families

    totals: dict[str, list[float]] = {}
    # Match on sample names, not the family: without a "# TYPE" line the parser makes each of
    # _sum and _count a family of its own.
    for family in text_string_to_metric_families(metrics_text):
        for sample in family.samples:
            if sample.name in (f"{name}_sum", f"{name}_count"):
                entry = totals.setdefault(sample.labels.get(label, ""), [0.0, 0.0])
                entry[1 if sample.name.endswith("_count") else 0] += float(sample.value)
    return {key: (s, c) for key, (s, c) in totals.items()}


def mean_batch_sizes(
    before: Mapping[str, tuple[float, float]] | None, after: Mapping[str, tuple[float, float]] | None
) -> dict[str, float | None] | None:
    """Mean batch size per engine over a run, from histogram totals before and after it.

    None when the histogram could not be read after the run; an engine that ran no batch in
    between gets None. A missing `before` (or engine) counts as zero: the series did not exist yet.
    """
    if not after:
        return None
    before = before or {}
    means: dict[str, float | None] = {}
    for engine, (total, count) in sorted(after.items()):
        prev_total, prev_count = before.get(engine, (0.0, 0.0))
        batches = count - prev_count
        means[engine] = (total - prev_total) / batches if batches > 0 else None
    return means


def mean_predict_batch(records: Sequence["RequestRecord"]) -> dict[str, float] | None:
    """A peer's mean batch: requests per predict call over the calls that served this run's
    requests (each call counted once, by its id), as {"predict": mean}; None without batch ids."""
    sizes = {r.batch_id: r.batch_size for r in records if r.batch_id is not None and r.batch_size is not None}
    return {"predict": float(np.mean(list(sizes.values())))} if sizes else None


@dataclass
class RequestRecord:
    """What happened to one request. Times are seconds; `sent_at` counts from the run's start."""

    index: int
    task: str
    sent_at: float
    latency_s: float | None = None  # POST sent -> MP4 downloaded; None unless ok
    ok: bool = False
    error: str | None = None  # "429/queue_full", "failed/<code>", "timeout/request", "transport/<exc>"
    job_id: str | None = None
    queue_s: float | None = None
    compute_s: float | None = None
    content_bytes: int | None = None
    retry_after_s: float | None = None  # a refused request's Retry-After; closed-loop workers honour it
    steps: int | None = None  # the MaskGIT steps asked for (None: the server's default sampler)
    batch_size: int | None = None  # a peer's: requests in the predict call that served it
    batch_id: int | None = None  # a peer's: that call's sequence number


def summarize(records: Sequence[RequestRecord], wall_s: float) -> dict[str, Any]:
    """The report's figures over a run's records (latency and times over successful requests)."""
    ok = [r for r in records if r.ok]
    latencies = [r.latency_s for r in ok]
    queue = [r.queue_s for r in ok if r.queue_s is not None]
    compute = [r.compute_s for r in ok if r.compute_s is not None]
    errors = Counter(r.error for r in records if not r.ok)
    per_task = {}
    for task in sorted({r.task for r in records}):
        mine = [r for r in records if r.task == task]
        done = [r.latency_s for r in mine if r.ok]
        per_task[task] = {"requests": len(mine), "completed": len(done), "latency_p50_s": percentile(done, 50)}
    return {
        "requests": len(records),
        "completed": len(ok),
        "errors": len(records) - len(ok),
        "error_counts": dict(sorted(errors.items())),
        "wall_s": wall_s,
        "videos_per_second": len(ok) / wall_s if wall_s > 0 else None,
        "latency_s": {
            "p50": percentile(latencies, 50),
            "p90": percentile(latencies, 90),
            "p99": percentile(latencies, 99),
            "mean": float(np.mean(latencies)) if latencies else None,
            "max": max(latencies) if latencies else None,
        },
        "mean_queue_s": float(np.mean(queue)) if queue else None,
        "mean_compute_s": float(np.mean(compute)) if compute else None,
        "per_task": per_task,
    }
