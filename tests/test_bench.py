"""cli/bench/: the load tester's pure parts, then whole runs (through the Python SDK) against a
small fake API.

The fake (FakeAPI below) implements just enough of spec/api.md for the load tester: POST/GET
/v1/videos, content, /v1/models and /metrics. Its jobs take a fixed queue and compute time and
it observes a known batch size per job, so every figure of a report can be checked exactly.
"""
from __future__ import annotations

import asyncio
import base64
import json
import socket
import threading
import time
import uuid

import numpy as np
import pytest
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from prometheus_client import CollectorRegistry, Histogram, generate_latest

import cli.bench.client as bench_client
from cli.bench import (
    SDK_MISSING,
    BenchError,
    RequestRecord,
    bench_command,
    format_summary,
    histogram_totals,
    mean_batch_sizes,
    parse_task_mix,
    percentile,
    poisson_arrivals,
    run_bench,
    summarize,
)
from server.video import encode_mp4

# --- pure parts ----------------------------------------------------------------------------------

def test_percentile_interpolates_between_order_statistics():
    assert percentile([4, 1, 3, 2], 50) == 2.5
    assert percentile([1, 2, 3, 4], 90) == pytest.approx(3.7)
    assert percentile(list(range(1, 101)), 99) == pytest.approx(99.01)
    assert percentile([7.0], 99) == 7.0
    assert percentile([], 50) is None
    with pytest.raises(ValueError):
        percentile([1.0], 101)


def test_poisson_arrivals_are_seeded_and_exponential():
    a = poisson_arrivals(5.0, seed=3, count=20_000)
    assert a == poisson_arrivals(5.0, seed=3, count=20_000)
    assert a != poisson_arrivals(5.0, seed=4, count=20_000)
    gaps = np.diff([0.0] + a)
    assert (gaps > 0).all()
    assert gaps.mean() == pytest.approx(1 / 5.0, rel=0.03)
    assert gaps.std() / gaps.mean() == pytest.approx(1.0, rel=0.05), "exponential gaps: std equals mean"


def test_poisson_arrivals_stop_at_duration_or_count():
    within = poisson_arrivals(10.0, seed=0, duration_s=3.0)
    assert within and max(within) <= 3.0
    assert len(within) == pytest.approx(30, abs=15)
    assert len(poisson_arrivals(10.0, seed=0, duration_s=100.0, count=7)) == 7
    assert poisson_arrivals(10.0, seed=0, duration_s=3.0, count=10_000) == within
    with pytest.raises(BenchError):
        poisson_arrivals(0.0, seed=0, count=1)
    with pytest.raises(BenchError):
        poisson_arrivals(1.0, seed=0)


def test_task_mix_parsing_normalizes():
    assert parse_task_mix("class_conditional=0.5,frame_prediction=0.5") == {
        "class_conditional": 0.5, "frame_prediction": 0.5}
    assert parse_task_mix(" class_conditional = 3 , inpainting=1, outpainting=0 ") == {
        "class_conditional": 0.75, "inpainting": 0.25}
    assert parse_task_mix("frame_interpolation") == {"frame_interpolation": 1.0}


@pytest.mark.parametrize("text, message", [
    ("", "empty"),
    (" , ", "empty"),
    ("text_to_video=1", "unknown task"),
    ("class_conditional=1,class_conditional=2", "twice"),
    ("class_conditional=lots", "must be a number"),
    ("class_conditional=-1", ">= 0"),
    ("class_conditional=inf", "finite"),
    ("class_conditional=nan", "finite"),
    ("class_conditional=0,inpainting=0", "sum to 0"),
])
def test_task_mix_errors_say_what_is_wrong(text, message):
    with pytest.raises(BenchError, match=message):
        parse_task_mix(text)


