"""The HTTP side, through the Python SDK's AsyncClient (`kinetoscope_client`, clients/python):
creating jobs, waiting for them (`Prefer: wait` or polling as the server suggests), downloading,
the closed and open loops, and run_bench.

The SDK runs with `max_retries=0`: a refused request (429) is a measurement, not something to
retry. Input videos go as base64 JSON (`upload_encoding="json"`), the body the bench has always
sent. The SDK has no call for the Prometheus text at /metrics, so that one is a plain GET on the
httpx client the SDK sends through.
"""
from __future__ import annotations

import asyncio
import math
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, Mapping

import httpx
import numpy as np

from cli.bench.roofline import RequestWork, find_repository, matmul_peak, roofline_report
from cli.bench.options import (BenchError, Mode, Target, WaitStrategy, _check_arguments, check_target, validate_steps,
                               validate_task_mix)
from cli.bench.stats import (RequestRecord, histogram_totals, mean_batch_sizes, mean_predict_batch, poisson_arrivals,
                             summarize)
from server.tasks import CLASS_TASKS, SPATIAL_TASKS

try:
    import kinetoscope_client as sdk
except ImportError:  # the command line still starts; run_bench says how to install it
    sdk = None

SDK_MISSING = "kinetoscope bench talks to the API through the Python SDK, which is not installed: pip install -e clients/python"
MIN_RETRY_S = 0.05  # a refused worker never retries faster than this, whatever Retry-After says


def header_seconds(headers: Mapping[str, str], name: str) -> float | None:
    """A header's value in seconds (fractions allowed); None if absent or an HTTP date."""
    try:
        return float(headers[name])
    except (KeyError, ValueError):
        return None


def error_key(error: Exception) -> str:
    """What the report counts an SDK error as: "<HTTP status>/<error code>" for a refusal,
    "<status>/<code>" of the job for one that ended without a video, "transport/<exception>"
    (httpx's, as the SDK wraps it) for no answer."""
    if isinstance(error, sdk.APIStatusError):
        return f"{error.status_code}/{error.code or 'unknown'}"
    if isinstance(error, sdk.JobFailedError):
        return f"{error.job.status}/{error.code or 'unknown'}"
    if isinstance(error, sdk.APIConnectionError):
        return f"transport/{type(error.__cause__ or error).__name__}"
    return f"bad_response/{type(error).__name__}"


