"""The behaviour every JobQueue must have, written once and run against each implementation.

test_jobs_memory.py and test_jobs_redis.py each subclass `QueueContract` and provide a
`make_queue(**limits)` fixture; pytest then runs every test below against both queues.
"""
from __future__ import annotations

import asyncio
import itertools

import pytest
from conftest import video_request

from server.jobs.base import RETRIES_EXHAUSTED, WORKER_LOST, Job, QueueFull, JobResult

_ids = itertools.count(1)


def make_job(priority: str = "normal", job_id: str | None = None, seed: int = 0) -> Job:
    # Ids sort in creation order (as new_job_id's time prefix does), which listing relies on.
    return Job(id=job_id or f"video_{next(_ids):024x}", model="demo",
               request=video_request(class_label=3, seed=seed, priority=priority))


class QueueContract:
    async def test_a_leased_delivery_has_its_attempt_counted_before_it_is_sent(self, make_queue):
        """A sender killed between its POST and recording the outcome must not lose the attempt
        from the count: the lease itself counts it, in the store (server/webhooks.py)."""
        from server.jobs.webhooks import webhook_config

        q = make_queue()
        job = make_job()
        job.webhook = webhook_config("https://example.com/h", None, "http://api", 10)
        await q.submit(job)
        claimed = await q.claim("w1", timeout=2)
        await q.complete(claimed.id, "w1", JobResult(b"mp4", b"png"))
        (first,) = await q.webhooks_due(10, lease_seconds=0)  # the lease lapses at once, as a dead sender's does
        assert first.attempts == 1
        (again,) = await q.webhooks_due(10, lease_seconds=60)  # taken again without any outcome recorded
        assert again.id == first.id and again.attempts == 2
        assert await q.webhooks_due(10, lease_seconds=60) == []

    async def test_priorities_first_then_fifo(self, make_queue):
        q = make_queue()
        order = ["low", "normal", "high", "normal", "high", "low"]
        jobs = [(await q.submit(make_job(p)))[0] for p in order]
        claimed = [(await q.claim("w1", timeout=0.2)).id for _ in jobs]
        expected = [j.id for p in ("high", "normal", "low") for j in jobs if j.priority == p]
        assert claimed == expected
        assert await q.claim("w1", timeout=0.1) is None

    async def test_claim_marks_running(self, make_queue):
        q = make_queue()
        job, created = await q.submit(make_job(), input_video=b"input bytes")
        assert created and job.status == "queued"
        running = await q.claim("w1", timeout=0.2)
        assert (running.id, running.status, running.attempts) == (job.id, "in_progress", 1)
        assert running.started_at is not None
        assert await q.get_input(job.id) == b"input bytes"

    async def test_idempotency_key_returns_the_first_job(self, make_queue):
        q = make_queue()
        first, created = await q.submit(make_job(), idempotency_key="abc")
        again, created_again = await q.submit(make_job(), idempotency_key="abc")
        other, _ = await q.submit(make_job(), idempotency_key="xyz")
        assert created and not created_again
        assert again.id == first.id and other.id != first.id
        assert sum((await q.depth()).values()) == 2

    async def test_queue_full_until_a_job_leaves(self, make_queue):
        q = make_queue(max_queue_length=2, retry_after_seconds=7)
        await q.submit(make_job())
        await q.submit(make_job())
        with pytest.raises(QueueFull) as info:
            await q.submit(make_job())
        assert info.value.retry_after == 7
        await q.claim("w1", timeout=0.2)  # running jobs do not count against the limit
        await q.submit(make_job())

    async def test_queue_position_and_depth(self, make_queue):
        q = make_queue()
        low = (await q.submit(make_job("low")))[0]
        normal = (await q.submit(make_job("normal")))[0]
        high = (await q.submit(make_job("high")))[0]
        assert [await q.queue_position(j.id) for j in (high, normal, low)] == [0, 1, 2]
        assert await q.depth() == {"high": 1, "normal": 1, "low": 1}
        await q.claim("w1", timeout=0.2)
        assert await q.queue_position(high.id) is None  # running
        assert [await q.queue_position(j.id) for j in (normal, low)] == [0, 1]
        assert await q.queue_position("video_unknown") is None

    async def test_cancel_queued_is_immediate_and_idempotent(self, make_queue):
        q = make_queue()
        job = (await q.submit(make_job()))[0]
        canceled = await q.cancel(job.id)
        assert canceled.status == "canceled" and canceled.expires_at is not None
        assert (await q.cancel(job.id)).status == "canceled"
        assert await q.queue_position(job.id) is None
        assert await q.claim("w1", timeout=0.2) is None
        assert await q.cancel("video_unknown") is None

    async def test_cancel_running_asks_the_worker(self, make_queue):
        q = make_queue()
        job = (await q.submit(make_job()))[0]
        await q.claim("w1", timeout=0.2)
        flagged = await q.cancel(job.id)
        assert flagged.status == "in_progress" and flagged.cancel_requested
        await q.finish_canceled(job.id, "w1")
        assert (await q.get(job.id)).status == "canceled"

    async def test_complete_stores_content(self, make_queue):
        q = make_queue()
        job = (await q.submit(make_job()))[0]
        await q.claim("w1", timeout=0.2)
        assert await q.get_content(job.id, "video") is None  # not ready yet
        await q.complete(job.id, "w1", JobResult(b"mp4", b"png"))
        done = await q.get(job.id)
        assert (done.status, done.progress) == ("completed", 100)
        assert done.expires_at == pytest.approx(done.completed_at + 3600, abs=1)
        assert await q.get_content(job.id, "video") == b"mp4"
        assert await q.get_content(job.id, "thumbnail") == b"png"

    async def test_only_the_owner_reports(self, make_queue):
        q = make_queue()
        job = (await q.submit(make_job()))[0]
        await q.claim("w1", timeout=0.2)
        await q.complete(job.id, "w2", JobResult(b"x", b"y"))
        await q.fail(job.id, "w2", "boom", "no", retryable=False)
        assert (await q.get(job.id)).status == "in_progress"
        assert not await q.heartbeat(job.id, "w2")
        assert await q.heartbeat(job.id, "w1")

    async def test_delete_removes_job_and_content(self, make_queue):
        q = make_queue()
        job = (await q.submit(make_job(), input_video=b"in", idempotency_key="k"))[0]
        await q.claim("w1", timeout=0.2)
        await q.complete(job.id, "w1", JobResult(b"mp4", b"png"))
        assert await q.delete(job.id)
        assert await q.get(job.id) is None
        assert await q.get_content(job.id, "video") is None
        assert await q.get_input(job.id) is None
        assert not await q.delete(job.id)
        again, created = await q.submit(make_job(), idempotency_key="k")
        assert created and again.id != job.id  # the key went with the job

    async def test_delete_queued_job_is_never_run(self, make_queue):
        q = make_queue()
        job = (await q.submit(make_job()))[0]
        assert await q.delete(job.id)
        assert await q.claim("w1", timeout=0.2) is None

    async def test_finished_jobs_expire(self, make_queue):
        q = make_queue(job_ttl_seconds=0.4)
        done = (await q.submit(make_job(), input_video=b"in"))[0]
        canceled = (await q.submit(make_job()))[0]
        waiting = (await q.submit(make_job()))[0]
        await q.claim("w1", timeout=0.2)
        await q.complete(done.id, "w1", JobResult(b"mp4", b"png"))
        await q.cancel(canceled.id)
        await asyncio.sleep(0.6)
        assert await q.get(done.id) is None
        assert await q.get_content(done.id, "video") is None
        assert await q.get_input(done.id) is None
        assert await q.get(canceled.id) is None
        assert (await q.get(waiting.id)).status == "queued"  # only finished jobs expire
        jobs, _ = await q.list()
        assert [j.id for j in jobs] == [waiting.id]

    async def test_retryable_failures_then_dead_letter(self, make_queue):
        events: list[str] = []
        q = make_queue(max_attempts=2, on_event=events.append)
        job = (await q.submit(make_job()))[0]
        await q.claim("w1", timeout=0.2)
        await q.fail(job.id, "w1", "generation_error", "RuntimeError: first")
        retried = await q.get(job.id)
        assert (retried.status, retried.attempts, retried.error) == ("queued", 1, None)
        assert await q.queue_position(job.id) == 0
        assert (await q.claim("w2", timeout=0.2)).attempts == 2
        await q.fail(job.id, "w2", "generation_error", "RuntimeError: second")
        dead = await q.get(job.id)
        assert dead.status == "failed" and dead.error["code"] == RETRIES_EXHAUSTED
        assert "RuntimeError: second" in dead.error["message"]
        assert events == ["retried", "dead"]
        assert await q.counters() == {"reclaimed": 0, "retried": 1, "dead": 1, "expired": 0}
        assert await q.claim("w1", timeout=0.2) is None

    async def test_non_retryable_failure_is_final(self, make_queue):
        q = make_queue(max_attempts=3)
        job = (await q.submit(make_job()))[0]
        await q.claim("w1", timeout=0.2)
        await q.fail(job.id, "w1", "invalid_input_video", "cannot decode", retryable=False)
        failed = await q.get(job.id)
        assert failed.status == "failed" and failed.attempts == 1
        assert failed.error == {"code": "invalid_input_video", "message": "cannot decode"}

    async def test_progress_only_rises(self, make_queue):
        q = make_queue()
        job = (await q.submit(make_job()))[0]
        await q.set_progress(job.id, 20)  # queued: ignored
        assert (await q.get(job.id)).progress == 0
        await q.claim("w1", timeout=0.2)
        seen = []
        for value in (10, 5, 30, 30, 100):
            await q.set_progress(job.id, value)
            seen.append((await q.get(job.id)).progress)
        assert seen == [10, 10, 30, 30, 99]  # 100 only once completed
        await q.complete(job.id, "w1", JobResult(b"v", b"t"))
        assert (await q.get(job.id)).progress == 100

    async def test_watch_yields_each_change_and_ends(self, make_queue):
        q = make_queue()
        job = (await q.submit(make_job()))[0]
        seen: list[tuple[str, int]] = []

        async def follow():
            async for j in q.watch(job.id, poll_interval=0.02):
                seen.append((j.status, j.progress))

        watcher = asyncio.create_task(follow())
        await asyncio.sleep(0.1)
        await q.claim("w1", timeout=0.2)
        for value in (25, 50):
            await asyncio.sleep(0.1)
            await q.set_progress(job.id, value)
        await asyncio.sleep(0.1)
        await q.complete(job.id, "w1", JobResult(b"v", b"t"))
        await asyncio.wait_for(watcher, 2)
        assert seen == [("queued", 0), ("in_progress", 0), ("in_progress", 25),
                        ("in_progress", 50), ("completed", 100)]

    async def test_expired_lease_is_reclaimed(self, make_queue):
        events: list[str] = []
        q = make_queue(lease_seconds=0.3, on_event=events.append)
        job = (await q.submit(make_job()))[0]
        await q.claim("w1", timeout=0.2)
        await asyncio.sleep(0.4)  # w1 stops heartbeating
        taken = await q.claim("w2", timeout=1.0)
        assert (taken.id, taken.attempts) == (job.id, 2)
        assert events == ["reclaimed"]
        assert not await q.heartbeat(job.id, "w1")  # w1 learns it lost the job
        await q.complete(job.id, "w1", JobResult(b"stale", b"stale"))
        await q.complete(job.id, "w2", JobResult(b"mp4", b"png"))
        assert await q.get_content(job.id, "video") == b"mp4"
        assert (await q.counters())["reclaimed"] == 1

    async def test_heartbeats_keep_a_long_job(self, make_queue):
        q = make_queue(lease_seconds=0.3)
        job = (await q.submit(make_job()))[0]
        await q.claim("w1", timeout=0.2)
        for _ in range(8):  # 0.8 s: far longer than the lease
            await asyncio.sleep(0.1)
            assert await q.heartbeat(job.id, "w1")
        assert await q.claim("w2", timeout=0.2) is None
        await q.complete(job.id, "w1", JobResult(b"v", b"t"))
        assert (await q.get(job.id)).status == "completed"

    async def test_lost_workers_use_their_own_budget_not_the_jobs_attempts(self, make_queue):
        """A worker dying costs the job nothing of max_attempts (D12); only max_lost_leases
        deaths in a row of its workers end it."""
        events: list[str] = []
        q = make_queue(lease_seconds=0.2, max_attempts=1, max_lost_leases=1, on_event=events.append)
        job = (await q.submit(make_job()))[0]
        await q.claim("w1", timeout=0.2)
        await asyncio.sleep(0.3)
        again = await q.claim("w2", timeout=0.5)  # reclaimed: max_attempts=1 is not used up
        assert again is not None and again.id == job.id and again.lost_leases == 1
        await asyncio.sleep(0.3)
        assert await q.claim("w3", timeout=0.5) is None  # the second death is one too many
        dead = await q.get(job.id)
        assert dead.status == "failed" and dead.error["code"] == RETRIES_EXHAUSTED
        assert WORKER_LOST in dead.error["message"] or "workers died" in dead.error["message"]
        assert events == ["reclaimed", "dead"]

    async def test_a_job_error_after_a_lost_worker_still_has_its_attempts(self, make_queue):
        q = make_queue(lease_seconds=0.2, max_attempts=2)
        job = (await q.submit(make_job()))[0]
        await q.claim("w1", timeout=0.2)
        await asyncio.sleep(0.3)
        await q.claim("w2", timeout=0.5)  # w1 died: reclaimed
        await q.fail(job.id, "w2", "generation_error", "flaky")
        assert (await q.get(job.id)).status == "queued"  # one own error of two allowed
        await q.claim("w2", timeout=0.5)
        await q.fail(job.id, "w2", "generation_error", "flaky")
        assert (await q.get(job.id)).status == "failed"

    async def test_a_job_past_its_deadline_expires_at_claim_and_never_runs(self, make_queue):
        import time as _time
        from dataclasses import replace as _replace

        events: list[str] = []
        q = make_queue(on_event=events.append)
        late = (await q.submit(_replace(make_job(), deadline_at=_time.time() - 1)))[0]
        fine = (await q.submit(_replace(make_job(), deadline_at=_time.time() + 60)))[0]
        claimed = await q.claim("w1", timeout=0.5)
        assert claimed is not None and claimed.id == fine.id  # the late one was skipped
        expired = await q.get(late.id)
        assert expired.status == "expired" and expired.attempts == 0 and expired.expires_at is not None
        assert events == ["expired"] and (await q.counters())["expired"] == 1  # counted once, for metrics
        await q.complete(fine.id, "w1", JobResult(b"v", b"t", truncated={"steps_done": 3, "steps": 12}))
        assert (await q.get(fine.id)).truncated == {"steps_done": 3, "steps": 12}

    async def test_list_newest_first_in_pages(self, make_queue):
        q = make_queue()
        ids = [(await q.submit(make_job()))[0].id for _ in range(5)]
        page, more = await q.list(limit=2)
        assert [j.id for j in page] == ids[:2:-1] and more
        page, more = await q.list(after=page[-1].id, limit=2)
        assert [j.id for j in page] == [ids[2], ids[1]] and more
        page, more = await q.list(after=page[-1].id, limit=2)
        assert [j.id for j in page] == [ids[0]] and not more

    async def test_previews_are_kept_in_order_and_wake_watchers(self, make_queue):
        q = make_queue()
        job, _ = await q.submit(make_job())
        await q.claim("w1", timeout=0.2)
        seen = []

        async def watch():
            async for j in q.watch(job.id, poll_interval=0.02):
                seen.append(j.previews)
                if j.previews == 3:
                    return

        watcher = asyncio.create_task(watch())
        await asyncio.sleep(0.05)
        await q.add_previews(job.id, [{"step": 1, "steps": 3, "decided": 0.4, "image": "data:,a"}])
        await q.add_previews(job.id, [{"step": 2, "steps": 3, "decided": 0.8, "image": "data:,b"},
                                      {"step": 3, "steps": 3, "decided": 1.0, "image": "data:,c"}])
        await asyncio.wait_for(watcher, 5)
        assert seen[-1] == 3 and (await q.get(job.id)).previews == 3
        assert [p["step"] for p in await q.get_previews(job.id)] == [1, 2, 3]
        assert [p["image"] for p in await q.get_previews(job.id, 2)] == ["data:,c"]
        await q.complete(job.id, "w1", JobResult(b"v", b"t"))
        await q.add_previews(job.id, [{"step": 4, "steps": 3, "decided": 1.0, "image": "data:,late"}])
        assert len(await q.get_previews(job.id)) == 3  # a finished job takes no more
        assert await q.delete(job.id) and await q.get_previews(job.id) == []

    async def test_checkpoints_are_the_owners_and_end_with_the_job(self, make_queue):
        q = make_queue()
        job, _ = await q.submit(make_job())
        await q.claim("w1", timeout=0.2)
        await q.save_checkpoint(job.id, "w1", b"step 3")
        await q.save_checkpoint(job.id, "w2", b"not mine")
        assert await q.get_checkpoint(job.id) == b"step 3"
        await q.save_checkpoint(job.id, "w1", b"step 4")
        assert await q.get_checkpoint(job.id) == b"step 4"
        await q.complete(job.id, "w1", JobResult(b"v", b"t"))
        assert await q.get_checkpoint(job.id) is None

    async def test_the_request_type_round_trips_through_the_stored_record(self, make_queue):
        from server.request import Mask, Size
        from server.samplers import SamplerOptions

        q = make_queue()
        request = video_request(task="outpainting", size=Size(64, 48), seed=2**40, num_frames=24,
                                mask=Mask(box=((0.1, 0.2, 0.6, 0.9),) * 24), priority="high", output_format="gif",
                                sampler=SamplerOptions(method="maskgit", steps=7, temperature=0.7, top_k=5),
                                deadline_seconds=12.5, previews=True, input_video_id="video_x")
        job, _ = await q.submit(Job(id="video_rt", model="demo", request=request))
        stored = await q.get(job.id)
        assert stored.request == request and isinstance(stored.request.size, Size)
        assert (stored.task, stored.size, stored.priority) == ("outpainting", "64x48", "high")
