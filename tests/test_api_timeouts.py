"""Slow clients (issue #12 D10, slowloris): a request's head and body must arrive within
header_timeout_seconds and body_timeout_seconds, else 408 and the connection is closed; before,
a connection trickling its headers a byte at a time (or sending nothing) stayed open for ever.
Tested on a real `kinetoscope serve` process through raw sockets, with tiny timeouts."""
from __future__ import annotations

import asyncio
import json
import socket
import time

import httpx
import pytest
from live_server import live_server

HEADER_TIMEOUT, BODY_TIMEOUT = 0.6, 1.0
SLACK = 3.0  # a busy 2-core machine: the server may answer late, never never


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with live_server(tmp_path_factory.mktemp("timeouts"), header_timeout_seconds=HEADER_TIMEOUT,
                     body_timeout_seconds=BODY_TIMEOUT) as running:
        yield running


def _connect(server) -> socket.socket:
    conn = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    conn.settimeout(0.05)
    return conn


def _trickle(conn: socket.socket, data: bytes, every: float, limit: float) -> tuple[bytes, float]:
    """Sends `data` a byte every `every` seconds (then waits) until the server closes the
    connection or `limit` seconds pass -> (what the server sent, seconds until it closed)."""
    started, received = time.monotonic(), b""
    pending = iter(data)
    while time.monotonic() - started < limit:
        byte = next(pending, None)
        try:
            if byte is not None:
                conn.sendall(bytes([byte]))
            chunk = conn.recv(65536)
            if not chunk:
                return received, time.monotonic() - started
            received += chunk
        except socket.timeout:
            pass
        except (BrokenPipeError, ConnectionResetError):
            return received, time.monotonic() - started
        time.sleep(every)
    raise AssertionError(f"the connection was still open after {limit} s (received {received[:200]!r})")


def _error_of(response: bytes) -> dict:
    head, _, body = response.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408"), head
    assert b"connection: close" in head.lower()
    return json.loads(body)["error"]


def test_a_connection_trickling_its_headers_is_closed_with_408(server):
    with _connect(server) as conn:
        request = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Padding: " + b"a" * 200 + b"\r\n\r\n"
        received, seconds = _trickle(conn, request, every=0.05, limit=HEADER_TIMEOUT + SLACK)
    assert HEADER_TIMEOUT * 0.9 <= seconds <= HEADER_TIMEOUT + SLACK
    error = _error_of(received)
    assert error["code"] == "request_timeout" and "header_timeout_seconds" in error["message"]


def test_a_connection_that_sends_nothing_is_closed(server):
    with _connect(server) as conn:
        received, seconds = _trickle(conn, b"", every=0.05, limit=HEADER_TIMEOUT + SLACK)
    assert received == b"" and seconds >= HEADER_TIMEOUT * 0.9


def test_a_trickled_body_gets_408_and_the_connection_is_closed(server):
    body = json.dumps({"task": "class_conditional", "class_label": 1}).encode()
    head = (f"POST /v1/videos HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode()
    with _connect(server) as conn:
        conn.sendall(head)
        received, seconds = _trickle(conn, body, every=0.1, limit=BODY_TIMEOUT + SLACK)
    assert BODY_TIMEOUT * 0.9 <= seconds <= BODY_TIMEOUT + SLACK
    error = _error_of(received)
    assert error["code"] == "request_timeout" and "body_timeout_seconds" in error["message"]
    assert httpx.get(server.url + "/v1/videos").json()["data"] == []  # no job was made of it


def test_a_trickled_body_nobody_reads_still_ends_the_connection(server):
    """A route that answers without reading the body (405 here) leaves the body to the
    protocol's backstop: the connection closes instead of swallowing bytes for ever."""
    head = b"POST /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 1000\r\n\r\n"
    with _connect(server) as conn:
        conn.sendall(head)
        received, seconds = _trickle(conn, b"x" * 1000, every=0.1, limit=BODY_TIMEOUT + 1 + SLACK)
    assert received.startswith(b"HTTP/1.1 405")


def test_normal_requests_and_kept_alive_connections_still_work(server):
    with httpx.Client(base_url=server.url) as client:
        assert client.get("/healthz").status_code == 200
        time.sleep(HEADER_TIMEOUT * 1.5)  # idle between requests: uvicorn's keep-alive, not the head deadline
        assert client.get("/healthz").status_code == 200
        r = client.post("/v1/videos", json={"task": "class_conditional", "class_label": 1})
        assert r.status_code == 202, r.text
        upload = client.post("/v1/videos", data={"task": "frame_prediction"},
                             files={"input_video": ("a.mp4", b"\x00" * 200_000, "video/mp4")})
        assert upload.status_code == 415, upload.text  # a 200 KB body read in time, refused for what it is


async def test_the_middleware_answers_408_when_a_route_waits_for_a_late_body():
    """In process: a body that never comes -> 408 request_timeout, with Connection: close."""
    from server.api.app import create_app
    from server.settings import Settings

    from conftest import FakeRuntime

    app = create_app(Settings(embedded_workers=False, redis_url=None, body_timeout_seconds=0.2,
                              allowed_hosts=["test"]), runtime=FakeRuntime())
    sent: list[dict] = []

    async def receive():
        await asyncio.sleep(3600)  # the client went quiet

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
             "scheme": "http", "path": "/v1/videos", "raw_path": b"/v1/videos", "query_string": b"",
             "root_path": "", "server": ("test", 80), "client": ("127.0.0.1", 1),
             "headers": [(b"host", b"test"), (b"content-type", b"application/json")], "app": app}
    async with app.router.lifespan_context(app):
        await asyncio.wait_for(app(scope, receive, send), 5)
    start = sent[0]
    assert start["status"] == 408 and (b"connection", b"close") in [(k.lower(), v) for k, v in start["headers"]]
    assert json.loads(sent[1]["body"])["error"]["code"] == "request_timeout"
