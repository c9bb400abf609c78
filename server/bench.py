"""`kinetoscope bench`: a load tester for any deployment of the HTTP API (spec/api.md).

It speaks only HTTP (httpx, async), so it measures what a user of the deployment gets.
Each request creates a job (POST /v1/videos), waits for it to finish (polling GET
/v1/videos/{id} at the interval the server suggests, or holding the request with
`Prefer: wait=N`), and downloads the MP4.

Two load shapes:
- closed loop: `concurrency` workers, each sending its next request as soon as its last one
  finished. The offered load adapts to the server, so this measures the throughput that a
  fixed number of busy clients gets.
- open loop: requests arrive as a Poisson process at `rate` per second (exponential gaps from
  a seeded RNG) whether or not earlier ones finished, as independent users do. Past the
  server's capacity the queue, and with it the latency, grows without bound.

What the report means:
- latency: from sending the POST to having the whole MP4; successful requests only. With
  `wait="poll"` it includes up to one poll interval of waiting after the job finished.
- queue and compute time: the server's own clock, `started_at - created_at` and
  `completed_at - started_at` of the job object.
- videos_per_second: completed videos over the wall time from the first request to the last
  finish (in-flight requests are drained after the duration ends, and count).
- mean batch size per engine: the change in sum over the change in count of the Prometheus
  histogram `kinetoscope_batch_size{engine=...}` between a scrape of /metrics before and after;
  null when the deployment exposes no such histogram.
- errors: counted by `"<HTTP status>/<error code>"` for refused requests (e.g. `429/queue_full`),
  `"failed/<code>"` or `"canceled/..."` for jobs that ended without a video, `"timeout/request"`
  for requests past `request_timeout_s`, `"transport/<exception>"` for network errors, and
  `"bad_response/<exception>"` for a success status whose body is not a job object.

Setting up (not measured): one GET /v1/models to learn the number of classes, and, when the
mix holds a task that needs an input video and none is given, one class_conditional job whose
MP4 becomes the base64 `input_video` of every conditional request.
"""
from __future__ import annotations

import asyncio
import base64
import json
import math
import re
import time
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal, Mapping, Sequence

import httpx
import numpy as np

from server.tasks import ALL_TASKS, CLASS_TASKS, SPATIAL_TASKS

Mode = Literal["closed", "open"]
WaitStrategy = Literal["poll", "prefer"]

BATCH_HISTOGRAM = "kinetoscope_batch_size"
DEFAULT_REQUESTS = 20  # bench_command's run length when neither a duration nor a count is given
DEFAULT_POLL_S = 1.0  # when the server suggests no poll interval
MIN_POLL_S = 0.05  # never poll faster than this, whatever the server says (Retry-After: 0)
TERMINAL = ("completed", "failed", "canceled")


class BenchError(ValueError):
    """Arguments the load tester cannot run with, or a deployment it cannot set up against."""


# --- pure parts ----------------------------------------------------------------------------------

def parse_task_mix(text: str) -> dict[str, float]:
    """"class_conditional=0.5,frame_prediction=0.5" -> normalized weights. A bare name weighs 1."""
    weights: dict[str, float] = {}
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        name, has_value, value = (s.strip() for s in part.partition("="))
        if name in weights:
            raise BenchError(f"task {name!r} appears twice in the task mix {text!r}")
        try:
            weights[name] = float(value) if has_value else 1.0
        except ValueError:
            raise BenchError(f"the weight of {name!r} must be a number; got {value!r}") from None
    return validate_task_mix(weights)


def validate_task_mix(mix: Mapping[str, float]) -> dict[str, float]:
    """Check names and weights and scale the weights to sum to 1; zero weights are dropped."""
    if not mix:
        raise BenchError("the task mix is empty; give e.g. 'class_conditional=1'")
    unknown = [name for name in mix if name not in ALL_TASKS]
    if unknown:
        raise BenchError(f"unknown task(s) {unknown} in the task mix; known tasks: {', '.join(ALL_TASKS)}")
    bad = {name: w for name, w in mix.items() if not (math.isfinite(w) and w >= 0)}
    if bad:
        raise BenchError(f"task weights must be finite and >= 0; got {bad}")
    total = sum(mix.values())
    if total <= 0:
        raise BenchError("the task mix weights sum to 0; give at least one task a positive weight")
    return {name: w / total for name, w in mix.items() if w > 0}


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


