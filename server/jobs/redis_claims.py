"""The worker side of the Redis job queue: `claim` (XREADGROUP on the priority streams, high
first), leases renewed by `heartbeat`, reclaim of entries whose lease lapsed (XPENDING +
XCLAIM, bounded attempts, then the dead letter), progress, and finishing a job (`complete`,
`fail`, `finish_canceled`). The design is described in `redis.py`."""
from __future__ import annotations

import time

from redis.exceptions import ResponseError

from . import states
from .base import PRIORITIES, Job, JobResult
from .redis_outbox import RedisOutbox
from .redis_store import GROUP, MAX_BLOCK_SECONDS, RANK_SPAN, RECLAIM_PAGE, _end_event, _ms, _text, log


class RedisClaims(RedisOutbox):
    """What workers call."""

    async def claim(self, worker_id: str, timeout: float = 1.0) -> Job | None:
        await self._ready()
        try:
            return await self._claim(worker_id, timeout)
        except ResponseError as exc:
            if "NOGROUP" not in str(exc):
                raise
            # Redis lost its data (no AOF?): recreate the groups; the caller simply claims again.
            log.error("consumer group missing; recreating it (was Redis restarted without its AOF?)")
            self._groups_ready = False
            return None

    async def _claim(self, worker_id: str, timeout: float) -> Job | None:
        deadline = time.monotonic() + timeout
        while True:
            now = time.monotonic()
            if now >= self._next_sweep:
                self._next_sweep = now + self.results_sweep_seconds
                await self.purge_results()
                await self._trim_index()
            if now >= self._next_reclaim:
                job = await self._reclaim(worker_id)
                if job is not None:
                    return job
            remaining = min(deadline, self._next_reclaim) - time.monotonic()
            entry = await self._read(worker_id, min(MAX_BLOCK_SECONDS, max(0.0, remaining)))
            if entry is not None:
                job = await self._start(*entry, worker_id)
                if job is not None:
                    return job
                continue  # a canceled or deleted job's entry: look again
            if time.monotonic() >= deadline:
                return None

    async def _read(self, worker_id: str, block: float) -> tuple[str, str, str] | None:
        """The next undelivered entry, high priority first: one non-blocking read per stream,
        then one blocking read on all three (rarely it returns several; the rest wait here)."""
        if self._prefetched:
            return self._prefetched.pop(0)
        for priority, stream in self._streams.items():
            found = self._entries_of(await self.r.xreadgroup(GROUP, worker_id, {stream: ">"}, count=1))
            if found:
                return found[0]
        if block <= 0:
            return None
        reply = await self.r.xreadgroup(GROUP, worker_id, {s: ">" for s in self._streams.values()},
                                        count=1, block=_ms(block))
        found = sorted(self._entries_of(reply), key=lambda e: PRIORITIES.index(e[0]))
        self._prefetched += found[1:]
        return found[0] if found else None

    def _entries_of(self, reply) -> list[tuple[str, str, str]]:
        """(priority, entry id, job id) for each entry of an XREADGROUP reply (RESP2 shape)."""
        return [(self._priority_of[stream], _text(entry_id), _text(fields[b"job_id"]))
                for stream, entries in (reply or []) for entry_id, fields in entries]

    async def _start(self, priority: str, entry_id: str, job_id: str, worker_id: str) -> Job | None:
        """Begins a freshly delivered entry: the job becomes in_progress under our lease."""
        key, stream = self._key("job", job_id), self._streams[priority]

        async def body(pipe):
            raw = await pipe.get(key)
            job, meta = self._load(raw) if raw is not None else (None, {})
            if job is not None and job.status == "in_progress" and \
                    meta.get("_entry") == [priority, entry_id] and meta.get("_worker") == worker_id:
                return job, None  # a redo after a lost reply: we already started it
            pipe.multi()
            if job is None or job.status != "queued":  # canceled or deleted while waiting
                pipe.xack(stream, GROUP, entry_id)
                pipe.xdel(stream, entry_id)
                pipe.zrem(self._queued, job_id)
                return None, None
            job = states.start_or_expire(job, time.time(), self.ttl)
            if job.terminal:  # its deadline passed while it waited: it never runs
                self._finish_writes(pipe, job, {**meta, "_entry": [priority, entry_id]})
                return None, _end_event(job)
            self._put(pipe, job, {**meta, "_worker": worker_id, "_entry": [priority, entry_id]})
            pipe.set(self._key("lease", job_id), worker_id, px=_ms(self.lease_seconds))
            pipe.zrem(self._queued, job_id)
            return job, None

        job, event = await self._transact([key], body)
        if job is not None:
            self._entries[job_id] = (priority, entry_id)
        self._event(event)
        return job

    async def _reclaim(self, worker_id: str) -> Job | None:
        """Takes over one pending entry whose lease expired. Entries delivered less than a
        lease ago are skipped by XPENDING's IDLE filter (their lease cannot have lapsed yet);
        the rest are pages of long-running jobs, checked a page at a time."""
        self._next_reclaim = time.monotonic() + max(0.1, self.lease_seconds / 2)
        for priority, stream in self._streams.items():
            start = "-"
            while True:
                page = await self.r.xpending_range(stream, GROUP, start, "+", RECLAIM_PAGE,
                                                   idle=_ms(self.lease_seconds))
                if not page:
                    break
                ids = [_text(item["message_id"]) for item in page]
                async with self.r.pipeline(transaction=False) as pipe:
                    for entry_id in ids:
                        pipe.xrange(stream, entry_id, entry_id)
                    found = await pipe.execute()
                job_ids = [_text(e[0][1][b"job_id"]) if e else None for e in found]
                async with self.r.pipeline(transaction=False) as pipe:
                    for job_id in job_ids:
                        pipe.exists(self._key("lease", job_id or "-"))
                    alive = await pipe.execute()
                for item, entry_id, job_id, live in zip(page, ids, job_ids, alive):
                    if job_id is None:  # deleted while pending: just forget it
                        await self.r.xack(stream, GROUP, entry_id)
                    elif not live:
                        job = await self._take_over(priority, entry_id, job_id,
                                                    _text(item["consumer"]), worker_id)
                        if job is not None:
                            self._next_reclaim = 0.0  # there may be more: look again soon
                            return job
                if len(page) < RECLAIM_PAGE:
                    break
                start = f"({ids[-1]}"
        return None

    async def _take_over(self, priority: str, entry_id: str, job_id: str, old_worker: str,
                         worker_id: str) -> Job | None:
        stream = self._streams[priority]
        key, lease = self._key("job", job_id), self._key("lease", job_id)

        async def body(pipe):
            if await pipe.exists(lease):
                return None, None  # its worker is alive, however long the job runs
            raw = await pipe.get(key)
            job, meta = self._load(raw) if raw is not None else (None, {})
            pipe.multi()
            if job is None or job.terminal:
                pipe.xack(stream, GROUP, entry_id)
                pipe.xdel(stream, entry_id)
                pipe.zrem(self._queued, job_id)
                return None, None
            now = time.time()
            if job.status == "queued":  # its claimer died before starting it: no attempt lost
                changed, event = states.start_or_expire(job, now, self.ttl), None
            else:
                lost = meta.get("_worker") or old_worker
                changed = states.reclaim(job, lost, self.max_lost_leases, now, self.ttl)
                meta["_last_error"] = states.worker_lost(lost)
                event = "reclaimed" if changed.status == "in_progress" else None
            pipe.xclaim(stream, GROUP, worker_id, 0, [entry_id], justid=True)
            meta["_entry"] = [priority, entry_id]
            if changed.terminal:
                self._finish_writes(pipe, changed, meta)  # counts a dead or expired job
                return None, _end_event(changed)
            self._put(pipe, changed, {**meta, "_worker": worker_id})
            pipe.set(lease, worker_id, px=_ms(self.lease_seconds))
            pipe.zrem(self._queued, job_id)
            if event:
                pipe.hincrby(self.prefix + "counters", event, 1)
            return changed, event

        job, event = await self._transact([key, lease], body)
        if job is not None:
            self._entries[job_id] = (priority, entry_id)
            log.info("job reclaimed job_id=%s from_worker=%s worker_id=%s attempt=%d",
                     job_id, old_worker, worker_id, job.attempts)
        elif event == "dead":
            log.warning("job dead job_id=%s after lost worker %s", job_id, old_worker)
        self._event(event)
        return job

    async def _owned(self, reader, job_id: str, worker_id: str) -> tuple[Job, dict] | None:
        """The job if it is running under this worker (`reader`: a watching pipe or the client)."""
        raw = await reader.get(self._key("job", job_id))
        if raw is None:
            return None
        job, meta = self._load(raw)
        if job.status != "in_progress" or meta.get("_worker") != worker_id:
            return None
        return job, meta

    async def save_checkpoint(self, job_id: str, worker_id: str, data: bytes) -> None:
        async def body(pipe):
            if await self._owned(pipe, job_id, worker_id) is None:
                return
            pipe.multi()
            pipe.set(self._key("checkpoint", job_id), data, px=_ms(self.ttl))

        await self._transact([self._key("job", job_id)], body)

    async def get_checkpoint(self, job_id: str) -> bytes | None:
        return await self.r.get(self._key("checkpoint", job_id))

    async def heartbeat(self, job_id: str, worker_id: str) -> bool:
        async def body(pipe):
            if await self._owned(pipe, job_id, worker_id) is None:
                return False
            pipe.multi()
            pipe.set(self._key("lease", job_id), worker_id, px=_ms(self.lease_seconds))
            return True

        return await self._transact([self._key("job", job_id)], body)

    async def set_progress(self, job_id: str, progress: int) -> None:
        async def body(pipe):
            raw = await pipe.get(self._key("job", job_id))
            if raw is None:
                return
            job, meta = self._load(raw)
            changed = states.raise_progress(job, progress)
            if changed is not None:
                pipe.multi()
                self._put(pipe, changed, meta)

        await self._transact([self._key("job", job_id)], body)

    async def complete(self, job_id: str, worker_id: str, result: JobResult) -> None:
        if await self._owned(self.r, job_id, worker_id) is None:
            await self._drop_entry(job_id)
            return  # canceled, deleted or taken over meanwhile: drop the result
        # Content first: a job is never completed without its bytes in place.
        for variant, data in result.contents().items():
            await self._store_content(job_id, variant, data)

        async def body(pipe):
            owned = await self._owned(pipe, job_id, worker_id)
            if owned is None:
                return False
            job, meta = owned
            pipe.multi()
            self._finish_writes(pipe, states.finish(job, "completed", time.time(), self.ttl, truncated=result.truncated), meta)
            return True

        await self._transact([self._key("job", job_id)], body)
        await self._drop_entry(job_id)

    async def fail(self, job_id: str, worker_id: str, code: str, message: str,
                   retryable: bool = True) -> None:
        key = self._key("job", job_id)

        async def body(pipe):
            owned = await self._owned(pipe, job_id, worker_id)
            if owned is None:
                return None
            job, meta = owned
            changed = states.fail(job, code, message, retryable, self.max_attempts,
                                  time.time(), self.ttl)
            meta["_last_error"] = {"code": code, "message": message}
            if changed.status != "queued":
                pipe.multi()
                self._finish_writes(pipe, changed, meta)
                return _end_event(changed)
            seq = await pipe.incr(self.prefix + "seq")
            pipe.multi()
            priority, entry_id = meta["_entry"]
            stream = self._streams[priority]
            pipe.xack(stream, GROUP, entry_id)
            pipe.xdel(stream, entry_id)
            pipe.delete(self._key("lease", job_id))
            pipe.xadd(self._streams[changed.priority], {"job_id": job_id})  # back of the line
            pipe.zadd(self._queued, {job_id: PRIORITIES.index(changed.priority) * RANK_SPAN + seq})
            self._put(pipe, changed, {**meta, "_worker": None, "_entry": None})
            pipe.hincrby(self.prefix + "counters", "retried", 1)
            return "retried"

        event = await self._transact([key], body)
        await self._drop_entry(job_id)
        self._event(event)

    async def finish_canceled(self, job_id: str, worker_id: str) -> None:
        async def body(pipe):
            owned = await self._owned(pipe, job_id, worker_id)
            if owned is None:
                return
            job, meta = owned
            pipe.multi()
            self._finish_writes(pipe, states.finish(job, "canceled", time.time(), self.ttl), meta)

        await self._transact([self._key("job", job_id)], body)
        await self._drop_entry(job_id)