METRICS_BEFORE = """\
# HELP kinetoscope_batch_size Requests per network call
# TYPE kinetoscope_batch_size histogram
kinetoscope_batch_size_bucket{engine="prior",replica="a",le="1.0"} 2.0
kinetoscope_batch_size_bucket{engine="prior",replica="a",le="+Inf"} 4.0
kinetoscope_batch_size_sum{engine="prior",replica="a"} 10.0
kinetoscope_batch_size_count{engine="prior",replica="a"} 4.0
kinetoscope_batch_size_created{engine="prior",replica="a"} 1.7e9
# HELP kinetoscope_requests_total Requests
# TYPE kinetoscope_requests_total counter
kinetoscope_requests_total 99.0
"""
METRICS_AFTER = """\
# TYPE kinetoscope_batch_size histogram
kinetoscope_batch_size_bucket{engine="prior",replica="a",le="+Inf"} 6.0
kinetoscope_batch_size_sum{engine="prior",replica="a"} 22.0
kinetoscope_batch_size_count{engine="prior",replica="a"} 6.0
kinetoscope_batch_size_bucket{engine="prior",replica="b",le="+Inf"} 2.0
kinetoscope_batch_size_sum{engine="prior",replica="b"} 16.0
kinetoscope_batch_size_count{engine="prior",replica="b"} 2.0
kinetoscope_batch_size_bucket{engine="tokenizer",le="+Inf"} 5.0
kinetoscope_batch_size_sum{engine="tokenizer"} 5.0
kinetoscope_batch_size_count{engine="tokenizer"} 5.0
kinetoscope_batch_size_bucket{engine="sr",le="+Inf"} 0.0
kinetoscope_batch_size_sum{engine="sr"} 0.0
kinetoscope_batch_size_count{engine="sr"} 0.0
"""


def test_histogram_delta_gives_mean_batch_size_per_engine():
    before, after = histogram_totals(METRICS_BEFORE), histogram_totals(METRICS_AFTER)
    assert before == {"prior": (10.0, 4.0)}
    assert after == {"prior": (38.0, 8.0), "tokenizer": (5.0, 5.0), "sr": (0.0, 0.0)}
    # prior: (38 - 10) / (8 - 4); tokenizer had no series before: its series starts at zero;
    # sr ran no batch in between.
    assert mean_batch_sizes(before, after) == {"prior": 7.0, "sr": None, "tokenizer": 1.0}


def test_histogram_without_type_line_or_absent():
    untyped = 'kinetoscope_batch_size_sum{engine="prior"} 6\nkinetoscope_batch_size_count{engine="prior"} 3\n'
    assert histogram_totals(untyped) == {"prior": (6.0, 3.0)}
    assert histogram_totals("# TYPE other counter\nother_total 1\n") == {}
    assert mean_batch_sizes({}, {}) is None
    assert mean_batch_sizes(None, None) is None
    assert mean_batch_sizes(None, {"prior": (6.0, 3.0)}) == {"prior": 2.0}


def test_summarize_counts_errors_and_ignores_them_in_latency():
    records = [
        RequestRecord(0, "class_conditional", 0.0, latency_s=1.0, ok=True, queue_s=0.2, compute_s=0.5),
        RequestRecord(1, "class_conditional", 0.1, latency_s=3.0, ok=True, queue_s=0.4, compute_s=0.7),
        RequestRecord(2, "inpainting", 0.2, error="429/queue_full"),
        RequestRecord(3, "inpainting", 0.3, error="429/queue_full"),
        RequestRecord(4, "inpainting", 0.4, error="failed/engine_error", queue_s=0.1, compute_s=0.1),
    ]
    report = summarize(records, wall_s=4.0)
    assert (report["requests"], report["completed"], report["errors"]) == (5, 2, 3)
    assert report["error_counts"] == {"429/queue_full": 2, "failed/engine_error": 1}
    assert report["videos_per_second"] == 0.5
    assert report["latency_s"]["p50"] == 2.0 and report["latency_s"]["max"] == 3.0
    assert report["mean_queue_s"] == pytest.approx(0.3) and report["mean_compute_s"] == pytest.approx(0.6)
    assert report["per_task"]["inpainting"] == {"requests": 3, "completed": 0, "latency_p50_s": None}


@pytest.mark.parametrize("kwargs, message", [
    (dict(mode="sideways", num_requests=1), "mode"),
    (dict(mode="closed", concurrency=0, num_requests=1), "concurrency"),
    (dict(mode="open", rate=0.0, num_requests=1), "rate"),
    (dict(mode="closed"), "duration"),
    (dict(num_requests=0), "count"),
    (dict(num_requests=1, size="32"), "WxH"),
    (dict(num_requests=1, wait="sometimes"), "wait"),
    (dict(num_requests=1, task_mix={"dance": 1.0}), "unknown task"),
])
async def test_bad_arguments_fail_before_any_request(kwargs, message):
    with pytest.raises(BenchError, match=message):
        await run_bench("http://127.0.0.1:9", **kwargs)  # port 9: nothing listens, nothing is sent


# --- a fake deployment -----------------------------------------------------------------------------

QUEUE_S, COMPUTE_S = 0.03, 0.05
BATCH_SIZE = {"class_conditional": 2.0}  # every other task: 4; the tokenizer: always 1


