"""The worker loop: claim jobs from a JobQueue, run them, report the outcome.

One loop runs up to `concurrency` jobs at once (they share the engine's step batches). Each
running job has a monitor task that renews its lease every `heartbeat_seconds`, pushes
progress, and polls for a cancel request about every half second. The loop is the same for
the embedded queue and for Redis: it only speaks the JobQueue interface.

`generate(job, input_bytes, on_progress, should_stop)` is the pipeline entry point
(`server.runtime.Runtime.generate`):
- `on_progress(fraction)` is a plain function (0..1), cheap to call at every step;
- `should_stop()` turns true once the job is canceled, deleted or taken over by another
  worker; generate then raises JobCanceled at its next step;
- it returns a JobResult. An InputError (server/errors.py: TaskError, VideoError,
  DeadlineExceeded...) is the job's own fault: the job fails at once with its code and message,
  never retried. Any other exception is ours or the infrastructure's (an engine crash, a store
  outage): the attempt is retried, up to the queue's `max_attempts`. A worker that dies holding
  the job (lost lease) or an embedded server restarted under it costs the job none of those
  attempts (`max_lost_leases`, server/jobs/states.py).
"""
from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Awaitable, Callable

from .resume import Checkpoint
from .settings import Settings
from .jobs.base import InputError, Job, JobCanceled, JobQueue, JobResult

__all__ = ["run_worker", "JobCanceled", "InputError", "Generate"]

log = logging.getLogger("kinetoscope.worker")

Generate = Callable[[Job, "bytes | None", Callable[[float], None], Callable[[], bool]],
                    Awaitable[JobResult]]

RETRY_DELAYS = (0.2, 0.5, 1.0, 2.0, 4.0)  # backoff for queue calls that report an outcome


class _Attempt:
    """What a running job's tasks share: the latest progress and why it should stop."""

    def __init__(self, job: Job):
        self.job = job
        self.progress = job.progress
        self.canceled = job.cancel_requested
        self.lost = False  # the queue says another worker owns this job now, or it is gone
        self.done = False  # generate returned or raised: the monitor stops
        self.previews: list[dict] = []  # published by generate, not yet written to the queue
        self.checkpoint: bytes | None = None  # the latest decoding state, not yet written

    def on_progress(self, fraction: float) -> None:
        self.progress = max(self.progress, int(max(0.0, min(1.0, fraction)) * 100))

    def should_stop(self) -> bool:
        return self.canceled or self.lost

    def on_preview(self, preview: dict) -> None:
        self.previews.append(preview)

    def on_checkpoint(self, data: bytes) -> None:
        self.checkpoint = data

    async def flush_checkpoint(self, queue: JobQueue, worker_id: str) -> None:
        data = self.checkpoint
        if data is not None:
            await queue.save_checkpoint(self.job.id, worker_id, data)
            if self.checkpoint is data:
                self.checkpoint = None

    async def flush_previews(self, queue: JobQueue) -> None:
        """Writes the previews published since the last flush (kept if the write fails)."""
        if self.previews:
            batch = self.previews[:]
            await queue.add_previews(self.job.id, batch)
            del self.previews[:len(batch)]


def _setting(name: str):
    """A timing's default: the settings object's (server/settings.py), the one place limits live."""
    return Settings.model_fields[name].default


async def run_worker(queue: JobQueue, generate: Generate, *, worker_id: str, concurrency: int,
                     heartbeat_seconds: float, stop: asyncio.Event,
                     on_event: Callable[[str], None] | None = None,
                     drain_seconds: float | None = None,
                     claim_wait_seconds: float = _setting("claim_wait_seconds"),
                     cancel_poll_seconds: float = _setting("cancel_poll_seconds"),
                     progress_push_seconds: float = _setting("progress_push_seconds"),
                     resumable: bool = False) -> None:
    """Claims and runs jobs until `stop` is set.

    On stop it claims nothing more and waits for running jobs: all of them when
    `drain_seconds` is None, else that long, after which the rest are abandoned without a
    report (their leases lapse and another worker reclaims them).

    `resumable`: `generate` takes `resume` and `on_checkpoint` (server.runtime.Runtime does): a
    job is checkpointed while it runs, and an attempt after the first resumes from its checkpoint.

    `on_event(name)` is called with "job_started", "job_completed", "job_canceled",
    "job_failed" (an InputError) and "job_error" (any other exception; the queue retries it).
    """
    emit = on_event or (lambda name: None)
    running: set[asyncio.Task] = set()
    log.info("worker started worker_id=%s concurrency=%d", worker_id, concurrency)
    failures = 0
    while not stop.is_set():
        if len(running) >= concurrency:
            await _wait_any(running, stop)
            continue
        try:
            job = await queue.claim(worker_id, timeout=claim_wait_seconds)
            failures = 0
        except Exception as exc:  # the store is unreachable: back off, keep going
            failures += 1
            delay = RETRY_DELAYS[min(failures, len(RETRY_DELAYS)) - 1]
            log.warning("claim failed worker_id=%s error=%r; retrying in %.1f s", worker_id, exc, delay)
            await _sleep_unless(stop, delay)
            continue
        if job is None:
            continue
        task = asyncio.create_task(_run_job(queue, generate, job, worker_id, emit, _Timings(
            heartbeat_seconds, cancel_poll_seconds, progress_push_seconds), resumable))
        running.add(task)
        task.add_done_callback(running.discard)

    if running:
        log.info("worker stopping worker_id=%s waiting_for=%d", worker_id, len(running))
        done, pending = await asyncio.wait(running, timeout=drain_seconds)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)
            log.info("worker abandoned %d jobs for reclaim worker_id=%s", len(pending), worker_id)
    log.info("worker stopped worker_id=%s", worker_id)


