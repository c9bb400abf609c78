"""The worker loop over both queues: outcomes, progress, cancel, retries, concurrency, stopping,
and (with Redis) a worker process killed mid-job and Redis itself killed mid-job."""
from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from jobs_contract import make_job
from jobs_worker_proc import expected_content, slow_generate

from server.jobs.base import JobResult

from server.jobs.base import InputError, RETRIES_EXHAUSTED
from server.jobs.memory import MemoryQueue
from server.worker import run_worker

TESTS = Path(__file__).parent


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
async def make_queue(request):
    made = []

    def make(**limits):
        limits = {"job_ttl_seconds": 3600, **limits}
        if request.param == "memory":
            queue = MemoryQueue(**limits)
        else:
            from server.jobs.redis import RedisQueue

            server = request.getfixturevalue("redis_server")
            queue = RedisQueue(server.url, prefix=f"test:{uuid.uuid4().hex[:8]}:", **limits)
        made.append(queue)
        return queue

    yield make
    for queue in made:
        await queue.close()


@asynccontextmanager
async def worker(queue, generate, concurrency=2, worker_id="w1", events=None, heartbeat=0.1):
    """Runs run_worker in the background for the duration of the block."""
    stop = asyncio.Event()
    task = asyncio.create_task(run_worker(
        queue, generate, worker_id=worker_id, concurrency=concurrency,
        heartbeat_seconds=heartbeat, stop=stop, on_event=events.append if events is not None else None))
    try:
        yield stop
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)


