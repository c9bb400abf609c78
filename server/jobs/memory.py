"""The embedded job queue: everything in this process's memory, for `make serve` without Redis.

It keeps the Redis queue's semantics (priorities, idempotency, queue limit, leases with
reclaim, bounded retries, TTLs) so the worker loop and the API code are the same for both;
the state rules themselves live in `states.py`. With a `LocalStore` (the `job_store_dir`
setting, on by default) jobs, inputs and results are also written to disk, so a restarted server
still answers for its earlier jobs, runs the ones still queued and re-runs the ones it was running
(from the start); results then live on disk, not in memory. Without one, nothing survives a
restart. A job's input is kept only until the job ends. Expired jobs are removed lazily, on the
next call that touches the queue. As with Redis, the worker side (claims, leases, outcomes,
checkpoints, previews, the webhook outbox) is its own module, `memory_claims.py`.
"""
from __future__ import annotations

import asyncio
import copy
import time
from collections import OrderedDict
from typing import AsyncIterator, Callable

from . import states
from .local_store import LocalStore
from .base import CONTENT_VARIANTS, PRIORITIES, RETRIES_EXHAUSTED, Job, QueueFull, watch_job
from .memory_claims import MemoryClaims
from .webhooks import Delivery, collect

EventCallback = Callable[[str], None]


