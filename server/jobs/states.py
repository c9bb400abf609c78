"""Job state transitions as pure functions: the one place that says what each event does to a job.

Both queues (`memory.py`, `redis.py`) call these and only add storage around them, so they
behave alike, and tests can check the rules without a store. Each function returns a new Job
and leaves its argument alone.

    queued -> in_progress -> completed | failed | canceled
                 |  ^
                 v  |  (a retryable failure with attempts left goes back to queued)
               queued
"""
from __future__ import annotations

import copy

from .base import RETRIES_EXHAUSTED, TERMINAL, WORKER_LOST, Job


def _copy(job: Job) -> Job:
    return copy.deepcopy(job)


def past_deadline(job: Job, now: float) -> bool:
    return job.deadline_at is not None and now >= job.deadline_at


def start_or_expire(job: Job, now: float, ttl: float) -> Job:
    """A worker takes a queued job: it starts, unless its deadline passed while it waited (then it
    ends `expired` and never runs)."""
    return finish(job, "expired", now, ttl) if past_deadline(job, now) else start(job, now)


def start(job: Job, now: float) -> Job:
    """A worker begins an attempt. `started_at` is the start of the current attempt."""
    job = _copy(job)
    job.status = "in_progress"
    job.attempts += 1
    job.started_at = now
    return job


def finish(job: Job, status: str, now: float, ttl: float,
           error: dict[str, str] | None = None, truncated: dict[str, int] | None = None) -> Job:
    """The job ends; its record and content expire `ttl` seconds from now. `truncated`: a
    completed job whose deadline cut its decoding short."""
    assert status in TERMINAL, status
    job = _copy(job)
    job.truncated = truncated
    job.status = status
    job.completed_at = now
    job.expires_at = now + ttl
    job.error = error
    if status == "completed":
        job.progress = 100
    return job


def request_cancel(job: Job, now: float, ttl: float) -> Job:
    """Queued jobs end at once; running ones are flagged for their worker; finished ones stay."""
    if job.status == "queued":
        return finish(job, "canceled", now, ttl)
    if job.status == "in_progress" and not job.cancel_requested:
        job = _copy(job)
        job.cancel_requested = True
    return job


def dead_error(attempts: int, last_error: dict[str, str] | None) -> dict[str, str]:
    """The error of a job that failed `attempts` times: it names the last reason."""
    reason = f"{last_error['code']}: {last_error['message']}" if last_error else "unknown"
    return {"code": RETRIES_EXHAUSTED,
            "message": f"gave up after {attempts} attempts; last error: {reason}"}


def fail(job: Job, code: str, message: str, retryable: bool, max_attempts: int,
         now: float, ttl: float) -> Job:
    """An attempt failed. Retryable failures with attempts left go back to the queue (status
    queued, progress kept so it never goes down); otherwise the job ends failed. A job whose
    cancel was requested ends canceled instead of being retried."""
    error = {"code": code, "message": message}
    if not retryable:
        return finish(job, "failed", now, ttl, error)
    if job.cancel_requested:
        return finish(job, "canceled", now, ttl)
    if job.attempts - job.lost_leases >= max_attempts:  # only the job's own failures count here
        return finish(job, "failed", now, ttl, dead_error(job.attempts - job.lost_leases, error))
    job = _copy(job)
    job.status = "queued"
    job.started_at = None
    return job


def worker_lost(worker_id: str) -> dict[str, str]:
    return {"code": WORKER_LOST,
            "message": f"worker {worker_id} stopped heartbeating; its lease expired"}


def reclaim(job: Job, lost_worker: str, max_lost_leases: int, now: float, ttl: float) -> Job:
    """Another worker takes over a running job whose worker stopped heartbeating. A worker dying
    is not the job's fault: it uses the separate budget `max_lost_leases` (infrastructure
    retries), never the job's `max_attempts`. With that budget left the job starts again on the
    new worker, else it dies."""
    job = _lose_lease(job, max_lost_leases, now, ttl,
                      f"workers died holding it; last: {worker_lost(lost_worker)['message']}")
    return job if job.terminal else start(job, now)


def requeue(job: Job, max_lost_leases: int, now: float, ttl: float) -> Job:
    """A running job whose process stopped (the embedded queue, restarted): it waits again, from
    the start of the attempt (or its checkpoint), unless it was being canceled. Its progress stays
    (never backwards). The process dying is the infrastructure's fault, as a lost lease is: it
    counts against `max_lost_leases`, never the job's `max_attempts` (a job that takes its
    process down every time still ends, once that budget is spent)."""
    job = _lose_lease(job, max_lost_leases, now, ttl, "attempts ended with their process (server restarts)")
    if not job.terminal:
        job.status = "queued"
    return job


def _lose_lease(job: Job, max_lost_leases: int, now: float, ttl: float, why: str) -> Job:
    """A running job lost its worker (`reclaim`) or its process (`requeue`): it ends canceled if
    that was asked, and failed (RETRIES_EXHAUSTED: "gave up after N <why>") once the lost leases
    pass `max_lost_leases`; otherwise a copy with one more lost lease, for the caller to restart."""
    if job.cancel_requested:
        return finish(job, "canceled", now, ttl)
    job = _copy(job)
    job.lost_leases += 1
    if job.lost_leases > max_lost_leases:
        return finish(job, "failed", now, ttl, {"code": RETRIES_EXHAUSTED,
                                                "message": f"gave up after {job.lost_leases} {why}"})
    return job


def raise_progress(job: Job, percent: int) -> Job | None:
    """Progress only rises, only while running, and stays below 100 until the job completes.
    None when nothing changes."""
    percent = max(0, min(99, int(percent)))
    if job.status != "in_progress" or percent <= job.progress:
        return None
    job = _copy(job)
    job.progress = percent
    return job