async def until(check, timeout=10.0, every=0.02):
    """Waits for `await check()` to be truthy and returns it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = await check()
        if value:
            return value
        await asyncio.sleep(every)
    raise AssertionError(f"timed out after {timeout} s")


async def finished(queue, job_id):
    job = await queue.get(job_id)
    return job if job and job.terminal else None


async def test_completes_jobs_with_rising_progress(make_queue):
    q = make_queue()
    job = (await q.submit(make_job(seed=7)))[0]
    progress: list[int] = []

    async def follow():
        async for j in q.watch(job.id, poll_interval=0.02):
            progress.append(j.progress)

    watcher = asyncio.create_task(follow())
    events: list[str] = []
    async with worker(q, slow_generate(10, 0.05), events=events):
        await asyncio.wait_for(watcher, 10)
    done = await q.get(job.id)
    assert done.status == "completed"
    assert (await q.get_content(job.id, "video"), await q.get_content(job.id, "thumbnail")) == \
        expected_content(done)
    assert progress == sorted(progress) and progress[-1] == 100
    assert len(set(progress)) >= 3  # the user saw it move, not just 0 then 100
    assert events == ["job_started", "job_completed"]


async def test_cancel_stops_a_running_job_at_its_next_step(make_queue):
    q = make_queue()
    job = (await q.submit(make_job()))[0]
    steps: list[str] = []
    async with worker(q, slow_generate(100, 0.05, log=steps)):
        await until(lambda: _progress_at_least(q, job.id, 5))
        await q.cancel(job.id)
        canceled_at = len(steps)
        done = await until(lambda: finished(q, job.id), timeout=3)
    assert done.status == "canceled"
    assert len(steps) - canceled_at <= 20  # stopped within about a second, far from 100 steps


async def _progress_at_least(queue, job_id, percent):
    job = await queue.get(job_id)
    return job.status == "in_progress" and job.progress >= percent


async def test_poison_job_is_retried_then_dead(make_queue):
    q = make_queue(max_attempts=3)
    job = (await q.submit(make_job()))[0]
    calls = []

    async def poison(job, input_video, on_progress, should_stop):
        calls.append(job.attempts)
        raise RuntimeError("model exploded")

    events: list[str] = []
    async with worker(q, poison, events=events):
        dead = await until(lambda: finished(q, job.id))
    assert calls == [1, 2, 3]
    assert dead.status == "failed" and dead.error["code"] == RETRIES_EXHAUSTED
    assert "RuntimeError: model exploded" in dead.error["message"]
    assert events.count("job_error") == 3
    assert await q.counters() == {"reclaimed": 0, "retried": 2, "dead": 1, "expired": 0}


async def test_input_error_fails_at_once(make_queue):
    q = make_queue(max_attempts=3)
    job = (await q.submit(make_job(), input_video=b"not a video"))[0]
    seen_inputs = []

    async def bad_input(job, input_video, on_progress, should_stop):
        seen_inputs.append(input_video)
        raise InputError("invalid_input_video", "could not decode the input video")

    async with worker(q, bad_input):
        failed = await until(lambda: finished(q, job.id))
    assert seen_inputs == [b"not a video"]
    assert failed.status == "failed" and failed.attempts == 1
    assert failed.error == {"code": "invalid_input_video", "message": "could not decode the input video"}


def _own_input_errors():
    """Each kind of error a job's own input or request causes (server/errors.py's InputError)."""
    from server.pipeline import DeadlineExceeded
    from server.tasks import TaskError
    from server.video import VideoError

    return [VideoError(400, "invalid_video", "the MP4 file could not be decoded"),
            TaskError("condition_frames is 5 but the input has only 2 frames"),
            DeadlineExceeded("the deadline passed after 3 of 256 tokens")]


@pytest.mark.parametrize("index", range(3), ids=["VideoError", "TaskError", "DeadlineExceeded"])
async def test_a_job_failing_through_its_own_input_is_never_retried(make_queue, index):
    """D9: an input no retry can fix fails on its first attempt with its own code and message
    (before: a VideoError reaching the worker was retried max_attempts times as our fault)."""
    error = _own_input_errors()[index]
    q = make_queue(max_attempts=3)
    job = (await q.submit(make_job(), input_video=b"input"))[0]
    attempts: list[int] = []

    async def failing(job, input_video, on_progress, should_stop):
        attempts.append(job.attempts)
        raise error

    events: list[str] = []
    async with worker(q, failing, events=events):
        failed = await until(lambda: finished(q, job.id))
    assert attempts == [1]
    assert failed.status == "failed" and failed.error == {"code": error.code, "message": error.message}
    assert events == ["job_started", "job_failed"]
    assert (await q.counters())["retried"] == 0


async def test_an_engine_crash_is_retried_and_the_job_completes(make_queue):
    """Infrastructure faults are retried: an engine that fails once (a lost GPU, an ONNX Runtime
    error) costs the job one attempt, not the job."""
    q = make_queue(max_attempts=3)
    job = (await q.submit(make_job()))[0]
    attempts: list[int] = []

    async def crashes_once(job, input_video, on_progress, should_stop):
        attempts.append(job.attempts)
        if len(attempts) == 1:
            raise RuntimeError("onnxruntime: CUDA failure 999")
        return JobResult(b"v", b"t")

    async with worker(q, crashes_once):
        done = await until(lambda: finished(q, job.id))
    assert attempts == [1, 2] and done.status == "completed"
    assert (await q.counters())["retried"] == 1


async def test_runs_up_to_concurrency_jobs_at_once(make_queue):
    q = make_queue()
    jobs = [(await q.submit(make_job()))[0] for _ in range(5)]
    running, most = 0, 0

    async def counting(job, input_video, on_progress, should_stop):
        nonlocal running, most
        running += 1
        most = max(most, running)
        await asyncio.sleep(0.15)
        running -= 1
        return JobResult(b"v", b"t")

    async with worker(q, counting, concurrency=2):
        for job in jobs:
            await until(lambda: finished(q, job.id))
    assert most == 2


async def test_stop_finishes_running_jobs_and_claims_no_more(make_queue):
    q = make_queue()
    first = (await q.submit(make_job()))[0]
    second = (await q.submit(make_job()))[0]
    async with worker(q, slow_generate(6, 0.05), concurrency=1) as stop:
        await until(lambda: _progress_at_least(q, first.id, 1))
        stop.set()
    assert (await q.get(first.id)).status == "completed"
    assert (await q.get(second.id)).status == "queued"


@pytest.mark.redis
async def test_job_survives_a_killed_worker_process(redis_server):
    """SIGKILL a worker process mid-job: its lease lapses and another worker finishes the job."""
    from server.jobs.redis import RedisQueue

    prefix = f"test:{uuid.uuid4().hex[:8]}:"
    q = RedisQueue(redis_server.url, prefix=prefix, lease_seconds=1.0)
    job = (await q.submit(make_job(seed=3)))[0]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS.parent), str(TESTS)])}
    doomed = subprocess.Popen(
        [sys.executable, str(TESTS / "jobs_worker_proc.py"), redis_server.url, prefix, "doomed",
         "1.0", "0.2", "30", "0.1"], env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        await until(lambda: _progress_at_least(q, job.id, 10), timeout=15)
        doomed.send_signal(signal.SIGKILL)
        doomed.wait()
        async with worker(q, slow_generate(30, 0.02), worker_id="survivor", heartbeat=0.2):
            done = await until(lambda: finished(q, job.id), timeout=15)
    finally:
        doomed.kill()
        doomed.wait()
    assert done.status == "completed" and done.attempts == 2
    assert await q.get_content(job.id, "video") == expected_content(done)[0]
    assert (await q.counters())["reclaimed"] == 1
    await q.close()


@pytest.mark.redis
async def test_jobs_survive_redis_killed_mid_job(redis_server):
    """kill -9 Redis while a worker runs: with the AOF nothing is lost and every job finishes."""
    from server.jobs.redis import RedisQueue

    q = RedisQueue(redis_server.url, prefix=f"test:{uuid.uuid4().hex[:8]}:", lease_seconds=3.0)
    jobs = [(await q.submit(make_job(seed=i)))[0] for i in range(3)]
    async with worker(q, slow_generate(10, 0.05), concurrency=1, heartbeat=0.3):
        await until(lambda: _progress_at_least(q, jobs[0].id, 10))
        redis_server.kill()
        assert not redis_server.answers_ping()
        await asyncio.sleep(1.0)  # the worker keeps generating while Redis is down
        redis_server.start()
        done = [await until(lambda: finished(q, job.id), timeout=20) for job in jobs]
    assert [j.status for j in done] == ["completed"] * 3
    for job in done:
        assert await q.get_content(job.id, "video") == expected_content(job)[0]
    await q.close()
