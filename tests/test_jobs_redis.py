"""The Redis queue: the shared JobQueue contract, plus what only Redis does (dead-letter stream,
large results on disk, shared counters, surviving a kill -9 of Redis itself)."""
from __future__ import annotations

import asyncio
import uuid

import pytest
from jobs_contract import QueueContract, make_job

from server.jobs.redis import RedisQueue
from server.jobs.base import JobResult

pytestmark = pytest.mark.redis


@pytest.fixture
async def make_queue(redis_server):
    """Builds RedisQueues on the private server, each test under its own key prefix."""
    prefix = f"test:{uuid.uuid4().hex[:8]}:"
    made: list[RedisQueue] = []

    def make(**limits) -> RedisQueue:
        queue = RedisQueue(redis_server.url, prefix=prefix, **{"job_ttl_seconds": 3600, **limits})
        made.append(queue)
        return queue

    yield make
    for queue in made:
        await queue.close()


class TestRedisQueue(QueueContract):
    pass


async def test_dead_jobs_go_to_the_dead_letter_stream(make_queue):
    q = make_queue(max_attempts=1)
    job = (await q.submit(make_job()))[0]
    await q.claim("w1", timeout=0.2)
    await q.fail(job.id, "w1", "generation_error", "RuntimeError: poison")
    [letter] = await q.dead_letters()
    assert letter["job_id"] == job.id and letter["code"] == "retries_exhausted"
    assert "poison" in letter["message"]


async def test_counters_are_shared_between_processes(make_queue):
    api, worker = make_queue(max_attempts=3), make_queue(max_attempts=3)
    job = (await api.submit(make_job()))[0]
    await worker.claim("w1", timeout=0.2)
    await worker.fail(job.id, "w1", "generation_error", "flaky")
    assert (await api.counters())["retried"] == 1


async def test_large_results_go_to_the_shared_folder(make_queue, tmp_path):
    q = make_queue(result_inline_max_bytes=100, results_dir=tmp_path)
    big, small = (await q.submit(make_job()))[0], (await q.submit(make_job()))[0]
    for job, video in ((big, b"v" * 1000), (small, b"v" * 10)):
        await q.claim("w1", timeout=0.2)
        await q.complete(job.id, "w1", JobResult(video, b"png"))
    assert (tmp_path / f"{big.id}.mp4").read_bytes() == b"v" * 1000
    assert not (tmp_path / f"{small.id}.mp4").exists()
    assert await q.get_content(big.id, "video") == b"v" * 1000
    assert await q.get_content(small.id, "video") == b"v" * 10
    (tmp_path / "video_gone.mp4").write_bytes(b"orphan")  # its job expired long ago
    assert await q.purge_results() == 1
    await q.delete(big.id)
    assert list(tmp_path.iterdir()) == []


async def test_a_live_lease_is_never_reclaimed_however_long_the_job(make_queue):
    """The takeover depends on the lease, not on how long ago the job was handed out."""
    q1, q2 = make_queue(lease_seconds=0.3), make_queue(lease_seconds=0.3)
    job = (await q1.submit(make_job()))[0]
    await q1.claim("w1", timeout=0.2)
    for _ in range(6):
        await asyncio.sleep(0.15)
        assert await q1.heartbeat(job.id, "w1")
        assert await q2.claim("w2", timeout=0.05) is None
    await q1.complete(job.id, "w1", JobResult(b"v", b"t"))
    assert (await q2.get(job.id)).attempts == 1


async def test_nothing_is_lost_when_redis_is_killed(make_queue, redis_server):
    q = make_queue()
    first = (await q.submit(make_job("low"), input_video=b"in", idempotency_key="k1"))[0]
    second = (await q.submit(make_job("high")))[0]
    running = await q.claim("w1", timeout=0.2)
    assert running.id == second.id

    redis_server.restart()  # kill -9, then replay the append-only file

    q2 = make_queue()
    assert (await q2.get(second.id)).status == "in_progress"
    assert await q2.queue_position(first.id) == 0
    assert await q2.get_input(first.id) == b"in"
    assert (await q2.submit(make_job(), idempotency_key="k1"))[0].id == first.id
    await q.complete(second.id, "w1", JobResult(b"mp4", b"png"))  # the old client reconnects by itself
    taken = await q2.claim("w2", timeout=0.5)
    assert taken.id == first.id
    await q2.complete(first.id, "w2", JobResult(b"mp4-2", b"png-2"))
    assert [(await q2.get(j.id)).status for j in (first, second)] == ["completed", "completed"]
    assert await q2.get_content(second.id, "video") == b"mp4"


def test_open_queue_with_a_url_is_redis():
    from server.jobs import open_queue
    from server.settings import Settings

    assert isinstance(open_queue(Settings(redis_url="redis://127.0.0.1:1/0")), RedisQueue)


async def test_reclaim_looks_past_many_long_running_jobs(make_queue, monkeypatch):
    """A lapsed lease is found even behind more live long-running jobs than one XPENDING page."""
    import server.jobs.redis_claims as claims

    monkeypatch.setattr(claims, "RECLAIM_PAGE", 2)
    q = make_queue(lease_seconds=0.3)
    jobs = [(await q.submit(make_job()))[0] for _ in range(4)]
    for job in jobs[:3]:
        await q.claim("alive", timeout=0.2)
    await q.claim("dead", timeout=0.2)
    for _ in range(5):
        await asyncio.sleep(0.1)
        for job in jobs[:3]:
            assert await q.heartbeat(job.id, "alive")
    taken = await q.claim("w2", timeout=0.5)
    assert taken.id == jobs[3].id and taken.attempts == 2


async def test_expired_jobs_leave_the_listing_index(make_queue):
    q = make_queue(job_ttl_seconds=0.2)
    old = [(await q.submit(make_job()))[0] for _ in range(3)]
    for job in old:
        await q.cancel(job.id)
    live = (await q.submit(make_job()))[0]
    await asyncio.sleep(0.3)
    await q._trim_index()
    assert [_id.decode() for _id in await q.r.zrange(q._index, 0, -1)] == [live.id]


async def test_a_job_that_expires_when_taken_over_is_counted(make_queue):
    """Review A2: a queued job whose claimer died before starting it, past its deadline when
    another worker takes its entry over, ends `expired`: counted and reported like one that
    expires at claim."""
    import time as _time
    from dataclasses import replace as _replace

    from server.jobs.redis_store import GROUP

    events: list[str] = []
    q = make_queue(lease_seconds=0.2, on_event=events.append)
    await q.claim("w0", timeout=0.01)  # creates the consumer groups
    late = (await q.submit(_replace(make_job(), deadline_at=_time.time() + 0.1)))[0]
    stream = q._streams[late.priority]
    delivered = await q.r.xreadgroup(GROUP, "ghost", {stream: ">"}, count=1)  # read, never started
    assert delivered and (await q.get(late.id)).status == "queued"
    await asyncio.sleep(0.3)  # the deadline and the entry's idle time pass
    q._next_reclaim = 0.0
    assert await q.claim("w1", timeout=0.3) is None
    assert (await q.get(late.id)).status == "expired"
    assert events == ["expired"] and (await q.counters())["expired"] == 1
