"""Every Prometheus metric of the server, defined once so the API, workers and runtime share them.

They live in their own registry (not prometheus_client's global one) so that nothing else a
process imports can collide with them; the API serves this registry at GET /metrics.

Who feeds what:
- API: `kinetoscope_requests_total{task,status}` (POST /v1/videos by task and HTTP status),
  `kinetoscope_http_requests_total` / `kinetoscope_http_request_seconds` (every request).
- scrape time (`refresh_from_queue`): `kinetoscope_queue_depth{priority}` from `queue.depth()`, and
  `kinetoscope_jobs_{reclaimed,retried,dead,expired}_total` from `queue.counters()`. Those totals come
  from the job store, so with Redis they count every worker process (each API replica reports
  the same store-wide figure: take max, not sum, across replicas).
- worker (`instrument_generate` around the runtime's generate, `on_worker_event` as run_worker's
  on_event): `kinetoscope_queue_seconds`, `kinetoscope_compute_seconds{task}`,
  `kinetoscope_worker_events_total{event}`. These are per process: a standalone worker process
  exposes them only if it serves this registry itself.
- runtime: `kinetoscope_batch_size{engine}` (per network call) and `kinetoscope_encode_seconds`.
"""
from __future__ import annotations

import functools
import logging
import time
from typing import Any, Awaitable, Callable, Iterator, Mapping

from prometheus_client import (CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram,
                               ProcessCollector, generate_latest)
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

logger = logging.getLogger("kinetoscope.metrics")

REGISTRY = CollectorRegistry()
ProcessCollector(registry=REGISTRY)

# Seconds-scale buckets for generation work: from a tiny clip on a GPU to long CPU jobs.
_JOB_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800)

requests_total = Counter(
    "kinetoscope_requests", "POST /v1/videos requests by task and HTTP status",
    ["task", "status"], registry=REGISTRY)
http_requests_total = Counter(
    "kinetoscope_http_requests", "HTTP requests by method, route template and status",
    ["method", "route", "status"], registry=REGISTRY)
http_request_seconds = Histogram(
    "kinetoscope_http_request_seconds", "HTTP request latency (until the response starts)",
    ["method", "route"], registry=REGISTRY)
webhook_deliveries_total = Counter(
    "kinetoscope_webhook_deliveries", "Webhook delivery attempts by outcome (delivered, retried, failed: given up)",
    ["outcome"], registry=REGISTRY)
queue_depth = Gauge(
    "kinetoscope_queue_depth", "Queued jobs per priority (read from the queue at each scrape)",
    ["priority"], registry=REGISTRY)
batch_size = Histogram(
    "kinetoscope_batch_size", "Requests per network call, by engine",
    ["engine"], buckets=(1, 2, 4, 8, 16, 32, 64), registry=REGISTRY)
queue_seconds = Histogram(
    "kinetoscope_queue_seconds", "Time from a job's creation to the start of its attempt",
    buckets=_JOB_BUCKETS, registry=REGISTRY)
compute_seconds = Histogram(
    "kinetoscope_compute_seconds", "Time one attempt of a job spends generating, by task",
    ["task"], buckets=_JOB_BUCKETS, registry=REGISTRY)
encode_seconds = Histogram(
    "kinetoscope_encode_seconds", "Time to encode one job's MP4 and thumbnail",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10), registry=REGISTRY)
truncated_jobs_total = Counter(
    "kinetoscope_truncated_jobs", "Jobs completed with a best-so-far video because their deadline passed",
    registry=REGISTRY)
worker_events_total = Counter(
    "kinetoscope_worker_events", "Worker life-cycle events in this process (job_started, job_completed...)",
    ["event"], registry=REGISTRY)


class _StoreCounters(Collector):
    """The job store's own totals, as Prometheus counters. They are kept by the store (shared by
    every process), so they are copied in at scrape time rather than incremented here."""

    NAMES = {"reclaimed": "Jobs taken back from a worker that stopped heartbeating",
             "retried": "Failed job attempts put back on the queue",
             "dead": "Jobs that failed for good after the retry limit",
             "expired": "Jobs whose deadline passed while they were queued (they ended expired, never ran)"}

    def __init__(self) -> None:
        self.values: dict[str, int] = {name: 0 for name in self.NAMES}

    def collect(self) -> Iterator[CounterMetricFamily]:
        for name, doc in self.NAMES.items():
            yield CounterMetricFamily(f"kinetoscope_jobs_{name}", doc, value=self.values.get(name, 0))


store_counters = _StoreCounters()
REGISTRY.register(store_counters)


async def refresh_from_queue(queue: Any) -> None:
    """Reads the queue's depth and totals into the registry (called by GET /metrics)."""
    depth: Mapping[str, int] = await queue.depth()
    for priority, n in depth.items():
        queue_depth.labels(priority=priority).set(n)
    counters = getattr(queue, "counters", None)
    if counters is not None:
        store_counters.values.update(await counters())


def render() -> tuple[bytes, str]:
    """The registry in Prometheus text format, with its content type."""
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST


def on_worker_event(name: str) -> None:
    """run_worker's `on_event`: counts its life-cycle events. Never raises (a metrics bug must not
    fail a job)."""
    try:
        worker_events_total.labels(event=name).inc()
    except Exception:  # noqa: BLE001 - see docstring
        logger.exception("metrics: could not record worker event %r", name)


Generate = Callable[..., Awaitable[Any]]


def instrument_generate(generate: Generate) -> Generate:
    """Wraps the runtime's `generate(job, ...)`: observes the job's wait in the queue when an
    attempt starts, and the attempt's generation time by task when it ends (however it ends)."""

    @functools.wraps(generate)
    async def timed(job: Any, *args: Any, **kwargs: Any) -> Any:
        if job.started_at is not None:
            queue_seconds.observe(max(0.0, job.started_at - job.created_at))
        started = time.perf_counter()
        try:
            return await generate(job, *args, **kwargs)
        finally:
            compute_seconds.labels(task=job.task).observe(time.perf_counter() - started)

    return timed
