"""The embedded queue against the shared JobQueue contract, plus the pure state rules."""
from __future__ import annotations

import pytest
from jobs_contract import QueueContract, make_job

from server.jobs import states
from server.jobs.memory import MemoryQueue


@pytest.fixture
def make_queue():
    def make(**limits) -> MemoryQueue:
        return MemoryQueue(**{"job_ttl_seconds": 3600, **limits})

    return make


class TestMemoryQueue(QueueContract):
    pass


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


def test_reclaim_counts_the_lost_attempt():
    job = states.start(make_job(), 0.0)
    again = states.reclaim(job, "w1", max_attempts=2, now=1.0, ttl=5)
    assert (again.status, again.attempts) == ("in_progress", 2)
    dead = states.reclaim(again, "w2", max_attempts=2, now=2.0, ttl=5)
    assert dead.status == "failed" and "w2" in dead.error["message"]