def header_seconds(headers: Mapping[str, str], name: str) -> float | None:
    """A header's value in seconds (fractions allowed); None if absent or an HTTP date."""
    try:
        return float(headers[name])
    except (KeyError, ValueError):
        return None


def poll_interval(headers: Mapping[str, str]) -> float:
    """The poll interval a response suggests: X-Poll-Interval, else Retry-After, else
    DEFAULT_POLL_S; never below MIN_POLL_S."""
    for name in ("x-poll-interval", "retry-after"):
        seconds = header_seconds(headers, name)
        if seconds is not None:
            return max(seconds, MIN_POLL_S)
    return DEFAULT_POLL_S


# --- HTTP ----------------------------------------------------------------------------------------

class _Refused(Exception):
    """An HTTP error answer from the API, reduced to what the report counts."""

    def __init__(self, response: httpx.Response):
        try:
            code = response.json()["error"]["code"]
        except (ValueError, KeyError, TypeError):
            code = "unknown"
        super().__init__(f"{response.status_code}/{code}")
        self.key = f"{response.status_code}/{code}"
        retry_after = header_seconds(response.headers, "retry-after")
        self.retry_after_s = None if retry_after is None else max(retry_after, MIN_POLL_S)


class _Session:
    """One run's connection to the API, its request settings and its set-up results."""

    def __init__(self, client: httpx.AsyncClient, *, size: str | None, num_frames: int | None, seed: int,
                 wait: WaitStrategy, prefer_wait_s: float, request_timeout_s: float):
        self.client = client
        self.size, self.num_frames, self.seed = size, num_frames, seed
        self.wait, self.prefer_wait_s, self.request_timeout_s = wait, prefer_wait_s, request_timeout_s
        self.num_classes = 1
        self.input_video_b64: str | None = None

    def body(self, task: str, index: int) -> dict[str, Any]:
        """The JSON of request `index`: its own seed, a class label cycling through the classes."""
        body: dict[str, Any] = {"task": task, "seed": self.seed + index}
        if self.size is not None:
            body["size"] = self.size
        if self.num_frames is not None:
            body["num_frames"] = self.num_frames
        if task in CLASS_TASKS:
            body["class_label"] = index % self.num_classes
        if task != "class_conditional":
            body["input_video"] = self.input_video_b64
        if task in SPATIAL_TASKS:
            body["mask"] = {"preset": "center"}
        return body

    def _prefer(self) -> dict[str, str]:
        return {"Prefer": f"wait={self.prefer_wait_s:g}"} if self.wait == "prefer" else {}

    async def create_and_wait(self, body: dict[str, Any]) -> dict[str, Any]:
        """POST the job, then wait for a terminal status; returns the last job object."""
        response = await self.client.post("/v1/videos", json=body, headers=self._prefer())
        if response.status_code not in (200, 201, 202):
            raise _Refused(response)
        job = response.json()
        while job["status"] not in TERMINAL:
            if self.wait == "prefer":
                asked = time.monotonic()
                response = await self.client.get(f"/v1/videos/{job['id']}", headers=self._prefer())
                # A server that held the GET says so (Preference-Applied) or took its time; one that
                # answers at once does not hold GETs: then wait its poll interval before asking again.
                held = "preference-applied" in response.headers or time.monotonic() - asked >= 0.5 * self.prefer_wait_s
                if not held and response.is_success and response.json()["status"] not in TERMINAL:
                    await asyncio.sleep(poll_interval(response.headers))
            else:
                await asyncio.sleep(poll_interval(response.headers))
                response = await self.client.get(f"/v1/videos/{job['id']}")
            if not response.is_success:
                raise _Refused(response)
            job = response.json()
        return job

    async def download(self, job_id: str) -> bytes:
        response = await self.client.get(f"/v1/videos/{job_id}/content")
        if not response.is_success:
            raise _Refused(response)
        return response.content

    async def request(self, index: int, task: str, start: float) -> RequestRecord:
        """One measured request, never raising: every outcome ends up in the record."""
        sent = time.monotonic()
        record = RequestRecord(index=index, task=task, sent_at=sent - start)
        try:
            job, content = await asyncio.wait_for(self._create_wait_download(task, index), self.request_timeout_s)
        except _Refused as e:
            record.error, record.retry_after_s = e.key, e.retry_after_s
            return record
        except asyncio.TimeoutError:
            record.error = "timeout/request"
            return record
        except httpx.HTTPError as e:
            record.error = f"transport/{type(e).__name__}"
            return record
        except (ValueError, KeyError, TypeError) as e:  # a 2xx answer that is not a job object
            record.error = f"bad_response/{type(e).__name__}"
            return record
        record.job_id = job.get("id")
        record.queue_s = _difference(job.get("started_at"), job.get("created_at"))
        record.compute_s = _difference(job.get("completed_at"), job.get("started_at"))
        if content is None:
            code = (job.get("error") or {}).get("code", "unknown")
            record.error = f"{job['status']}/{code}"
            return record
        record.ok, record.latency_s, record.content_bytes = True, time.monotonic() - sent, len(content)
        return record

    async def _create_wait_download(self, task: str, index: int) -> tuple[dict[str, Any], bytes | None]:
        job = await self.create_and_wait(self.body(task, index))
        return job, (await self.download(job["id"]) if job["status"] == "completed" else None)

    async def discover_num_classes(self) -> None:
        """Class labels cycle through the default model's classes when GET /v1/models lists them.

        This is also the first contact: an unreachable URL fails here, not N times in the report.
        """
        try:
            response = await self.client.get("/v1/models")
        except httpx.TransportError as e:
            raise BenchError(f"cannot reach {self.client.base_url}: {type(e).__name__}: {e}") from None
        try:
            models = response.json()
            models = models.get("data", []) if isinstance(models, dict) else models
            for key in ("class_names", "classes"):
                if isinstance(models[0].get(key), list) and models[0][key]:
                    self.num_classes = len(models[0][key])
                    return
        except (ValueError, KeyError, IndexError, AttributeError, TypeError):
            pass  # no usable model list: every class-conditional request uses label 0

    async def make_input_video(self) -> None:
        """Generate the conditional tasks' input: one class_conditional video from the server."""
        try:
            job = await self.create_and_wait(self.body("class_conditional", 0))
            if job["status"] != "completed":
                raise BenchError(f"the job making the input video ended {job['status']}: {job.get('error')}")
            self.input_video_b64 = base64.b64encode(await self.download(job["id"])).decode("ascii")
        except (_Refused, httpx.HTTPError, ValueError, KeyError, TypeError) as e:
            raise BenchError(f"could not make an input video with a class_conditional job: {e}") from None

    async def scrape_batch_histogram(self) -> dict[str, tuple[float, float]] | None:
        try:
            response = await self.client.get("/metrics")
            return histogram_totals(response.text) if response.is_success else None
        except (httpx.HTTPError, ValueError):
            return None


