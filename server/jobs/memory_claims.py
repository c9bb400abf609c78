"""The embedded queue's worker side: claims, leases and reclaims, progress, outcomes, decoding
checkpoints, previews, and the webhook outbox's leases (`server/webhooks.py`). `MemoryQueue`
(memory.py) holds the state these methods work on and adds the API side, as `RedisQueue` adds
its API side to `RedisClaims`."""
from __future__ import annotations

import asyncio
import copy
import time

from . import states
from .base import PRIORITIES, RETRIES_EXHAUSTED, Job, JobResult
from .webhooks import Delivery, record_outcome


class MemoryClaims:
    """Mixed into MemoryQueue, whose __init__ sets the state used here (_jobs, _waiting, _owner,
    _lease_until, _checkpoints, _previews, _outbox, store...)."""

    # --- worker side ----------------------------------------------------------------------------
    async def claim(self, worker_id: str, timeout: float = 1.0) -> Job | None:
        deadline = time.monotonic() + timeout
        while True:
            self._purge_expired()
            job = self._reclaim_one(worker_id) or self._take_next(worker_id)
            if job is not None:
                await self._notify()
                if job.status == "in_progress":
                    return self._out(job)
                continue  # the reclaimed job ended (dead or canceled); look again
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            # Wake for new jobs at once, and now and then to notice expired leases.
            await self._wait_change(min(remaining, max(0.05, self.lease_seconds / 4)))

    def _take_next(self, worker_id: str) -> Job | None:
        for priority in PRIORITIES:
            waiting = self._waiting[priority]
            if waiting:
                job_id, _ = waiting.popitem(last=False)
                job = states.start_or_expire(self._jobs[job_id], time.time(), self.ttl)
                self._store(job)
                if job.status == "in_progress":
                    self._lease(job_id, worker_id)
                else:
                    self._event("expired")
                return job  # an expired one: the caller looks again
        return None

    def _reclaim_one(self, worker_id: str) -> Job | None:
        now = time.monotonic()
        for job_id, until in list(self._lease_until.items()):
            if until > now:
                continue
            lost = self._owner.get(job_id, "?")
            job = states.reclaim(self._jobs[job_id], lost, self.max_lost_leases, time.time(), self.ttl)
            self._store(job)
            if job.status == "in_progress":
                self._lease(job_id, worker_id)
                self._event("reclaimed")
            elif job.error and job.error["code"] == RETRIES_EXHAUSTED:
                self._event("dead")
            return job
        return None

    def _lease(self, job_id: str, worker_id: str) -> None:
        self._owner[job_id] = worker_id
        self._lease_until[job_id] = time.monotonic() + self.lease_seconds

    async def heartbeat(self, job_id: str, worker_id: str) -> bool:
        if self._owns(job_id, worker_id) is None:
            return False
        self._lease(job_id, worker_id)
        return True

    async def set_progress(self, job_id: str, progress: int) -> None:
        job = self._jobs.get(job_id)
        changed = states.raise_progress(job, progress) if job else None
        if changed is not None:
            self._store(changed)
            await self._notify()

    async def complete(self, job_id: str, worker_id: str, result: JobResult) -> None:
        job = self._owns(job_id, worker_id)
        if job is None:
            return  # canceled, deleted or taken over meanwhile: drop the result
        for variant, data in result.contents().items():  # the bytes first: a completed job always has them
            if self.store is not None:
                await asyncio.to_thread(self.store.save_content, job_id, variant, data)
            else:
                self._content[(job_id, variant)] = data
        self._store(states.finish(job, "completed", time.time(), self.ttl, truncated=result.truncated))
        await self._notify()

    async def fail(self, job_id: str, worker_id: str, code: str, message: str,
                   retryable: bool = True) -> None:
        job = self._owns(job_id, worker_id)
        if job is None:
            return
        changed = states.fail(job, code, message, retryable, self.max_attempts, time.time(), self.ttl)
        self._store(changed)
        if changed.status == "queued":
            self._enqueue(changed)  # back of its priority's line
            self._event("retried")
        elif changed.error and changed.error["code"] == RETRIES_EXHAUSTED:
            self._event("dead")
        await self._notify()

    async def finish_canceled(self, job_id: str, worker_id: str) -> None:
        job = self._owns(job_id, worker_id)
        if job is None:
            return
        self._store(states.finish(job, "canceled", time.time(), self.ttl))
        await self._notify()

    async def save_checkpoint(self, job_id: str, worker_id: str, data: bytes) -> None:
        if self._owns(job_id, worker_id) is None:
            return
        self._checkpoints[job_id] = data
        if self.store is not None:
            await asyncio.to_thread(self.store.put_file, "checkpoints", job_id, data)

    async def get_checkpoint(self, job_id: str) -> bytes | None:
        job = self._jobs.get(job_id)
        if job is None or job.terminal:
            return None
        if job_id not in self._checkpoints and self.store is not None:  # kept by the process before a restart
            return await asyncio.to_thread(self.store.read_file, "checkpoints", job_id)
        return self._checkpoints.get(job_id)

    async def add_previews(self, job_id: str, previews: list[dict]) -> None:
        job = self._jobs.get(job_id)
        if job is None or job.terminal or not previews:
            return
        self._previews.setdefault(job_id, []).extend(copy.deepcopy(previews))
        job = copy.deepcopy(job)
        job.previews += len(previews)
        self._store(job)
        await self._notify()

    # --- webhook outbox (server/webhooks.py) --------------------------------------------------
    async def webhooks_due(self, limit: int, lease_seconds: float) -> list[Delivery]:
        now = time.time()
        due = sorted((at, d.id) for d, at in self._outbox.values() if at <= now)[:limit]
        taken = []
        for _, delivery_id in due:
            delivery, _ = self._outbox[delivery_id]
            delivery.attempts += 1  # counted when taken, as RedisOutbox does
            self._outbox[delivery_id] = (delivery, now + lease_seconds)
            taken.append(copy.deepcopy(delivery))
        return taken

    async def webhook_retry(self, delivery: Delivery, at: float) -> None:
        if delivery.id in self._outbox:
            self._outbox[delivery.id] = (copy.deepcopy(delivery), at)

    async def webhook_finished(self, delivery: Delivery, delivered: bool, detail: str) -> None:
        if self._outbox.pop(delivery.id, None) is None:
            return
        job = self._jobs.get(delivery.job_id)
        if job is not None:
            job = copy.deepcopy(job)
            record_outcome(job, delivery, delivered, detail, time.time())
            self._store(job)
            await self._notify()