class MemoryQueue(MemoryClaims):
    """The job store and its API side; the worker side is `MemoryClaims` (memory_claims.py)."""

    def __init__(self, *, max_queue_length: int = 256, job_ttl_seconds: float = 24 * 3600,
                 lease_seconds: float = 15.0, max_attempts: int = 3, max_lost_leases: int = 10,
                 retry_after_seconds: int = 5, on_event: EventCallback | None = None,
                 store: LocalStore | None = None):
        self.max_queue_length = max_queue_length
        self.ttl = job_ttl_seconds
        self.lease_seconds = lease_seconds
        self.max_attempts = max_attempts
        self.max_lost_leases = max_lost_leases
        self.retry_after_seconds = retry_after_seconds
        self.on_event = on_event
        self._jobs: dict[str, Job] = {}
        self._inputs: dict[str, bytes] = {}
        self._content: dict[tuple[str, str], bytes] = {}
        self._waiting = {p: OrderedDict() for p in PRIORITIES}  # FIFO of job ids per priority
        self._idempotency: dict[str, str] = {}  # key -> job id
        self._key_of: dict[str, str] = {}  # job id -> its idempotency key
        self._owner: dict[str, str] = {}  # running job id -> worker id
        self._lease_until: dict[str, float] = {}  # running job id -> monotonic deadline
        self._counters = {"reclaimed": 0, "retried": 0, "dead": 0, "expired": 0}
        self._changed: asyncio.Condition | None = None
        self._previews: dict[str, list[dict]] = {}  # job id -> its previews (in this process only)
        self._checkpoints: dict[str, bytes] = {}  # running job id -> its latest checkpoint (also on disk with a store)
        self._outbox: dict[str, tuple[Delivery, float]] = {}  # webhook deliveries (in this process only) -> due time
        self.store = store
        if store is not None:
            self._restore()

    @classmethod
    def from_settings(cls, settings, on_event: EventCallback | None = None) -> "MemoryQueue":
        return cls(max_queue_length=settings.max_queue_length,
                   job_ttl_seconds=settings.job_ttl_seconds,
                   lease_seconds=settings.lease_seconds, max_attempts=settings.max_attempts,
                   max_lost_leases=settings.max_lost_leases,
                   retry_after_seconds=settings.retry_after_seconds, on_event=on_event,
                   store=LocalStore(settings.job_store_dir) if settings.job_store_dir else None)

    def _restore(self) -> None:
        """The stored jobs, as the last process left them: a job it was running goes back to the
        front of its queue (its worker died with the process), queued ones keep their order."""
        now = time.time()
        running: list[Job] = []
        for job, key in self.store.load():
            if job.expires_at is not None and job.expires_at <= now:
                self.store.delete(job.id)
                continue
            was_running = job.status == "in_progress"
            if was_running:
                job = states.requeue(job, self.max_lost_leases, now, self.ttl)
                self.store.save(job)
                if job.error and job.error["code"] == RETRIES_EXHAUSTED:
                    self._event("dead")  # counted and reported as a reclaim that kills it is
            self._jobs[job.id] = job
            if key is not None:
                self._idempotency[key] = job.id
                self._key_of[job.id] = key
            if job.status == "queued":
                (running.append if was_running else self._enqueue)(job)
        for job in reversed(running):
            self._waiting[job.priority][job.id] = None
            self._waiting[job.priority].move_to_end(job.id, last=False)

    # --- bookkeeping ------------------------------------------------------------------------
    def _condition(self) -> asyncio.Condition:
        # Created on first use so the queue can be built outside a running event loop.
        if self._changed is None:
            self._changed = asyncio.Condition()
        return self._changed

    async def _notify(self) -> None:
        cond = self._condition()
        async with cond:
            cond.notify_all()

    async def _wait_change(self, timeout: float) -> None:
        cond = self._condition()
        async with cond:
            try:
                await asyncio.wait_for(cond.wait(), timeout)
            except asyncio.TimeoutError:
                pass

    def _event(self, name: str) -> None:
        self._counters[name] += 1
        if self.on_event:
            self.on_event(name)

    def _purge_expired(self) -> None:
        now = time.time()
        for job_id in [j.id for j in self._jobs.values()
                       if j.expires_at is not None and j.expires_at <= now]:
            self._drop(job_id)

    def _drop(self, job_id: str) -> None:
        if self.store is not None:
            self.store.delete(job_id)
        self._jobs.pop(job_id, None)
        self._inputs.pop(job_id, None)
        self._previews.pop(job_id, None)
        self._checkpoints.pop(job_id, None)
        for variant in CONTENT_VARIANTS:
            self._content.pop((job_id, variant), None)
        self._owner.pop(job_id, None)
        self._lease_until.pop(job_id, None)
        for waiting in self._waiting.values():
            waiting.pop(job_id, None)
        key = self._key_of.pop(job_id, None)
        if key is not None and self._idempotency.get(key) == job_id:
            del self._idempotency[key]

    def _store(self, job: Job) -> None:
        """Saves a transition (with the webhook deliveries it makes) and keeps the side tables in
        step with the job's status."""
        now = time.time()
        for delivery in collect(job, now):
            self._outbox.setdefault(delivery.id, (delivery, now))
        self._jobs[job.id] = job
        if self.store is not None:
            self.store.save(job)
        if job.terminal:  # its input and checkpoint are needed no more
            self._inputs.pop(job.id, None)
            self._checkpoints.pop(job.id, None)
            if self.store is not None:
                self.store.drop_file("inputs", job.id)
                self.store.drop_file("checkpoints", job.id)
        if job.status != "queued":
            self._waiting[job.priority].pop(job.id, None)
        if job.status != "in_progress":
            self._owner.pop(job.id, None)
            self._lease_until.pop(job.id, None)

    def _enqueue(self, job: Job) -> None:
        self._waiting[job.priority][job.id] = None

    def _owns(self, job_id: str, worker_id: str) -> Job | None:
        job = self._jobs.get(job_id)
        if job is None or job.status != "in_progress" or self._owner.get(job_id) != worker_id:
            return None
        return job

    @staticmethod
    def _out(job: Job | None) -> Job | None:
        return copy.deepcopy(job) if job is not None else None

    # --- API side -----------------------------------------------------------------------------
    async def submit(self, job: Job, input_video: bytes | None = None,
                     idempotency_key: str | None = None) -> tuple[Job, bool]:
        self._purge_expired()
        if idempotency_key is not None:
            existing = self._idempotency.get(idempotency_key)
            if existing in self._jobs:
                return self._out(self._jobs[existing]), False
        if sum(len(w) for w in self._waiting.values()) >= self.max_queue_length:
            raise QueueFull(self.retry_after_seconds)
        job = copy.deepcopy(job)
        job.status, job.progress, job.attempts = "queued", 0, 0
        self._jobs[job.id] = job
        if self.store is not None:  # the input first: a stored queued job always has it
            if input_video is not None:
                self.store.put_file("inputs", job.id, input_video)
            self.store.save(job, idempotency_key)
        elif input_video is not None:
            self._inputs[job.id] = input_video
        if idempotency_key is not None:
            self._idempotency[idempotency_key] = job.id
            self._key_of[job.id] = idempotency_key
        self._enqueue(job)
        await self._notify()
        return self._out(job), True

    async def get(self, job_id: str) -> Job | None:
        self._purge_expired()
        return self._out(self._jobs.get(job_id))

    async def list(self, after: str | None = None, limit: int = 20,
                   where: Callable[[Job], bool] | None = None) -> tuple[list[Job], bool]:
        self._purge_expired()
        ids = sorted((i for i in self._jobs if (after is None or i < after) and (where is None or where(self._jobs[i]))),
                     reverse=True)
        return [self._out(self._jobs[i]) for i in ids[:limit]], len(ids) > limit

    async def queue_position(self, job_id: str) -> int | None:
        self._purge_expired()
        ahead = 0
        for priority in PRIORITIES:
            waiting = self._waiting[priority]
            if job_id in waiting:
                return ahead + list(waiting).index(job_id)
            ahead += len(waiting)
        return None

    async def cancel(self, job_id: str) -> Job | None:
        self._purge_expired()
        job = self._jobs.get(job_id)
        if job is None:
            return None
        changed = states.request_cancel(job, time.time(), self.ttl)
        if changed != job:
            self._store(changed)
            await self._notify()
        return self._out(changed)

    async def delete(self, job_id: str) -> bool:
        self._purge_expired()
        existed = job_id in self._jobs
        self._drop(job_id)
        if existed:
            await self._notify()
        return existed

    async def get_previews(self, job_id: str, after: int = 0) -> list[dict]:
        return copy.deepcopy(self._previews.get(job_id, [])[after:])

    async def get_content(self, job_id: str, variant: str) -> bytes | None:
        self._purge_expired()
        job = self._jobs.get(job_id)
        if job is None or job.status != "completed":
            return None
        if self.store is not None:
            return await asyncio.to_thread(self.store.read_content, job_id, variant)
        return self._content.get((job_id, variant))

    async def get_input(self, job_id: str) -> bytes | None:
        self._purge_expired()
        if self.store is not None:
            return await asyncio.to_thread(self.store.read_file, "inputs", job_id)
        return self._inputs.get(job_id)

    async def watch(self, job_id: str, poll_interval: float = 0.25) -> AsyncIterator[Job]:
        async for job in watch_job(self.get, job_id, lambda: self._wait_change(poll_interval)):
            yield job

    async def ping(self) -> bool:
        return True

    @staticmethod
    def unavailable(exc: BaseException) -> bool:
        return False  # in this process: nothing to be unreachable

    async def depth(self) -> dict[str, int]:
        self._purge_expired()
        return {p: len(self._waiting[p]) for p in PRIORITIES}

    async def counters(self) -> dict[str, int]:
        return dict(self._counters)

    async def close(self) -> None:
        if self.store is not None:
            self.store.close()
