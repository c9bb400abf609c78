"""The Redis job queue (this file: the API side; `redis_claims.py`: the worker side;
`redis_store.py`: what both share). These three are the only modules that know Redis.

Why Streams and a consumer group. A list popped with BLPOP loses a job the moment a worker
dies holding it. A stream read through a consumer group (XREADGROUP) keeps every delivered
entry in the group's pending entries list (PEL) until the worker acknowledges it (XACK), so a
job that was handed out is never lost: another worker can inspect the PEL (XPENDING) and take
the entry over (XCLAIM). One stream per priority lets `claim` read high before normal before
low, FIFO within each.

Leases, not delivery age, decide when a job is taken over. The worker that starts a job sets
`lease:<id>` with a TTL of `lease_seconds` and renews it every `heartbeat_seconds`; a
reclaimer only takes a pending entry whose lease key has expired, so a 10-minute job with a
live worker is never stolen and a dead worker's job is retried about `lease_seconds` after its
last heartbeat, whatever the job's length. Every takeover counts as an attempt; after
`max_attempts` the job fails with `retries_exhausted` and the last reason and is copied to the
`dead` stream (the dead letter).

Layout (all keys under `prefix`, default "kinetoscope:"):
    stream:<priority>   entries {job_id}, consumer group "workers"
    queued              sorted set of waiting job ids, score = priority rank * 1e13 + sequence:
                        gives queue length (the 429 limit), position (ZRANK) and depth cheaply
    job:<id>            the job as JSON plus private fields (_worker, _entry, _last_error, _idem)
    lease:<id>          the worker id holding the job, with a TTL
    input:<id>, video:<id>, thumbnail:<id>   bytes (results above result_inline_max_bytes go
                        to files in results_dir, a folder every worker and API replica shares)
    idem:<key>          job id for an Idempotency-Key
    jobs                sorted set of all job ids (lexical order = time order) for listing
    dead                dead-letter stream;  counters  hash of reclaimed / retried / dead
Every state change is one optimistic transaction (WATCH the job, decide with the pure rules in
`states.py`, MULTI/EXEC the writes), so a cancel racing a claim or two reclaimers racing each
other cannot both win. Finished jobs and everything they own get a TTL of `job_ttl_seconds`.

Durability. Run Redis with `appendonly yes` and `appendfsync everysec` (at most about a second
of writes lost on a power cut; `always` if even that matters) and `maxmemory-policy
noeviction` (under memory pressure Redis must refuse writes, which the API reports, rather than
silently evict queued jobs or leases).

Metrics: `counters()` reads totals shared by all processes; `on_event(name)` is also called in
the process where the event happened, with "reclaimed", "retried" or "dead".
"""
from __future__ import annotations

import asyncio
import time
from typing import AsyncIterator, Callable

from . import states
from .base import PRIORITIES, Job, QueueFull, watch_job
from .redis_claims import RedisClaims
from .redis_store import EXTENSIONS, RANK_SPAN, _ms, _text

__all__ = ["RedisQueue"]