def _difference(later: float | None, earlier: float | None) -> float | None:
    return later - earlier if later is not None and earlier is not None else None


class _TaskDraw:
    """Request indices and their tasks, drawn from the mix by a seeded RNG in request order."""

    def __init__(self, mix: Mapping[str, float], seed: int):
        self.names, self.weights = list(mix), np.asarray(list(mix.values()), dtype=np.float64)
        self.rng = np.random.default_rng([seed, 1])  # a stream apart from the arrivals'
        self.drawn = 0

    def next(self) -> tuple[int, str]:
        index, self.drawn = self.drawn, self.drawn + 1
        return index, self.names[int(self.rng.choice(len(self.names), p=self.weights))]


async def _closed_loop(session: _Session, tasks: _TaskDraw, concurrency: int, num_requests: int | None,
                       duration_s: float | None, start: float) -> list[RequestRecord]:
    records: list[RequestRecord] = []

    async def worker() -> None:
        while (num_requests is None or tasks.drawn < num_requests) and (
            duration_s is None or time.monotonic() - start < duration_s
        ):
            index, task = tasks.next()
            record = await session.request(index, task, start)
            records.append(record)
            if record.retry_after_s:  # refused (e.g. 429): wait as told before the next request
                await asyncio.sleep(record.retry_after_s)

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return records


async def _open_loop(session: _Session, tasks: _TaskDraw, rate: float, num_requests: int | None,
                     duration_s: float | None, seed: int, start: float) -> list[RequestRecord]:
    in_flight = []
    for arrival in poisson_arrivals(rate, seed=seed, duration_s=duration_s, count=num_requests):
        delay = start + arrival - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        index, task = tasks.next()
        in_flight.append(asyncio.create_task(session.request(index, task, start)))
    return list(await asyncio.gather(*in_flight))