class FakeAPI:
    """Jobs whose status follows the clock: queued for QUEUE_S, in progress for COMPUTE_S."""

    def __init__(self):
        self.mp4 = encode_mp4(np.full((4, 16, 16, 3), 90, dtype=np.uint8), fps=4)
        self.app = FastAPI()
        self._routes()
        self.reset()

    def reset(self, *, refuse_every: int = 0, api_key: str | None = None, metrics: bool = True,
              fail_task: str | None = None, hold_gets: bool = True, max_hold_s: float = 60.0) -> "FakeAPI":
        self.refuse_every, self.api_key, self.metrics, self.fail_task = refuse_every, api_key, metrics, fail_task
        self.hold_gets = hold_gets  # False: GET ignores Prefer: wait, as a server may
        self.max_hold_s = max_hold_s  # the longest hold, whatever the client asks (max_wait_seconds)
        self.user_agents: set[str] = set()
        self.jobs: dict[str, dict] = {}
        self.bodies: list[dict] = []
        self.posts = self.refused = self.job_gets = 0
        self.registry = CollectorRegistry()
        self.histogram = Histogram("kinetoscope_batch_size", "requests per call", ["engine"],
                                   buckets=(1, 2, 4, 8, 16), registry=self.registry)
        return self

    def _error(self, status: int, code: str, **headers) -> JSONResponse:
        return JSONResponse({"error": {"type": "fake", "code": code, "message": code, "param": None}},
                            status_code=status, headers=headers)

    def _job(self, job_id: str) -> dict:
        job = dict(self.jobs[job_id])
        now, created = time.time(), job["created_at"]
        if now >= created + QUEUE_S:
            job["status"], job["started_at"] = "in_progress", created + QUEUE_S
        if now >= created + QUEUE_S + COMPUTE_S:
            job["completed_at"] = created + QUEUE_S + COMPUTE_S
            failed = job["task"] == self.fail_task
            job["status"] = "failed" if failed else "completed"
            job["error"] = {"code": "engine_error", "message": "boom"} if failed else None
        return job

    async def _answer(self, request: Request, job_id: str, created: bool) -> JSONResponse:
        """The job, after holding the request up to Prefer: wait=N seconds."""
        prefer, headers = request.headers.get("prefer", ""), {"Retry-After": "1", "X-Poll-Interval": "0.02"}
        if prefer.startswith("wait=") and (created or self.hold_gets):
            headers["Preference-Applied"] = prefer
            deadline = time.time() + min(float(prefer[5:]), self.max_hold_s)
            while self._job(job_id)["status"] in ("queued", "in_progress") and time.time() < deadline:
                await asyncio.sleep(0.005)
        job = self._job(job_id)
        done = job["status"] not in ("queued", "in_progress")
        return JSONResponse(job, status_code=200 if done or not created else 202, headers=headers)

    def _routes(self) -> None:
        app = self.app

        @app.middleware("http")
        async def auth(request: Request, call_next):
            if request.url.path.startswith("/v1/"):  # the API, not the /metrics scrape
                self.user_agents.add(request.headers.get("user-agent", ""))
            if self.api_key and request.headers.get("authorization") != f"Bearer {self.api_key}":
                return self._error(401, "invalid_api_key")
            return await call_next(request)

        @app.get("/v1/models")
        async def models():
            return {"object": "list", "data": [{"id": "fake", "classes": ["a", "b", "c"]}]}

        @app.post("/v1/videos")
        async def create(request: Request):
            body = await request.json()
            self.posts += 1
            if self.refuse_every and self.posts % self.refuse_every == 0:
                self.refused += 1
                return self._error(429, "queue_full", **{"Retry-After": "0"})
            if body["task"] != "class_conditional":
                try:
                    base64.b64decode(body["input_video"], validate=True)
                except (KeyError, TypeError, ValueError):
                    return self._error(422, "input_video_required")
            self.bodies.append(body)
            job_id = uuid.uuid4().hex
            self.jobs[job_id] = {"id": job_id, "object": "video", "task": body["task"], "status": "queued",
                                 "created_at": time.time(), "started_at": None, "completed_at": None, "error": None}
            self.histogram.labels(engine="prior").observe(BATCH_SIZE.get(body["task"], 4.0))
            self.histogram.labels(engine="tokenizer").observe(1.0)
            return await self._answer(request, job_id, created=True)

        @app.get("/v1/videos/{job_id}")
        async def get(job_id: str, request: Request):
            if job_id not in self.jobs:
                return self._error(404, "not_found")
            self.job_gets += 1
            return await self._answer(request, job_id, created=False)

        @app.get("/v1/videos/{job_id}/content")
        async def content(job_id: str):
            if job_id not in self.jobs:
                return self._error(404, "not_found")
            if self._job(job_id)["status"] != "completed":
                return self._error(409, "not_ready")
            return Response(self.mp4, media_type="video/mp4")

        @app.get("/metrics")
        async def metrics():
            if not self.metrics:
                return self._error(404, "not_found")
            return PlainTextResponse(generate_latest(self.registry).decode())