class _Session:
    """One run's SDK client, its request settings and its set-up results."""

    def __init__(self, client: "sdk.AsyncClient", http: httpx.AsyncClient, *, size: str | None, num_frames: int | None,
                 seed: int, wait: WaitStrategy, prefer_wait_s: float, request_timeout_s: float,
                 api_key: str | None = None, steps: list[int] | None = None, fields: Mapping[str, Any] | None = None):
        self.client, self.http = client, http
        self.steps = steps
        self._drawn_steps: dict[int, int] = {}  # request index -> its step count, drawn once
        self.fields = dict(fields or {})
        self.metrics_headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.size, self.num_frames, self.seed = size, num_frames, seed
        self.wait, self.prefer_wait_s, self.request_timeout_s = wait, prefer_wait_s, request_timeout_s
        self.num_classes = 1
        self.model_id: str | None = None  # the served (default) model, where the server says
        self.input_video: bytes | None = None

    def steps_for(self, index: int) -> int | None:
        """Request `index`'s MaskGIT step count, drawn from `steps` by its own seeded RNG (so every
        target gets the same counts for the same requests), once per request however often it is
        asked (the body, the record, the roofline); None without `steps`."""
        if not self.steps:
            return None
        if index not in self._drawn_steps:
            draw = np.random.default_rng([self.seed, 2, index]).integers(len(self.steps))
            self._drawn_steps[index] = int(self.steps[int(draw)])
        return self._drawn_steps[index]

    def body(self, task: str, index: int) -> dict[str, Any]:
        """The fields of request `index`: its own seed, a class label cycling through the classes,
        and with `steps` the MaskGIT sampler at its drawn step count; `fields` (the run's extra
        create-body fields, e.g. a sampler or an output_format) under them."""
        body: dict[str, Any] = {**self.fields, "task": task, "seed": self.seed + index}
        steps = self.steps_for(index)
        if steps is not None:
            body["sampler"] = {**body.get("sampler", {}), "method": "maskgit", "steps": steps}
        if self.size is not None:
            body["size"] = self.size
        if self.num_frames is not None:
            body["num_frames"] = self.num_frames
        if task in CLASS_TASKS:
            body["class_label"] = index % self.num_classes
        if task != "class_conditional":
            body["input_video"] = self.input_video
        if task in SPATIAL_TASKS:
            body["mask"] = {"preset": "center"}
        return body

    async def create_and_wait(self, body: dict[str, Any]) -> "sdk.Video":
        """POST the job (held with `Prefer: wait` in prefer mode), then wait for it to finish;
        returns the completed job. A job that ended otherwise raises the SDK's JobFailedError."""
        wait = self.prefer_wait_s if self.wait == "prefer" else None
        return await self.client.videos.create_and_poll(**body, wait=wait)

    async def download(self, job_id: str) -> bytes:
        return await self.client.videos.download_content(job_id)

    async def request(self, index: int, task: str, start: float) -> RequestRecord:
        """One measured request, never raising: every outcome ends up in the record."""
        sent = time.monotonic()
        record = RequestRecord(index=index, task=task, sent_at=sent - start, steps=self.steps_for(index))
        try:
            content = await asyncio.wait_for(self._create_wait_download(task, index, record), self.request_timeout_s)
        except sdk.JobFailedError as e:  # the job ran (or was canceled): the server's clock still counts
            record.job_id, record.queue_s, record.compute_s = _timings(e.job)
            record.error = error_key(e)
            return record
        except sdk.APIStatusError as e:
            retry_after = header_seconds(e.response.headers, "retry-after")
            record.error = error_key(e)
            record.retry_after_s = None if retry_after is None else max(retry_after, MIN_RETRY_S)
            return record
        except asyncio.TimeoutError:
            record.error = "timeout/request"
            return record
        except sdk.APIConnectionError as e:
            record.error = error_key(e)
            return record
        except (ValueError, KeyError, TypeError) as e:  # a 2xx answer that is not a job object
            record.error = error_key(e)
            return record
        record.ok, record.latency_s, record.content_bytes = True, time.monotonic() - sent, len(content)
        return record

    async def _create_wait_download(self, task: str, index: int, record: RequestRecord) -> bytes:
        job = await self.create_and_wait(self.body(task, index))
        record.job_id, record.queue_s, record.compute_s = _timings(job)
        return await self.download(job.id)

    async def discover_num_classes(self) -> None:
        """Class labels cycle through the default model's classes when GET /v1/models lists them.

        This is also the first contact: an unreachable URL fails here, not N times in the report.
        """
        try:
            models = await self.client.models.list()
        except sdk.APIConnectionError as e:
            cause = e.__cause__ or e
            raise BenchError(f"cannot reach {self.client.base_url}: {type(cause).__name__}: {cause}") from None
        except (sdk.KinetoscopeError, ValueError):
            return  # no usable model list: every class-conditional request uses label 0
        if models:
            self.model_id = models[0].id
        if models and models[0].classes:
            self.num_classes = len(models[0].classes)

    async def make_input_video(self) -> None:
        """Generate the conditional tasks' input: one class_conditional video from the server."""
        try:
            job = await self.create_and_wait(self.body("class_conditional", 0))
            self.input_video = await self.download(job.id)
        except (sdk.KinetoscopeError, ValueError, KeyError, TypeError) as e:
            raise BenchError(f"could not make an input video with a class_conditional job: {error_key(e)} ({e})") from None

    async def scrape_batch_histogram(self) -> dict[str, tuple[float, float]] | None:
        # Plain httpx: the SDK has no call for the Prometheus text format.
        try:
            response = await self.http.get(f"{self.client.base_url}/metrics", headers=self.metrics_headers)
            return histogram_totals(response.text) if response.is_success else None
        except (httpx.HTTPError, ValueError):
            return None


def _kinetoscope_session(base_url: str, http: httpx.AsyncClient, **options) -> _Session:
    """The session of Kinetoscope's job API: the SDK's AsyncClient on the shared httpx client."""
    wait, prefer_wait_s, api_key = options["wait"], options["prefer_wait_s"], options["api_key"]
    # In prefer mode every GET of a job is held too (the SDK puts `Prefer: wait` on the POST only);
    # the server ignores the header on the other requests.
    headers = {"Prefer": f"wait={math.ceil(prefer_wait_s)}"} if wait == "prefer" else {}
    # api_key "" rather than None: the bench sends only the key it is given, never $KINETOSCOPE_API_KEY.
    client = sdk.AsyncClient(base_url, api_key or "", timeout=httpx.Timeout(30.0, read=prefer_wait_s + 30.0),
                             max_retries=0, default_headers=headers, http_client=http, upload_encoding="json")
    return _Session(client, http, **options)


