"""Retries against real failures: 503s and dropped connections from the reverse proxy in front of
the live server, real 429s from a server with a one-job queue."""
from __future__ import annotations

import time
import uuid

import httpx
import pytest
from live_servers import API_KEY, FAST, SLOW

from kinetoscope_client import (
    APIConnectionError,
    APITimeoutError,
    AsyncClient,
    Client,
    RateLimitError,
    ServiceUnavailableError,
)


def count_jobs(client: Client) -> int:
    return sum(1 for _ in client.videos.list(limit=100))


def test_503_is_retried_until_it_passes(proxy):
    proxy.fail_next("503:0", "503:0")
    with Client(proxy.url, api_key=API_KEY, max_retries=2) as c:
        assert c.models.list()
    assert [s.fault for s in proxy.seen] == ["503:0", "503:0", None]


def test_503_past_max_retries_raises_service_unavailable(proxy):
    proxy.fail_next("503:0", "503:0")
    with Client(proxy.url, api_key=API_KEY, max_retries=1) as c, pytest.raises(ServiceUnavailableError) as caught:
        c.models.list()
    assert caught.value.status_code == 503 and caught.value.code == "proxy_unavailable"
    assert caught.value.request_id == "proxy-503"
    assert len(proxy.seen) == 2


def test_retry_waits_as_long_as_retry_after_says(proxy):
    proxy.fail_next("503:1")
    with Client(proxy.url, api_key=API_KEY) as c:
        start = time.monotonic()
        c.models.list()
    assert time.monotonic() - start >= 1.0


def test_dropped_connection_is_retried(proxy):
    proxy.fail_next("drop")
    with Client(proxy.url, api_key=API_KEY) as c:
        assert c.models.list()
    assert len(proxy.seen) == 2


def test_dropped_connection_without_retries_is_a_connection_error(proxy):
    proxy.fail_next("drop")
    with Client(proxy.url, api_key=API_KEY, max_retries=0) as c, pytest.raises(APIConnectionError):
        c.models.list()


def test_connection_refused_is_a_connection_error():
    with Client(f"http://127.0.0.1:{_closed_port()}", max_retries=1) as c, pytest.raises(APIConnectionError):
        c.models.list()


def test_timeout_is_retried_then_raised(proxy):
    proxy.fail_next("delay:1.5", "delay:1.5")
    with Client(proxy.url, api_key=API_KEY, timeout=0.3, max_retries=1) as c, pytest.raises(APITimeoutError):
        c.models.list()
    proxy.reset()
    proxy.fail_next("delay:1.5")
    with Client(proxy.url, api_key=API_KEY, timeout=0.3, max_retries=1) as c:
        assert c.models.list()


def test_create_retried_after_a_lost_answer_makes_one_job(proxy, client):
    """The first POST reaches the server (the job is made) but its answer is lost; the retry
    carries the same Idempotency-Key, so the server returns that job instead of a second."""
    before = count_jobs(client)
    proxy.fail_next("forward_then_drop")
    with Client(proxy.url, api_key=API_KEY) as c:
        video = c.videos.create(**FAST)
    posts = [s for s in proxy.seen if s.method == "POST"]
    assert len(posts) == 2
    keys = {s.headers["idempotency-key"] for s in posts}
    assert len(keys) == 1 and uuid.UUID(keys.pop())
    assert posts[0].upstream_status == 202 and video.id in posts[0].upstream_body.decode()
    assert count_jobs(client) == before + 1


async def test_async_create_retried_after_a_lost_answer_makes_one_job(proxy, client):
    before = count_jobs(client)
    proxy.fail_next("forward_then_drop", "503:0")
    async with AsyncClient(proxy.url, api_key=API_KEY) as c:
        video = await c.videos.create(**FAST)
    posts = [s for s in proxy.seen if s.method == "POST"]
    assert len(posts) == 3 and len({s.headers["idempotency-key"] for s in posts}) == 1
    assert video.id in posts[0].upstream_body.decode()
    assert count_jobs(client) == before + 1


async def test_async_503_and_drop_are_retried(proxy):
    proxy.fail_next("503:0", "drop")
    async with AsyncClient(proxy.url, api_key=API_KEY, max_retries=2) as c:
        assert await c.models.list()
    assert len(proxy.seen) == 3


def test_event_stream_opening_is_retried(proxy, client):
    video = client.videos.create(**FAST)
    proxy.fail_next("drop")
    with Client(proxy.url, api_key=API_KEY) as c:
        events = list(c.videos.stream_events(video.id))
    assert events[-1].status == "completed"


def test_full_queue_answers_429_and_the_client_retries_until_it_drains(crowded_server):
    """One worker, room for one queued job: a running blocker plus one queued job fill the
    server, so the next create gets a real 429. The client retries after Retry-After; the first
    429 it sees cancels the blocker (from an httpx response hook), which drains the queue."""
    with Client(crowded_server.url, max_retries=0) as plain:
        blocker = plain.videos.create(**SLOW)
        deadline = time.monotonic() + 60
        while plain.videos.retrieve(blocker.id).status == "queued" and time.monotonic() < deadline:
            time.sleep(0.1)
        queued: list[str] = []
        with pytest.raises(RateLimitError) as caught:
            for _ in range(5):
                queued.append(plain.videos.create(**FAST).id)
        assert queued, "the queue took no job at all"
        assert caught.value.status_code == 429 and caught.value.retry_after == 1
        assert caught.value.code == "queue_full"

        statuses: list[int] = []
        keys: list[str] = []

        def on_response(response: httpx.Response) -> None:
            statuses.append(response.status_code)
            keys.append(response.request.headers["Idempotency-Key"])
            if response.status_code == 429 and statuses.count(429) == 1:
                plain.videos.cancel(blocker.id)

        with httpx.Client(event_hooks={"response": [on_response]}) as http, \
                Client(crowded_server.url, max_retries=10, http_client=http) as retrying:
            start = time.monotonic()
            video = retrying.videos.create(**FAST)
        assert statuses[0] == 429 and statuses[-1] in (200, 202) and len(set(keys)) == 1
        assert time.monotonic() - start >= 1.0  # waited Retry-After: 1
        assert plain.videos.retrieve(video.id).id == video.id


def _closed_port() -> int:
    from live_servers import free_port

    return free_port()
