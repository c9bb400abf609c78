"""A Redis outage or a Redis that refuses writes answers 503 with Retry-After, never 500, and
/readyz says not ready (issue: jobs that never lose work, D6)."""
from __future__ import annotations

import shutil
import uuid

import pytest

from conftest import REDIS_SERVER_BINARY, RedisServer
from live_server import free_port


@pytest.fixture
def own_redis(tmp_path):
    """A redis-server of this test alone: it is stopped and starved on purpose."""
    binary = REDIS_SERVER_BINARY if shutil.which(REDIS_SERVER_BINARY) else shutil.which("redis-server")
    if not binary:
        pytest.skip("redis-server is not installed")
    server = RedisServer(binary, free_port(), tmp_path)
    server.start()
    yield server
    server.kill()


async def test_redis_down_or_full_is_503_with_retry_after(make_api, own_redis):
    import redis

    from server.jobs.redis import RedisQueue

    queue = RedisQueue(own_redis.url, prefix=f"t:{uuid.uuid4().hex[:6]}:", job_ttl_seconds=60)
    body = {"task": "class_conditional", "class_label": 1}
    async with make_api(queue=queue, retry_after_seconds=7) as api:
        c = api.client
        assert (await c.post("/v1/videos", json=body)).status_code == 202
        assert (await c.get("/readyz")).status_code == 200
        # a full Redis (noeviction): PING still answers, writes fail with OOM
        admin = redis.Redis.from_url(own_redis.url)
        admin.config_set("maxmemory", "1")
        r = await c.post("/v1/videos", json=body)
        assert r.status_code == 503 and r.headers["Retry-After"] == "7", r.text
        assert r.json()["error"]["code"] == "queue_unavailable"
        assert (await c.get("/readyz")).status_code == 503
        admin.config_set("maxmemory", "0")
        assert (await c.post("/v1/videos", json=body)).status_code == 202
        # Redis gone
        own_redis.kill()
        for method, path in (("POST", "/v1/videos"), ("GET", "/v1/videos"), ("GET", "/v1/videos/video_x")):
            r = await c.request(method, path, json=body if method == "POST" else None)
            assert r.status_code == 503 and r.headers["Retry-After"] == "7", (method, path, r.text)
        assert (await c.get("/readyz")).status_code == 503
    await queue.close()