def _timings(job: "sdk.Video") -> tuple[str, float | None, float | None]:
    """(id, queue seconds, compute seconds) on the server's clock: started_at - created_at and
    completed_at - started_at of the job object."""
    return job.id, _difference(job.started_at, job.created_at), _difference(job.completed_at, job.started_at)


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
    target: Target = "kinetoscope",
    steps: list[int] | None = None,
    fields: Mapping[str, Any] | None = None,
    roofline: bool = False,
    model_repository: str | Path | None = None,
) -> dict[str, Any]:
    """Load `base_url` and return the report (see the package docstring), per-request records included.

    Closed loop uses `concurrency`; open loop uses `rate`. The run stops issuing requests at
    `duration_s` or after `num_requests`, whichever comes first, then waits for those in flight.
    `input_video` is a file whose bytes become the conditional tasks' input instead of a generated one.
    `target`: "kinetoscope" (the job API, through the SDK) or a peer of cli/bench/peers/
    ("litserve", "fastapi": one POST answered with the video). `steps`: MaskGIT step counts, one
    drawn per request (the sampler is then MaskGIT for every task); None: the server's defaults.
    `fields`: create-body fields every request carries (e.g. {"sampler": {"method": "autoregressive"},
    "output_format": "gif"}); the request's own task, seed, size and inputs win over them.
    `roofline`: add the report's `roofline` (cli/bench/roofline.py): the completed requests' FLOPs,
    counted from the served model's ONNX graphs in `model_repository` (default: the local
    model_repository/<served model id>), against the wall time and this machine's matmul peak,
    measured here before the load. The peak is this machine's: the share means something when
    the server runs here, on the same backend.
    """
    mix = validate_task_mix(task_mix or {"class_conditional": 1.0})
    _check_arguments(mode, concurrency, rate, duration_s, num_requests, size, num_frames, wait, prefer_wait_s)
    check_target(target)
    steps = validate_steps(steps)
    if target == "kinetoscope" and sdk is None:
        raise BenchError(SDK_MISSING)
    # Open loop must not queue requests in the client's pool: that would hide the server's queue.
    limits = httpx.Limits(max_connections=concurrency if mode == "closed" else None, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(limits=limits) as http:
        options = dict(size=size, num_frames=num_frames, seed=seed, wait=wait, prefer_wait_s=prefer_wait_s,
                       request_timeout_s=request_timeout_s, api_key=api_key, steps=steps,
                       fields=fields)
        if target == "kinetoscope":
            session = _kinetoscope_session(base_url, http, **options)
        else:
            from cli.bench.peers.client import PeerSession

            session = PeerSession(base_url, http, **options)
        await session.discover_num_classes()
        if any(task != "class_conditional" for task in mix):
            if input_video is not None:
                session.input_video = Path(input_video).read_bytes()
            else:
                await session.make_input_video()
        work, peak, no_roofline = None, 0.0, "not asked for"
        if roofline:
            work, peak, no_roofline = _roofline_setup(session.model_id, model_repository)
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
            "target": target, "steps": steps, "fields": dict(fields or {}),
        },
        **summarize(records, wall_s),
        # Kinetoscope: rows per network call, per engine (/metrics); a peer: requests per predict call.
        "mean_batch_size": mean_batch_sizes(before, after) if target == "kinetoscope" else mean_predict_batch(records),
        "roofline": (roofline_report(work, [session.body(r.task, r.index) for r in records if r.ok], wall_s, peak)
                     if work is not None else {"reason": no_roofline}),
        "records": [asdict(r) for r in records],
    }


def _roofline_setup(model_id: str | None, model_repository: str | Path | None):
    """(RequestWork, peak FLOP/s, None), or (None, 0, why there is no roofline)."""
    from server.manifest import load_manifest

    repo = find_repository(model_id, None if model_repository is None else Path(model_repository))
    if repo is None:
        return None, 0.0, (f"no local model repository of the served model {model_id!r} "
                           "(pass --model-repository)")
    return RequestWork(repo, load_manifest(repo, verify=False)), matmul_peak(), None
