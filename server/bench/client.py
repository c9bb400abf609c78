"""The HTTP side: creating jobs, waiting for them (polling or `Prefer: wait`), downloading,
the closed and open loops, and run_bench."""
from __future__ import annotations

import asyncio
import base64
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, Mapping

import httpx
import numpy as np

from server.bench.options import BenchError, Mode, WaitStrategy, _check_arguments, validate_task_mix
from server.bench.stats import RequestRecord, histogram_totals, mean_batch_sizes, poisson_arrivals, summarize
from server.tasks import CLASS_TASKS, SPATIAL_TASKS

DEFAULT_POLL_S = 1.0  # when the server suggests no poll interval
MIN_POLL_S = 0.05  # never poll faster than this, whatever the server says (Retry-After: 0)
TERMINAL = ("completed", "failed", "canceled")


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
    """Load `base_url` and return the report (see the package docstring), per-request records included.

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