@pytest.fixture(scope="module")
def served():
    """The fake on a free port, served by uvicorn in a thread: (FakeAPI, base URL)."""
    api = FakeAPI()
    # proto=IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY only on sockets that say they are TCP, and
    # without it every keep-alive answer waits ~40 ms for a delayed ACK.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(api.app, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.time() + 10
    while not server.started and time.time() < deadline:
        time.sleep(0.01)
    assert server.started, "the fake API did not start"
    yield api, f"http://127.0.0.1:{sock.getsockname()[1]}"
    server.should_exit = True
    thread.join(timeout=5)
    sock.close()


@pytest.fixture
def fake(served):
    api, url = served
    api.reset()
    return api, url


def expected_prior_mean(bodies: list[dict]) -> float:
    sizes = [BATCH_SIZE.get(b["task"], 4.0) for b in bodies]
    return sum(sizes) / len(sizes)


async def test_closed_loop_polling_end_to_end(fake):
    api, url = fake
    mix = {"class_conditional": 0.4, "frame_prediction": 0.3, "inpainting": 0.3}
    report = await run_bench(url, mode="closed", concurrency=3, num_requests=12, task_mix=mix, size="16x16",
                             num_frames=4, seed=100, wait="poll")
    assert (report["requests"], report["completed"], report["errors"]) == (12, 12, 0)
    assert [r["index"] for r in report["records"]] == list(range(12))

    setup, measured = api.bodies[0], api.bodies[1:]
    assert setup["task"] == "class_conditional", "the input video comes from one class_conditional job"
    assert sorted(b["seed"] for b in measured) == list(range(100, 112))
    assert {b["task"] for b in measured} <= set(mix)
    for body in measured:
        assert body["size"] == "16x16" and body["num_frames"] == 4
        if body["task"] == "class_conditional":
            assert body["class_label"] == (body["seed"] - 100) % 3, "labels cycle through the model's 3 classes"
        else:
            assert base64.b64decode(body["input_video"]) == api.mp4, "the generated MP4 is the input"
        if body["task"] == "inpainting":
            assert body["mask"] == {"preset": "center"}

    lat = report["latency_s"]
    assert QUEUE_S + COMPUTE_S <= lat["p50"] <= lat["p90"] <= lat["p99"] <= lat["max"]
    assert report["mean_queue_s"] == pytest.approx(QUEUE_S, abs=0.02)
    assert report["mean_compute_s"] == pytest.approx(COMPUTE_S, abs=0.02)
    assert report["videos_per_second"] == pytest.approx(12 / report["wall_s"])
    assert all(r["content_bytes"] == len(api.mp4) for r in report["records"])
    # The setup job's batch is observed before the first scrape, so it is not in the mean.
    assert report["mean_batch_size"] == {"prior": pytest.approx(expected_prior_mean(measured)), "tokenizer": 1.0}
    # Polling follows X-Poll-Interval (0.02 s; the SDK waits at least 0.1 s) over a job of 0.08 s:
    # a few GETs each, not hundreds.
    assert 13 <= api.job_gets <= 13 * 8
    # Every API request went out through the SDK's client (only /metrics is a plain GET).
    assert len(api.user_agents) == 1 and next(iter(api.user_agents)).startswith("kinetoscope-client/")


async def test_open_loop_prefer_wait_follows_the_seeded_arrivals(fake):
    api, url = fake
    report = await run_bench(url, mode="open", rate=40.0, num_requests=10, seed=7, wait="prefer", prefer_wait_s=5)
    assert (report["completed"], report["errors"]) == (10, 0)
    sent = [r["sent_at"] for r in report["records"]]
    assert sent == pytest.approx(poisson_arrivals(40.0, seed=7, count=10), abs=0.05), "arrivals ignore completions"
    assert api.job_gets == 0, "with Prefer: wait the POST itself returns the finished job"
    assert report["config"]["rate"] == 40.0 and report["config"]["concurrency"] is None


