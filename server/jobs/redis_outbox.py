"""What the Redis queue keeps beside its jobs: each running job's previews (a list per job,
expiring with it) and the webhook outbox (server/webhooks.py), a sorted set of delivery ids by
due time whose records are written with the job change that made them (RedisStore._put)."""
from __future__ import annotations

import json
import time
from typing import Any

from .redis_store import RedisStore, _ms, _text
from .webhooks import Delivery, record_outcome

# KEYS[1]: the outbox; ARGV: now, lease end, limit. Due ids get the lease end as their due time.
_LEASE_DUE = """
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[3]))
for _, id in ipairs(ids) do redis.call('ZADD', KEYS[1], ARGV[2], id) end
return ids
"""


class RedisOutbox(RedisStore):
    """Previews and webhook deliveries; `RedisClaims` and `RedisQueue` build on it."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._lease_due = self.r.register_script(_LEASE_DUE)

    # --- previews: a list per job, expiring with it -----------------------------------------------
    async def get_previews(self, job_id: str, after: int = 0) -> list[dict[str, Any]]:
        return [json.loads(raw) for raw in await self.r.lrange(self._key("previews", job_id), after, -1)]

    async def add_previews(self, job_id: str, previews: list[dict[str, Any]]) -> None:
        if not previews:
            return
        key = self._key("job", job_id)

        async def body(pipe):
            raw = await pipe.get(key)
            if raw is None:
                return
            job, meta = self._load(raw)
            if job.terminal:
                return
            job.previews += len(previews)
            pipe.multi()
            pipe.rpush(self._key("previews", job_id), *(json.dumps(p) for p in previews))
            pipe.pexpire(self._key("previews", job_id), _ms(self.ttl + self.lease_seconds * 4))
            self._put(pipe, job, meta)

        await self._transact([key], body)

    # --- webhook outbox (server/webhooks.py): a sorted set of delivery ids by due time --------
    async def webhooks_due(self, limit: int, lease_seconds: float) -> list[Delivery]:
        """Leases due deliveries atomically (a Lua script moves each one's due time past the
        lease), so two processes never send one delivery at once; a process that dies holding
        one leaves it to come due again. Each leased delivery's attempt is counted and stored
        before it is sent, so an attempt whose outcome a killed process never recorded still
        counts."""
        now = time.time()
        ids = await self._lease_due(keys=[self._outbox], args=[now, now + lease_seconds, limit])
        if not ids:
            return []
        records = await self.r.mget([self._key("webhook", _text(i)) for i in ids])
        gone = [i for i, raw in zip(ids, records) if raw is None]
        if gone:
            await self.r.zrem(self._outbox, *gone)
        taken = [Delivery.from_json(raw) for raw in records if raw is not None]
        if taken:
            pipe = self.r.pipeline(transaction=False)
            for delivery in taken:
                delivery.attempts += 1
                pipe.set(self._key("webhook", delivery.id), delivery.to_json(), xx=True)
            await pipe.execute()
        return taken

    async def webhook_retry(self, delivery: Delivery, at: float) -> None:
        pipe = self.r.pipeline(transaction=True)
        pipe.set(self._key("webhook", delivery.id), delivery.to_json(), xx=True)
        pipe.zadd(self._outbox, {delivery.id: at}, xx=True)
        await pipe.execute()

    async def webhook_finished(self, delivery: Delivery, delivered: bool, detail: str) -> None:
        async def body(pipe):
            raw = await pipe.get(self._key("job", delivery.job_id))
            pipe.multi()
            if raw is not None:
                job, meta = self._load(raw)
                record_outcome(job, delivery, delivered, detail, time.time())
                self._put(pipe, job, meta)
            pipe.delete(self._key("webhook", delivery.id))
            pipe.zrem(self._outbox, delivery.id)

        await self._transact([self._key("job", delivery.job_id)], body)
