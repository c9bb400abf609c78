"""The Redis job queue: the only module that knows Redis.

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
import json
import logging
import os
import time
from pathlib import Path
from typing import Any, AsyncIterator, Awaitable, Callable

import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError, WatchError

from . import states
from .base import PRIORITIES, RETRIES_EXHAUSTED, Job, QueueFull, watch_job

log = logging.getLogger("kinetoscope.jobs.redis")

EventCallback = Callable[[str], None]
GROUP = "workers"
RANK_SPAN = 10 ** 13  # sequence numbers stay below this, so rank * span + seq orders by priority
DEAD_LETTER_MAXLEN = 10_000
MAX_BLOCK_SECONDS = 2.0  # one blocking read stays well inside redis-py's socket timeout (5 s)
RECONNECT_DELAYS = (0.05, 0.2, 0.5, 1.0)  # a transaction whose connection broke is redone
RECLAIM_PAGE = 100  # pending entries examined per round trip when looking for lapsed leases
RESULTS_SWEEP_SECONDS = 60.0  # how often claim() tidies expired jobs' files and index entries
EXTENSIONS = {"video": "mp4", "thumbnail": "png"}


def _ms(seconds: float) -> int:
    return max(1, int(seconds * 1000))


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _died(job: Job) -> bool:
    """Whether the job just failed for good after its retries (it goes to the dead letter)."""
    return job.status == "failed" and bool(job.error) and job.error["code"] == RETRIES_EXHAUSTED


class RedisQueue:
    def __init__(self, url: str, *, prefix: str = "kinetoscope:", max_queue_length: int = 256,
                 job_ttl_seconds: float = 24 * 3600, lease_seconds: float = 15.0,
                 max_attempts: int = 3, retry_after_seconds: int = 5,
                 result_inline_max_bytes: int = 8 << 20, results_dir: Path | None = None,
                 on_event: EventCallback | None = None):
        # RESP2 pins the reply shapes (redis-py 8 may speak RESP3, where stream replies differ).
        self.r = aioredis.Redis.from_url(url, protocol=2)
        self.prefix = prefix
        self.max_queue_length = max_queue_length
        self.ttl = job_ttl_seconds
        self.lease_seconds = lease_seconds
        self.max_attempts = max_attempts
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
        self._next_sweep = time.monotonic() + RESULTS_SWEEP_SECONDS

    @classmethod
    def from_settings(cls, settings, on_event: EventCallback | None = None, **kwargs) -> "RedisQueue":
        return cls(settings.redis_url, max_queue_length=settings.max_queue_length,
                   job_ttl_seconds=settings.job_ttl_seconds, lease_seconds=settings.lease_seconds,
                   max_attempts=settings.max_attempts, retry_after_seconds=settings.retry_after_seconds,
                   result_inline_max_bytes=settings.result_inline_max_bytes,
                   results_dir=settings.results_dir, on_event=on_event, **kwargs)

    # --- keys and records ----------------------------------------------------------------------
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
        """Queues the write of a job record; finished jobs expire at `expires_at`."""
        px = _ms(job.expires_at - time.time()) if job.terminal and job.expires_at else None
        pipe.set(self._key("job", job.id), json.dumps({**job.to_dict(), **meta}), px=px)

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
        everything the job owns set to expire with it, dead letter if it died."""
        ttl_ms = _ms(job.expires_at - time.time())
        meta = {**meta, "_worker": None}
        self._put(pipe, job, meta)
        pipe.delete(self._key("lease", job.id))
        pipe.zrem(self._queued, job.id)
        if meta.get("_entry"):
            priority, entry_id = meta["_entry"]
            pipe.xack(self._streams[priority], GROUP, entry_id)
            pipe.xdel(self._streams[priority], entry_id)
        for kind in ("input", "video", "thumbnail"):
            pipe.pexpire(self._key(kind, job.id), ttl_ms)
        if meta.get("_idem"):
            pipe.pexpire(self._key("idem", meta["_idem"]), ttl_ms)
        if _died(job):
            pipe.xadd(self.prefix + "dead", {"job_id": job.id, "code": job.error["code"],
                                             "message": job.error["message"]},
                      maxlen=DEAD_LETTER_MAXLEN, approximate=True)
            pipe.hincrby(self.prefix + "counters", "dead", 1)

    # --- API side ---------------------------------------------------------------------------------
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

    async def list(self, after: str | None = None, limit: int = 20) -> tuple[list[Job], bool]:
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
            jobs += [self._load(raw)[0] for raw in raws if raw is not None]
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
            pipe.delete(key, *(self._key(k, job_id) for k in ("input", "video", "thumbnail", "lease")))
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

    async def ping(self) -> bool:
        try:
            return bool(await self.r.ping())
        except Exception:
            return False

    async def counters(self) -> dict[str, int]:
        raw = await self.r.hgetall(self.prefix + "counters")
        totals = {"reclaimed": 0, "retried": 0, "dead": 0}
        totals.update({_text(k): int(v) for k, v in raw.items()})
        return totals

    async def dead_letters(self, count: int = 100) -> list[dict[str, str]]:
        """The newest dead-lettered jobs: {"job_id", "code", "message"} each."""
        entries = await self.r.xrevrange(self.prefix + "dead", count=count)
        return [{_text(k): _text(v) for k, v in fields.items()} for _, fields in entries]

    # --- worker side -------------------------------------------------------------------------------
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
                self._next_sweep = now + RESULTS_SWEEP_SECONDS
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
                return job  # a redo after a lost reply: we already started it
            pipe.multi()
            if job is None or job.status != "queued":  # canceled or deleted while waiting
                pipe.xack(stream, GROUP, entry_id)
                pipe.xdel(stream, entry_id)
                pipe.zrem(self._queued, job_id)
                return None
            job = states.start(job, time.time())
            self._put(pipe, job, {**meta, "_worker": worker_id, "_entry": [priority, entry_id]})
            pipe.set(self._key("lease", job_id), worker_id, px=_ms(self.lease_seconds))
            pipe.zrem(self._queued, job_id)
            return job

        job = await self._transact([key], body)
        if job is not None:
            self._entries[job_id] = (priority, entry_id)
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
                changed, event = states.start(job, now), None
            else:
                lost = meta.get("_worker") or old_worker
                changed = states.reclaim(job, lost, self.max_attempts, now, self.ttl)
                meta["_last_error"] = states.worker_lost(lost)
                event = "reclaimed" if changed.status == "in_progress" else None
            pipe.xclaim(stream, GROUP, worker_id, 0, [entry_id], justid=True)
            meta["_entry"] = [priority, entry_id]
            if changed.terminal:
                self._finish_writes(pipe, changed, meta)
                event = "dead" if _died(changed) else None
                return None, event
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

    async def complete(self, job_id: str, worker_id: str, video: bytes, thumbnail: bytes) -> None:
        if await self._owned(self.r, job_id, worker_id) is None:
            await self._drop_entry(job_id)
            return  # canceled, deleted or taken over meanwhile: drop the result
        # Content first: a job is never completed without its bytes in place.
        await self._store_content(job_id, "video", video)
        await self._store_content(job_id, "thumbnail", thumbnail)

        async def body(pipe):
            owned = await self._owned(pipe, job_id, worker_id)
            if owned is None:
                return False
            job, meta = owned
            pipe.multi()
            self._finish_writes(pipe, states.finish(job, "completed", time.time(), self.ttl), meta)
            return True

        await self._transact([self._key("job", job_id)], body)
        await self._drop_entry(job_id)

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
                return "dead" if _died(changed) else None
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

    async def close(self) -> None:
        await self.r.aclose()
