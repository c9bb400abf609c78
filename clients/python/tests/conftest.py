"""Fixtures: live servers (started once per session) and clients pointed at them.

- `server`: the API with an API key configured (so every test also checks that the client
  sends it), a short poll interval, and otherwise default settings.
- `crowded_server`: one worker, a queue of one job and `Retry-After: 1`, to get real 429s.
- `proxy`: the fault-injecting reverse proxy in front of `server`.
"""
from __future__ import annotations

from typing import AsyncIterator, Iterator

import pytest

from kinetoscope_client import AsyncClient, Client

from live_servers import API_KEY, FaultyProxy, LiveServer, find_model_repository

@pytest.fixture(scope="session")
def model_repository():
    repo = find_model_repository()
    if repo is None:
        pytest.skip("no model repository (model_repository/*/manifest.json); build the demo model first "
                    "or set KINETOSCOPE_TEST_MODEL_REPOSITORY")
    return repo


@pytest.fixture(scope="session")
def server(model_repository) -> Iterator[LiveServer]:
    live = LiveServer(model_repository, {
        "KINETOSCOPE_API_KEYS": f'["{API_KEY}"]',
        "KINETOSCOPE_POLL_INTERVAL_SECONDS": "0.2",
    }).start()
    yield live
    live.stop()


@pytest.fixture(scope="session")
def crowded_server(model_repository) -> Iterator[LiveServer]:
    live = LiveServer(model_repository, {
        "KINETOSCOPE_MAX_QUEUE_LENGTH": "1",
        "KINETOSCOPE_WORKER_CONCURRENCY": "1",
        "KINETOSCOPE_RETRY_AFTER_SECONDS": "1",
        "KINETOSCOPE_POLL_INTERVAL_SECONDS": "0.2",
    }).start()
    yield live
    live.stop()


@pytest.fixture(scope="session")
def _proxy(server) -> Iterator[FaultyProxy]:
    live = FaultyProxy(server.url).start()
    yield live
    live.stop()


@pytest.fixture
def proxy(_proxy) -> Iterator[FaultyProxy]:
    _proxy.reset()
    yield _proxy
    _proxy.reset()


@pytest.fixture
def client(server) -> Iterator[Client]:
    with Client(server.url, api_key=API_KEY) as c:
        yield c


@pytest.fixture
async def aclient(server) -> AsyncIterator[AsyncClient]:
    async with AsyncClient(server.url, api_key=API_KEY) as c:
        yield c
