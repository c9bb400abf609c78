"""The embedded queue against the shared JobQueue contract, plus the pure state rules."""
from __future__ import annotations

import pytest
from jobs_contract import QueueContract, make_job

from server.jobs import states
from server.jobs.memory import MemoryQueue
from server.jobs.base import JobResult


@pytest.fixture
def make_queue():
    def make(**limits) -> MemoryQueue:
        return MemoryQueue(**{"job_ttl_seconds": 3600, **limits})

    return make


class TestMemoryQueue(QueueContract):
    pass


class TestMemoryQueueWithLocalStore(QueueContract):
    """The same contract with the on-disk store (what `kinetoscope serve` uses by default)."""

    @pytest.fixture
    def make_queue(self, tmp_path):
        from server.jobs.local_store import LocalStore

        def make(**limits) -> MemoryQueue:
            return MemoryQueue(**{"job_ttl_seconds": 3600, **limits}, store=LocalStore(tmp_path / "store"))

        return make


# --- the local store: a restarted process keeps its jobs ------------------------------------------

def store_queue(path, **limits) -> MemoryQueue:
    from server.jobs.local_store import LocalStore

    return MemoryQueue(**{"job_ttl_seconds": 3600, **limits}, store=LocalStore(path))


async def test_a_restart_keeps_finished_jobs_and_their_content(tmp_path):
    first = store_queue(tmp_path)
    done, _ = await first.submit(make_job(job_id="video_a"), b"input bytes", idempotency_key="k1")
    claimed = await first.claim("w1", timeout=0.1)
    await first.complete(claimed.id, "w1", JobResult(b"mp4", b"png", b"zip"))
    assert await first.get_input("video_a") is None  # inputs are kept only until the job ends
    await first.close()

    second = store_queue(tmp_path)
    job = await second.get("video_a")
    assert job.status == "completed" and job.progress == 100
    assert [await second.get_content("video_a", v) for v in ("video", "thumbnail", "frames")] == [b"mp4", b"png", b"zip"]
    again, created = await second.submit(make_job(job_id="video_other"), idempotency_key="k1")
    assert not created and again.id == "video_a"  # the idempotency key survived too
    assert await second.delete("video_a")
    await second.close()
    third = store_queue(tmp_path)
    assert await third.get("video_a") is None and await third.get_content("video_a", "video") is None
    assert not list((tmp_path / "results").iterdir())


async def test_a_restart_reruns_the_running_job_first_then_the_queued_ones(tmp_path):
    first = store_queue(tmp_path)
    for name in ("video_1", "video_2", "video_3"):
        await first.submit(make_job(job_id=name), name.encode())
    running = await first.claim("w1", timeout=0.1)
    assert running.id == "video_1"
    await first.set_progress("video_1", 40)
    await first.close()  # the process dies while video_1 runs

    second = store_queue(tmp_path)
    job = await second.get("video_1")
    assert job.status == "queued" and job.progress == 40  # progress never goes backwards
    order = [(await second.claim("w2", timeout=0.1)).id for _ in range(3)]
    assert order == ["video_1", "video_2", "video_3"]
    assert await second.get_input("video_2") == b"video_2"  # a queued job's input survived


async def test_expired_jobs_are_not_restored(tmp_path):
    first = store_queue(tmp_path, job_ttl_seconds=0.01)
    await first.submit(make_job(job_id="video_old"))
    claimed = await first.claim("w1", timeout=0.1)
    await first.complete(claimed.id, "w1", JobResult(b"mp4", b"png"))
    await first.close()
    import time

    time.sleep(0.05)
    second = store_queue(tmp_path)
    assert await second.get("video_old") is None


def test_requeue_of_a_job_being_canceled_ends_it():
    job = states.request_cancel(states.start(make_job(), 0.0), 1.0, 5)
    assert states.requeue(job, 10, 2.0, 5).status == "canceled"
    assert states.requeue(states.start(make_job(), 0.0), 10, 2.0, 5).status == "queued"


def test_requeue_after_a_restart_is_a_lost_lease_not_an_attempt():
    """D9: a process that died under a job is the infrastructure's fault, as a dead worker is."""
    job = states.requeue(states.start(make_job(), 0.0), 1, 1.0, 5)
    assert (job.status, job.attempts, job.lost_leases) == ("queued", 1, 1)
    dead = states.requeue(states.start(job, 2.0), 1, 3.0, 5)  # a second restart: one too many
    assert dead.status == "failed" and dead.error["code"] == "retries_exhausted"
    assert "restarts" in dead.error["message"]