async def run_bench(
    base_url: str,
    *,
    mode: Mode = "closed",
    concurrency: int = 4,
    rate: float = 1.0,
    duration_s: float | None = None,
    num_requests: int | None = None,
    task_mix: Mapping[str, float] | None = None,
    size: str | None = None,
    num_frames: int | None = None,
    seed: int = 0,
    api_key: str | None = None,
    wait: WaitStrategy = "prefer",
    input_video: str | Path | None = None,
    prefer_wait_s: float = 30.0,
    request_timeout_s: float = 600.0,
) -> dict[str, Any]:
    """Load `base_url` and return the report (see the module docstring), per-request records included.

    Closed loop uses `concurrency`; open loop uses `rate`. The run stops issuing requests at
    `duration_s` or after `num_requests`, whichever comes first, then waits for those in flight.
    `input_video` is a file whose bytes become the conditional tasks' input instead of a generated one.
    """
    mix = validate_task_mix(task_mix or {"class_conditional": 1.0})
    _check_arguments(mode, concurrency, rate, duration_s, num_requests, size, num_frames, wait, prefer_wait_s)
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    timeout = httpx.Timeout(30.0, read=prefer_wait_s + 30.0)
    # Open loop must not queue requests in the client's pool: that would hide the server's queue.
    limits = httpx.Limits(max_connections=concurrency if mode == "closed" else None, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=base_url, headers=headers, timeout=timeout, limits=limits) as client:
        session = _Session(client, size=size, num_frames=num_frames, seed=seed, wait=wait,
                           prefer_wait_s=prefer_wait_s, request_timeout_s=request_timeout_s)
        await session.discover_num_classes()
        if any(task != "class_conditional" for task in mix):
            if input_video is not None:
                session.input_video_b64 = base64.b64encode(Path(input_video).read_bytes()).decode("ascii")
            else:
                await session.make_input_video()
        before = await session.scrape_batch_histogram()
        tasks, start = _TaskDraw(mix, seed), time.monotonic()
        if mode == "closed":
            records = await _closed_loop(session, tasks, concurrency, num_requests, duration_s, start)
        else:
            records = await _open_loop(session, tasks, rate, num_requests, duration_s, seed, start)
        wall_s = time.monotonic() - start
        after = await session.scrape_batch_histogram()
    records.sort(key=lambda r: r.index)
    return {
        "config": {
            "url": base_url, "mode": mode, "concurrency": concurrency if mode == "closed" else None,
            "rate": rate if mode == "open" else None, "duration_s": duration_s, "num_requests": num_requests,
            "task_mix": mix, "size": size, "num_frames": num_frames, "seed": seed, "wait": wait,
        },
        **summarize(records, wall_s),
        "mean_batch_size": mean_batch_sizes(before, after),
        "records": [asdict(r) for r in records],
    }


def _check_arguments(mode, concurrency, rate, duration_s, num_requests, size, num_frames, wait, prefer_wait_s) -> None:
    if mode not in ("closed", "open"):
        raise BenchError(f"mode must be 'closed' or 'open'; got {mode!r}")
    if mode == "closed" and concurrency < 1:
        raise BenchError(f"closed-loop concurrency must be at least 1; got {concurrency}")
    if mode == "open" and not rate > 0:
        raise BenchError(f"open-loop rate must be positive; got {rate}")
    if duration_s is None and num_requests is None:
        raise BenchError("give a duration, a request count, or both")
    if duration_s is not None and not duration_s > 0:
        raise BenchError(f"the duration must be positive; got {duration_s}")
    if num_requests is not None and num_requests < 1:
        raise BenchError(f"the request count must be at least 1; got {num_requests}")
    if size is not None and not re.fullmatch(r"\d+x\d+", size):
        raise BenchError(f"size is 'WxH', e.g. '32x32'; got {size!r}")
    if num_frames is not None and num_frames < 1:
        raise BenchError(f"the frame count must be at least 1; got {num_frames}")
    if wait not in ("poll", "prefer"):
        raise BenchError(f"wait must be 'poll' or 'prefer'; got {wait!r}")
    if not prefer_wait_s > 0:
        raise BenchError(f"prefer_wait_s must be positive; got {prefer_wait_s}")


# --- output --------------------------------------------------------------------------------------

def plot_report(report: Mapping[str, Any], path: str | Path) -> None:
    """A PNG of latency over time (per task; errors marked), the latency histogram, and throughput."""
    from matplotlib.figure import Figure  # no pyplot: no global backend, works headless

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
    return "\n".join(lines)


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
        wait=wait, input_video=input_video,
    ))
    if output_json is not None:
        Path(output_json).write_text(json.dumps(report, indent=2) + "\n")
    if output_png is not None:
        plot_report(report, output_png)
    return report