class RedisQueue(RedisClaims):
    """The job queue on Redis: the API side here (submit, read, list, cancel, delete, results), the
    worker side in `RedisClaims`, previews and the webhook outbox in `RedisOutbox`, the shared plumbing
    in `RedisStore`."""

    async def submit(self, job: Job, input_video: bytes | None = None,
                     idempotency_key: str | None = None) -> tuple[Job, bool]:
        await self._ready()
        idem = self._key("idem", idempotency_key) if idempotency_key is not None else None
        job = Job.from_dict({**job.to_dict(), "status": "queued", "progress": 0, "attempts": 0})

        async def body(pipe):
            if await pipe.exists(self._key("job", job.id)):  # a redo after a lost reply
                return self._load(await pipe.get(self._key("job", job.id)))[0], True
            if idem is not None:
                existing = await pipe.get(idem)
                raw = await pipe.get(self._key("job", _text(existing))) if existing else None
                if raw is not None:
                    return self._load(raw)[0], False
            if await pipe.zcard(self._queued) >= self.max_queue_length:
                raise QueueFull(self.retry_after_seconds)
            seq = await pipe.incr(self.prefix + "seq")
            pipe.multi()
            self._put(pipe, job, {"_idem": idempotency_key})
            pipe.xadd(self._streams[job.priority], {"job_id": job.id})
            pipe.zadd(self._queued, {job.id: PRIORITIES.index(job.priority) * RANK_SPAN + seq})
            pipe.zadd(self._index, {job.id: 0})
            if input_video is not None:
                pipe.set(self._key("input", job.id), input_video)
            if idem is not None:
                # WATCH on the key makes this check-and-set atomic, like SET NX.
                pipe.set(idem, job.id, px=_ms(self.ttl))
            return job, True

        return await self._transact([self._queued] + ([idem] if idem else []), body)

    async def get(self, job_id: str) -> Job | None:
        raw = await self.r.get(self._key("job", job_id))
        return self._load(raw)[0] if raw is not None else None

    async def list(self, after: str | None = None, limit: int = 20,
                   where: Callable[[Job], bool] | None = None) -> tuple[list[Job], bool]:
        jobs: list[Job] = []
        upper = f"({after}" if after else "+"
        while len(jobs) <= limit:
            ids = await self.r.zrevrangebylex(self._index, upper, "-", start=0, num=limit + 1)
            if not ids:
                break
            raws = await self.r.mget([self._key("job", _text(i)) for i in ids])
            gone = [i for i, raw in zip(ids, raws) if raw is None]
            if gone:  # expired or deleted: tidy the index lazily
                await self.r.zrem(self._index, *gone)
            jobs += [job for job in (self._load(raw)[0] for raw in raws if raw is not None) if where is None or where(job)]
            upper = f"({_text(ids[-1])}"
        return jobs[:limit], len(jobs) > limit

    async def queue_position(self, job_id: str) -> int | None:
        return await self.r.zrank(self._queued, job_id)

    async def depth(self) -> dict[str, int]:
        return {p: await self.r.zcount(self._queued, rank * RANK_SPAN, f"({(rank + 1) * RANK_SPAN}")
                for rank, p in enumerate(PRIORITIES)}

    async def cancel(self, job_id: str) -> Job | None:
        key = self._key("job", job_id)

        async def body(pipe):
            raw = await pipe.get(key)
            if raw is None:
                return None
            job, meta = self._load(raw)
            changed = states.request_cancel(job, time.time(), self.ttl)
            if changed != job:
                pipe.multi()
                if changed.terminal:  # it was queued: its stream entry is skipped when read
                    self._finish_writes(pipe, changed, {**meta, "_entry": None})
                else:
                    self._put(pipe, changed, meta)
            return changed

        return await self._transact([key], body)

    async def delete(self, job_id: str) -> bool:
        key = self._key("job", job_id)

        async def body(pipe):
            raw = await pipe.get(key)
            if raw is None:
                return False
            _, meta = self._load(raw)
            pipe.multi()
            pipe.delete(key, *(self._key(k, job_id) for k in ("input", "previews", "checkpoint", *EXTENSIONS, "lease")))
            pipe.zrem(self._queued, job_id)
            pipe.zrem(self._index, job_id)
            if meta.get("_idem"):
                pipe.delete(self._key("idem", meta["_idem"]))
            return True

        existed = await self._transact([key], body)
        if existed and self.results_dir:
            for variant in EXTENSIONS:
                self._file(job_id, variant).unlink(missing_ok=True)
        return existed

    async def get_content(self, job_id: str, variant: str) -> bytes | None:
        job = await self.get(job_id)
        if job is None or job.status != "completed" or variant not in EXTENSIONS:
            return None
        data = await self.r.get(self._key(variant, job_id))
        if data is None and self.results_dir:
            path = self._file(job_id, variant)
            data = await asyncio.to_thread(lambda: path.read_bytes() if path.exists() else None)
        return data

    async def get_input(self, job_id: str) -> bytes | None:
        return await self.r.get(self._key("input", job_id))

    async def watch(self, job_id: str, poll_interval: float = 0.25) -> AsyncIterator[Job]:
        # Polling one key is cheap and survives reconnects; pub/sub would need its own connection.
        async for job in watch_job(self.get, job_id, lambda: asyncio.sleep(poll_interval)):
            yield job

    async def dead_letters(self, count: int = 100) -> list[dict[str, str]]:
        """The newest dead-lettered jobs: {"job_id", "code", "message"} each."""
        entries = await self.r.xrevrange(self.prefix + "dead", count=count)
        return [{_text(k): _text(v) for k, v in fields.items()} for _, fields in entries]