async def test_a_restart_costs_the_job_none_of_its_attempts(tmp_path):
    """Before: a server restart mid-job counted as one of the job's own failed attempts, so one
    real error after it left the job dead with max_attempts=2."""
    first = store_queue(tmp_path, max_attempts=2)
    await first.submit(make_job(job_id="video_x"))
    await first.claim("w1", timeout=0.1)
    await first.close()  # the process dies while the job runs

    second = store_queue(tmp_path, max_attempts=2)
    again = await second.claim("w2", timeout=0.1)
    assert (again.attempts, again.lost_leases) == (2, 1)
    await second.fail("video_x", "w2", "generation_error", "RuntimeError: engine crashed")
    assert (await second.get("video_x")).status == "queued"  # its one own failure of two allowed


def test_open_queue_without_redis_is_embedded():
    from server.jobs import open_queue
    from server.settings import Settings

    assert isinstance(open_queue(Settings(redis_url=None)), MemoryQueue)


# --- the pure transitions both queues share ------------------------------------------------------

def test_cancel_flags_running_and_leaves_finished_alone():
    running = states.start(make_job(), now=10.0)
    flagged = states.request_cancel(running, now=11.0, ttl=5)
    assert flagged.status == "in_progress" and flagged.cancel_requested
    assert not running.cancel_requested  # inputs are never modified
    done = states.finish(running, "completed", now=12.0, ttl=5)
    assert states.request_cancel(done, now=13.0, ttl=5) == done


def test_failure_of_a_cancel_requested_job_ends_canceled():
    job = states.request_cancel(states.start(make_job(), 0.0), 1.0, 5)
    assert states.fail(job, "e", "m", True, 3, 2.0, 5).status == "canceled"


def test_reclaim_counts_the_lost_lease_apart_from_the_attempts():
    job = states.start(make_job(), 0.0)
    again = states.reclaim(job, "w1", max_lost_leases=1, now=1.0, ttl=5)
    assert (again.status, again.attempts, again.lost_leases) == ("in_progress", 2, 1)
    dead = states.reclaim(again, "w2", max_lost_leases=1, now=2.0, ttl=5)
    assert dead.status == "failed" and "w2" in dead.error["message"]
    # a job error after a lost lease: the lost one does not count against max_attempts
    assert states.fail(again, "e", "m", True, max_attempts=2, now=3.0, ttl=5).status == "queued"
    assert states.fail(again, "e", "m", True, max_attempts=1, now=3.0, ttl=5).status == "failed"


async def test_a_running_jobs_checkpoint_survives_a_restart_and_goes_when_it_ends(tmp_path):
    first = store_queue(tmp_path)
    await first.submit(make_job(job_id="video_r"))
    claimed = await first.claim("w1", timeout=0.1)
    await first.save_checkpoint(claimed.id, "w1", b"state at step 6")
    await first.save_checkpoint(claimed.id, "not-the-owner", b"stale")  # ignored
    await first.close()  # the process dies with the job running

    second = store_queue(tmp_path)
    again = await second.claim("w2", timeout=0.1)
    assert again.id == "video_r" and again.attempts == 2
    assert await second.get_checkpoint("video_r") == b"state at step 6"  # the new attempt resumes from it
    await second.complete("video_r", "w2", JobResult(b"v", b"t"))
    assert await second.get_checkpoint("video_r") is None
    assert not list((tmp_path / "checkpoints").iterdir())
    await second.close()


async def test_a_restart_that_spends_the_lost_lease_budget_counts_the_job_dead(tmp_path):
    """Review R6: _restore's requeue killed the job (RETRIES_EXHAUSTED) but emitted no `dead`."""
    first = store_queue(tmp_path, max_lost_leases=0)
    await first.submit(make_job(job_id="video_x"))
    await first.claim("w1", timeout=0.1)
    await first.close()  # the process dies while the job runs

    events: list[str] = []
    second = store_queue(tmp_path, max_lost_leases=0, on_event=events.append)
    dead = await second.get("video_x")
    assert dead.status == "failed" and "restarts" in dead.error["message"]
    assert events == ["dead"] and (await second.counters())["dead"] == 1
