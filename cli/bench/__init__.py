"""`kinetoscope bench`: a load tester for any deployment of the HTTP API (spec/api.md).

It is a client of the Python SDK (`kinetoscope_client.AsyncClient`, clients/python), so it
measures what a user of the deployment gets, through the client users run. Each request creates
a job (POST /v1/videos), waits for it to finish (polling GET /v1/videos/{id} at the interval the
server suggests, or holding the requests with `Prefer: wait=N`), and downloads the MP4. It lives
in cli/, not server/: the server never imports the SDK.

Two load shapes:
- closed loop: `concurrency` workers, each sending its next request as soon as its last one
  finished. The offered load adapts to the server, so this measures the throughput that a
  fixed number of busy clients gets.
- open loop: requests arrive as a Poisson process at `rate` per second (exponential gaps from
  a seeded RNG) whether or not earlier ones finished, as independent users do. Past the
  server's capacity the queue, and with it the latency, grows without bound.

What the report means:
- latency: from sending the POST to having the whole MP4; successful requests only. With
  `wait="poll"` it includes up to one poll interval of waiting after the job finished (the
  server's X-Poll-Interval, at least the SDK's 0.1 s).
- queue and compute time: the server's own clock, `started_at - created_at` and
  `completed_at - started_at` of the job object.
- videos_per_second: completed videos over the wall time from the first request to the last
  finish (in-flight requests are drained after the duration ends, and count).
- mean batch size per engine: the change in sum over the change in count of the Prometheus
  histogram `kinetoscope_batch_size{engine=...}` between a scrape of /metrics before and after;
  null when the deployment exposes no such histogram.
- errors: counted by `"<HTTP status>/<error code>"` for refused requests (e.g. `429/queue_full`),
  `"failed/<code>"` or `"canceled/..."` for jobs that ended without a video, `"timeout/request"`
  for requests past `request_timeout_s`, `"transport/<exception>"` for network errors (httpx's
  exception, which the SDK wraps), and `"bad_response/<exception>"` for a success status whose
  body is not a job object. Nothing is retried (the SDK runs with max_retries=0).

Targets (`target`, `--target`): "kinetoscope" is the job API above; "litserve" and "fastapi" are
the peers of cli/bench/peers/ (the same model repository behind LitServe's request-level batching,
and behind a one-request-at-a-time FastAPI endpoint), which answer the same create body with the
video itself. For a peer, the queue and compute split and the batch come from its response
headers, and "mean batch size" is {"predict": requests per predict call}. `steps` (`--steps
4,8,12`) gives every request the MaskGIT sampler at a step count drawn per request (the same
counts for the same requests on every target).

Setting up (not measured): one GET /v1/models to learn the number of classes, and, when the
mix holds a task that needs an input video and none is given, one class_conditional job whose
MP4 becomes the base64 `input_video` of every conditional request.
"""
from __future__ import annotations

from cli.bench.client import SDK_MISSING, _TaskDraw, run_bench
from cli.bench.command import bench_command
from cli.bench.options import TARGETS, BenchError, parse_steps, parse_task_mix
from cli.bench.report import format_summary
from cli.bench.stats import (RequestRecord, histogram_totals, mean_batch_sizes, mean_predict_batch, percentile,
                             poisson_arrivals, summarize)

__all__ = [
    "SDK_MISSING",
    "TARGETS",
    "BenchError",
    "RequestRecord",
    "bench_command",
    "format_summary",
    "histogram_totals",
    "mean_batch_sizes",
    "mean_predict_batch",
    "parse_steps",
    "parse_task_mix",
    "percentile",
    "poisson_arrivals",
    "run_bench",
    "summarize",
]