@pytest.mark.parametrize("hold_gets, most_gets_per_job", [(True, 5), (False, 6)])  # a busy loop: ~30
async def test_prefer_wait_beyond_the_servers_hold(fake, hold_gets, most_gets_per_job):
    # The server holds the POST 0.02 s of a 0.08 s job: the rest is waited on with GETs, held by
    # the server (Preference-Applied) or, where it does not hold them, spaced by its X-Poll-Interval.
    api, url = fake
    api.reset(hold_gets=hold_gets, max_hold_s=0.02)
    report = await run_bench(url, num_requests=4, concurrency=2, wait="prefer", prefer_wait_s=5)
    assert report["completed"] == 4
    assert 4 <= api.job_gets <= 4 * most_gets_per_job


async def test_errors_are_counted_by_status_and_code(fake):
    api, url = fake
    api.reset(refuse_every=3, fail_task="outpainting")
    report = await run_bench(url, mode="closed", concurrency=2, num_requests=12, seed=1, wait="poll",
                             task_mix={"class_conditional": 1, "outpainting": 1})
    failed = sum(1 for b in api.bodies[1:] if b["task"] == "outpainting")
    assert report["error_counts"] == {"429/queue_full": api.refused, **({"failed/engine_error": failed} if failed else {})}
    assert api.refused >= 3 and failed >= 1
    assert report["completed"] == 12 - api.refused - failed
    assert report["errors"] == api.refused + failed


async def test_wrong_api_key_and_missing_metrics(fake):
    api, url = fake
    api.reset(api_key="secret")
    report = await run_bench(url, num_requests=3, concurrency=1, api_key="wrong")
    assert report["error_counts"] == {"401/invalid_api_key": 3}
    assert report["mean_batch_size"] is None and report["latency_s"]["p50"] is None

    report = await run_bench(url, num_requests=2, concurrency=1, api_key="secret")
    assert report["completed"] == 2

    api.reset(metrics=False)
    assert (await run_bench(url, num_requests=2))["mean_batch_size"] is None


async def test_setup_failures_are_clear_errors(fake):
    api, url = fake
    api.reset(refuse_every=1)
    with pytest.raises(BenchError, match="input video.*429/queue_full"):
        await run_bench(url, num_requests=1, task_mix={"frame_prediction": 1.0})
    closed = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    closed.bind(("127.0.0.1", 0))  # bound, never listening: connections are refused
    with closed, pytest.raises(BenchError, match="cannot reach"):
        await run_bench(f"http://127.0.0.1:{closed.getsockname()[1]}", num_requests=1)


async def test_a_given_input_video_is_sent_as_is(fake, tmp_path):
    api, url = fake
    clip = tmp_path / "input.gif"
    clip.write_bytes(b"GIF89a-not-really")
    report = await run_bench(url, num_requests=3, task_mix={"frame_interpolation": 1.0}, input_video=clip)
    assert report["completed"] == 3
    assert len(api.bodies) == 3, "no set-up job when the input is given"
    assert all(base64.b64decode(b["input_video"]) == clip.read_bytes() for b in api.bodies)


def test_bench_command_writes_json_and_png_for_a_timed_run(fake, tmp_path):
    _, url = fake
    out_json, out_png = tmp_path / "bench.json", tmp_path / "bench.png"
    report = bench_command(url=url, mode="closed", concurrency=2, duration=0.4,
                           task_mix="class_conditional=0.5,frame_prediction=0.5",
                           output_json=out_json, output_png=out_png)
    assert report["wall_s"] >= 0.4 and report["completed"] >= 2
    assert json.loads(out_json.read_text())["completed"] == report["completed"]
    assert out_png.read_bytes().startswith(b"\x89PNG")
    assert "videos/s" in format_summary(report)
    with pytest.raises(BenchError, match="unknown task"):
        bench_command(url=url, task_mix="dance=1")


def test_task_draw_follows_the_mix():
    # Over many requests the drawn tasks match the weights; the same seed gives the same order.
    from cli.bench import _TaskDraw

    def draws(seed):
        d = _TaskDraw({"class_conditional": 0.25, "inpainting": 0.75}, seed)
        return [d.next()[1] for _ in range(4000)]

    first = draws(5)
    assert first == draws(5) and first != draws(6)
    assert first.count("inpainting") / 4000 == pytest.approx(0.75, abs=0.03)


def test_without_the_sdk_the_command_says_how_to_install_it(monkeypatch):
    monkeypatch.setattr(bench_client, "sdk", None)
    with pytest.raises(BenchError, match=r"pip install -e clients/python$") as err:
        bench_command(url="http://127.0.0.1:9", requests=1)  # port 9: nothing is sent
    assert str(err.value) == SDK_MISSING and "\n" not in SDK_MISSING