async def _wait_any(tasks: set[asyncio.Task], stop: asyncio.Event) -> None:
    stopper = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait([*tasks, stopper], return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopper.cancel()


async def _sleep_unless(stop: asyncio.Event, seconds: float) -> None:
    try:
        await asyncio.wait_for(stop.wait(), seconds)
    except asyncio.TimeoutError:
        pass


@dataclass(frozen=True)
class _Timings:
    heartbeat: float
    cancel_poll: float
    progress_push: float


async def _run_job(queue: JobQueue, generate: Generate, job: Job, worker_id: str,
                   emit: Callable[[str], None], timings: _Timings, resumable: bool = False) -> None:
    attempt = _Attempt(job)
    started = time.monotonic()
    log.info("job started job_id=%s attempt=%d worker_id=%s task=%s",
             job.id, job.attempts, worker_id, job.task)
    emit("job_started")
    monitor = asyncio.create_task(_monitor(queue, attempt, worker_id, timings))
    try:
        input_video = await queue.get_input(job.id)
        # Only a job that asked for previews gets the callback (a generate may not take one).
        extra: dict = {"on_preview": attempt.on_preview} if job.request.previews else {}
        if resumable:
            extra["on_checkpoint"] = attempt.on_checkpoint
            resume = await queue.get_checkpoint(job.id) if job.attempts > 1 else None
            if resume is not None:
                extra["resume"] = resume
                point = Checkpoint.from_bytes(resume)
                log.info("job resumed job_id=%s attempt=%d window=%d step=%d progress=%d", job.id, job.attempts,
                         point.window, point.step, job.progress)
        result = await generate(job, input_video, attempt.on_progress, attempt.should_stop, **extra)
    except JobCanceled:
        outcome = "canceled"
    except InputError as exc:
        outcome, error = "input_error", exc
    except asyncio.CancelledError:
        log.info("job abandoned job_id=%s worker_id=%s (left for reclaim)", job.id, worker_id)
        raise
    except Exception as exc:
        log.exception("job error job_id=%s attempt=%d worker_id=%s", job.id, job.attempts, worker_id)
        outcome, error = "error", exc
    else:
        outcome = "completed"
    finally:
        # The flag as well as the cancel: a client library may turn a cancel that lands inside
        # its own timeout handling into an ordinary error, which the monitor would survive.
        attempt.done = True
        monitor.cancel()
        await asyncio.gather(monitor, return_exceptions=True)

    seconds = time.monotonic() - started
    if attempt.lost and outcome != "completed":
        log.info("job dropped job_id=%s worker_id=%s (canceled, deleted or taken over)", job.id, worker_id)
        return
    if outcome == "completed":
        await _report(lambda _job_id: attempt.flush_previews(queue), job.id)  # every preview before the result
        await _report(queue.complete, job.id, worker_id, result)
        log.info("job completed job_id=%s worker_id=%s seconds=%.2f bytes=%d",
                 job.id, worker_id, seconds, len(result.video))
        emit("job_completed")
    elif outcome == "canceled":
        await _report(queue.finish_canceled, job.id, worker_id)
        log.info("job canceled job_id=%s worker_id=%s seconds=%.2f", job.id, worker_id, seconds)
        emit("job_canceled")
    elif outcome == "input_error":
        await _report(queue.fail, job.id, worker_id, error.code, error.message, retryable=False)
        log.info("job failed job_id=%s code=%s message=%s", job.id, error.code, error.message)
        emit("job_failed")
    else:
        message = f"{type(error).__name__}: {error}"
        await _report(queue.fail, job.id, worker_id, "generation_error", message, retryable=True)
        emit("job_error")


async def _monitor(queue: JobQueue, attempt: _Attempt, worker_id: str, timings: _Timings) -> None:
    """Renews the lease, pushes progress and looks for a cancel request while the job runs."""
    job_id = attempt.job.id
    tick = min(timings.progress_push, timings.heartbeat)
    now = time.monotonic()
    next_beat, next_poll = now + timings.heartbeat, now + timings.cancel_poll
    pushed = attempt.progress
    while not attempt.done:
        await asyncio.sleep(tick)
        now = time.monotonic()
        try:
            if attempt.progress > pushed:
                pushed = attempt.progress
                await queue.set_progress(job_id, pushed)
            await attempt.flush_previews(queue)
            await attempt.flush_checkpoint(queue, worker_id)
            if now >= next_beat:
                next_beat = now + timings.heartbeat
                if not await queue.heartbeat(job_id, worker_id):
                    attempt.lost = True
                    log.warning("job lease lost job_id=%s worker_id=%s", job_id, worker_id)
            if now >= next_poll and not attempt.canceled:
                next_poll = now + timings.cancel_poll
                current = await queue.get(job_id)
                if current is None:
                    attempt.lost = True
                elif current.cancel_requested or current.status == "canceled":
                    attempt.canceled = True
                    log.info("job cancel requested job_id=%s", job_id)
        except Exception as exc:  # a store hiccup: keep the job running, try again next tick
            log.warning("job monitor error job_id=%s error=%r", job_id, exc)


async def _report(method, job_id: str, *args, **kwargs) -> None:
    """Calls a queue method that records an outcome, retrying through short store outages
    (if it still fails, the lease lapses and another worker redoes the job)."""
    for delay in (*RETRY_DELAYS, None):
        try:
            await method(job_id, *args, **kwargs)
            return
        except Exception as exc:
            if delay is None:
                log.error("giving up reporting job_id=%s via %s error=%r", job_id, method.__name__, exc)
                return
            log.warning("reporting job_id=%s via %s failed error=%r; retrying", job_id, method.__name__, exc)
            await asyncio.sleep(delay)
