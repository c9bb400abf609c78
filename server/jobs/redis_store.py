"""Connection, keys, records, transactions and result storage of the Redis job queue: what the
API side (`redis.RedisQueue`) and the worker side (`redis_claims.RedisClaims`) share. The design
(streams, consumer group, leases, key layout, durability) is described in `redis.py`."""
from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from pathlib import Path
from typing import Any, Awaitable, Callable, Self

import redis.asyncio as aioredis
from redis import exceptions as redis_exceptions
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError, WatchError

from .base import PRIORITIES, RETRIES_EXHAUSTED, Job
from .webhooks import collect

log = logging.getLogger("kinetoscope.jobs.redis")

EventCallback = Callable[[str], None]
GROUP = "workers"
RANK_SPAN = 10 ** 13  # sequence numbers stay below this, so rank * span + seq orders by priority
MAX_BLOCK_SECONDS = 2.0  # one blocking read stays well inside redis-py's socket timeout (5 s)
RECONNECT_DELAYS = (0.05, 0.2, 0.5, 1.0)  # a transaction whose connection broke is redone
RECLAIM_PAGE = 100  # pending entries examined per round trip when looking for lapsed leases
# Error replies of a Redis that is up but cannot take writes now (out of memory under noeviction,
# a failed background save, a replica, still loading its data).
UNAVAILABLE_REPLIES = ("OOM", "MISCONF", "READONLY", "LOADING", "MASTERDOWN", "NOREPLICAS")
EXTENSIONS = {"video": "mp4", "thumbnail": "png", "frames": "zip", "tokens": "json", "confidence": "confidence.json"}  # results_dir file names, per variant


def _ms(seconds: float) -> int:
    return max(1, int(seconds * 1000))


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _died(job: Job) -> bool:
    """Whether the job just failed for good after its retries (it goes to the dead letter)."""
    return job.status == "failed" and bool(job.error) and job.error["code"] == RETRIES_EXHAUSTED


def _end_event(job: Job) -> str | None:
    """The counted event of a job that just ended, if any: "dead" or "expired" (`_finish_writes`
    counts both; the caller reports it through `on_event` once the transaction is done)."""
    return "dead" if _died(job) else "expired" if job.status == "expired" else None


class RedisStore:
    """The connection and the shared plumbing; use `RedisQueue`, which adds both sides."""

    def __init__(self, url: str, *, prefix: str = "kinetoscope:", max_queue_length: int = 256,
                 job_ttl_seconds: float = 24 * 3600, lease_seconds: float = 15.0,
                 max_attempts: int = 3, max_lost_leases: int = 10, retry_after_seconds: int = 5,
                 result_inline_max_bytes: int = 8 << 20, results_dir: Path | None = None,
                 results_sweep_seconds: float = 60.0, dead_letter_maxlen: int = 10_000,
                 on_event: EventCallback | None = None):
        # RESP2 pins the reply shapes (redis-py 8 may speak RESP3, where stream replies differ).
        self.r = aioredis.Redis.from_url(url, protocol=2)
        self.prefix = prefix
        self.max_queue_length = max_queue_length
        self.ttl = job_ttl_seconds
        self.lease_seconds = lease_seconds
        self.max_attempts = max_attempts
        self.max_lost_leases = max_lost_leases
        self.retry_after_seconds = retry_after_seconds
        self.inline_max = result_inline_max_bytes
        self.results_dir = Path(results_dir) if results_dir else None
        self.on_event = on_event
        self._streams = {p: f"{prefix}stream:{p}" for p in PRIORITIES}
        self._priority_of = {s.encode(): p for p, s in self._streams.items()}
        self._groups_ready = False
        self._prefetched: list[tuple[str, str, str]] = []  # (priority, entry id, job id)
        self._entries: dict[str, tuple[str, str]] = {}  # job id -> entry this process claimed
        self._next_reclaim = 0.0
        self.results_sweep_seconds, self.dead_letter_maxlen = results_sweep_seconds, dead_letter_maxlen
        self._next_sweep = time.monotonic() + results_sweep_seconds

    @classmethod
    def from_settings(cls, settings, on_event: EventCallback | None = None, **kwargs) -> Self:
        return cls(settings.redis_url, max_queue_length=settings.max_queue_length,
                   job_ttl_seconds=settings.job_ttl_seconds, lease_seconds=settings.lease_seconds,
                   max_attempts=settings.max_attempts, max_lost_leases=settings.max_lost_leases,
                   retry_after_seconds=settings.retry_after_seconds,
                   result_inline_max_bytes=settings.result_inline_max_bytes,
                   results_dir=settings.results_dir, results_sweep_seconds=settings.results_sweep_seconds,
                   dead_letter_maxlen=settings.dead_letter_maxlen, on_event=on_event, **kwargs)

    def _key(self, kind: str, name: str) -> str:
        return f"{self.prefix}{kind}:{name}"

    @property
    def _queued(self) -> str:
        return self.prefix + "queued"

    @property
    def _index(self) -> str:
        return self.prefix + "jobs"

    @staticmethod
    def _load(raw: bytes) -> tuple[Job, dict[str, Any]]:
        data = json.loads(raw)
        return Job.from_dict(data), {k: v for k, v in data.items() if k.startswith("_")}

    def _put(self, pipe, job: Job, meta: dict[str, Any]) -> None:
        """Queues the write of a job record, and of the webhook deliveries this change makes (in
        the same transaction: a change and its delivery are never apart); finished jobs expire
        at `expires_at`."""
        now = time.time()
        for delivery in collect(job, now):  # ids are fixed per job and event: a redone write adds nothing
            pipe.set(self._key("webhook", delivery.id), delivery.to_json(), nx=True)
            pipe.zadd(self._outbox, {delivery.id: now}, nx=True)
        px = _ms(job.expires_at - now) if job.terminal and job.expires_at else None
        pipe.set(self._key("job", job.id), json.dumps({**job.to_dict(), **meta}), px=px)

    @property
    def _outbox(self) -> str:
        """The webhook outbox (redis_outbox.py): a sorted set of delivery ids by due time."""
        return self.prefix + "webhooks"

    def _file(self, job_id: str, variant: str) -> Path:
        assert self.results_dir is not None
        return self.results_dir / f"{job_id}.{EXTENSIONS[variant]}"

    def _event(self, name: str | None) -> None:
        if name and self.on_event:
            self.on_event(name)

    async def _ready(self) -> None:
        """Creates the consumer group on each stream once (from id 0, so entries added before
        the first worker started are delivered too)."""
        if self._groups_ready:
            return
        for stream in self._streams.values():
            try:
                await self.r.xgroup_create(stream, GROUP, id="0", mkstream=True)
            except ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise
        self._groups_ready = True

    async def _transact(self, keys: list[str], body: Callable[[Any], Awaitable[Any]]) -> Any:
        """Runs `body(pipe)` with `keys` watched, until no other client changed them meanwhile.
        `body` reads through the pipe (immediate mode), then may call pipe.multi() and queue
        writes; its return value is returned once those writes are committed.

        A transaction whose connection broke (Redis restarting) is redone from the read a few
        times; bodies are written so that redoing one that did commit changes nothing."""
        reconnects = iter(RECONNECT_DELAYS)
        async with self.r.pipeline(transaction=True) as pipe:
            while True:
                try:
                    await pipe.watch(*keys)
                    result = await body(pipe)
                    if pipe.explicit_transaction:
                        await pipe.execute()
                    else:
                        await pipe.reset()
                    return result
                except WatchError:
                    continue
                except RedisConnectionError:
                    await pipe.reset()
                    delay = next(reconnects, None)
                    if delay is None:
                        raise
                    await asyncio.sleep(delay)

    def _finish_writes(self, pipe, job: Job, meta: dict[str, Any]) -> None:
        """The writes that end a job: record with TTL, lease gone, stream entry acknowledged,
        everything the job owns set to expire with it, dead letter if it died; the `dead` and
        `expired` counters (see `_end_event`), wherever the job ended."""
        ttl_ms = _ms(job.expires_at - time.time())
        meta = {**meta, "_worker": None}
        self._put(pipe, job, meta)
        pipe.delete(self._key("lease", job.id))
        pipe.zrem(self._queued, job.id)
        if meta.get("_entry"):
            priority, entry_id = meta["_entry"]
            pipe.xack(self._streams[priority], GROUP, entry_id)
            pipe.xdel(self._streams[priority], entry_id)
        pipe.delete(self._key("checkpoint", job.id))  # the job is over: nothing to resume
        for kind in ("input", "previews", *EXTENSIONS):
            pipe.pexpire(self._key(kind, job.id), ttl_ms)
        if meta.get("_idem"):
            pipe.pexpire(self._key("idem", meta["_idem"]), ttl_ms)
        if _died(job):
            pipe.xadd(self.prefix + "dead", {"job_id": job.id, "code": job.error["code"],
                                             "message": job.error["message"]},
                      maxlen=self.dead_letter_maxlen, approximate=True)
            pipe.hincrby(self.prefix + "counters", "dead", 1)
        elif job.status == "expired":
            pipe.hincrby(self.prefix + "counters", "expired", 1)

    async def ping(self) -> bool:
        """Readiness: Redis answers *and accepts writes* (an out-of-memory or read-only Redis
        answers PING but refuses every job)."""
        try:
            return bool(await self.r.set(self._key("ready", "probe"), "1", px=10_000))
        except Exception:
            return False

    @staticmethod
    def unavailable(exc: BaseException) -> bool:
        """Whether an error means Redis is down or refusing writes (the API answers 503 with
        Retry-After: retry later), not a fault of ours (500)."""
        if isinstance(exc, (redis_exceptions.ConnectionError, redis_exceptions.TimeoutError,
                            redis_exceptions.BusyLoadingError, redis_exceptions.ReadOnlyError,
                            redis_exceptions.OutOfMemoryError)):
            return True
        return isinstance(exc, redis_exceptions.ResponseError) and str(exc).split(" ", 1)[0] in UNAVAILABLE_REPLIES

    async def counters(self) -> dict[str, int]:
        raw = await self.r.hgetall(self.prefix + "counters")
        totals = {"reclaimed": 0, "retried": 0, "dead": 0, "expired": 0}
        totals.update({_text(k): int(v) for k, v in raw.items()})
        return totals

    async def _store_content(self, job_id: str, variant: str, data: bytes) -> None:
        key = self._key(variant, job_id)
        if len(data) <= self.inline_max or self.results_dir is None:
            await self.r.set(key, data, px=_ms(self.ttl))
            return
        path = self._file(job_id, variant)
        tmp = path.with_suffix(path.suffix + f".{os.getpid()}.tmp")

        def write() -> None:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_bytes(data)
            os.replace(tmp, path)  # readers never see a half-written file

        await asyncio.to_thread(write)
        await self.r.delete(key)

    async def purge_results(self) -> int:
        """Deletes result files whose job expired or was deleted; returns how many."""
        if not self.results_dir or not self.results_dir.is_dir():
            return 0
        removed = 0
        for path in list(self.results_dir.iterdir()):
            if path.suffix[1:] not in EXTENSIONS.values() or not path.stem.startswith("video_"):
                continue
            if not await self.r.exists(self._key("job", path.stem)):
                path.unlink(missing_ok=True)
                removed += 1
        return removed

    async def _trim_index(self) -> None:
        """Drops expired jobs from the listing index, oldest first, stopping at the first page
        that still has live jobs (ids sort by time and TTLs are alike, so that is where they
        end). `list` also removes the ones it meets."""
        while True:
            ids = await self.r.zrangebylex(self._index, "-", "+", start=0, num=RECLAIM_PAGE)
            if not ids:
                return
            raws = await self.r.mget([self._key("job", _text(i)) for i in ids])
            gone = [i for i, raw in zip(ids, raws) if raw is None]
            if gone:
                await self.r.zrem(self._index, *gone)
            if len(gone) < len(ids):
                return

    async def _drop_entry(self, job_id: str) -> None:
        """Forgets the entry this process claimed for a job; if the job was deleted meanwhile,
        acknowledges it too, so it does not linger in the pending list."""
        entry = self._entries.pop(job_id, None)
        if entry is None or await self.r.exists(self._key("job", job_id)):
            return  # still alive (someone else owns it): their entry, not ours to ack
        priority, entry_id = entry
        await self.r.xack(self._streams[priority], GROUP, entry_id)
        await self.r.xdel(self._streams[priority], entry_id)

    async def close(self) -> None:
        await self.r.aclose()
