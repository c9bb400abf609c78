"""ASGI middleware (plain ASGI, not BaseHTTPMiddleware, so streamed responses pass untouched):

- `RequestContextMiddleware`: the `X-Request-ID` header (echoed when the client sends a sane one,
  generated otherwise) on every response, an access log line, the HTTP metrics, and a JSON 500
  for any exception nothing else handled.
- `BodyLimitMiddleware`: 413 for bodies over settings.max_body_bytes, whether or not the client
  declared a Content-Length.
- `BodyTimeoutMiddleware`: 408 for a body still arriving settings.body_timeout_seconds after
  the request's head (a slow request head is the connection protocol's: server/api/protocol.py).
"""
from __future__ import annotations

import asyncio
import logging
import re
import time
import uuid

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from server import metrics
from server.api.errors import APIError, error_body
from server.api.logs import request_id_var
from fastapi.responses import JSONResponse

logger = logging.getLogger("kinetoscope.api")

REQUEST_ID_HEADER = "X-Request-ID"
_SANE_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")  # what we echo into logs and headers


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return value.decode("latin-1")
    return None


class RequestContextMiddleware:
    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = _header(scope, b"x-request-id")
        request_id = given if given and _SANE_ID.match(given) else f"req_{uuid.uuid4().hex}"
        token = request_id_var.set(request_id)
        started = time.perf_counter()
        status = 500
        response_started = False

        async def send_with_id(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                response_started = True
                status = message["status"]
                message.setdefault("headers", [])
                message["headers"] = list(message["headers"]) + [(b"x-request-id", request_id.encode())]
                self._record(scope, status, started)
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception as exc:
            state = getattr(scope.get("app"), "state", None)
            queue = getattr(state, "queue", None)
            if not response_started and queue is not None and queue.unavailable(exc):
                # The job store is down or refusing writes: a condition to retry, not a bug.
                logger.warning("job store unavailable: %s", exc, extra={"method": scope["method"], "path": scope["path"]})
                body = error_body(503, "queue_unavailable", "the job queue is unavailable right now; retry shortly")
                await JSONResponse(body, status_code=503, headers={"Retry-After": str(state.settings.retry_after_seconds)})(
                    scope, receive, send_with_id)
                return
            logger.exception("unhandled error", extra={"method": scope["method"], "path": scope["path"]})
            if response_started:
                raise  # too late for an error body; the server closes the connection
            body = error_body(500, "internal_error", f"internal server error; quote request id {request_id}")
            await JSONResponse(body, status_code=500)(scope, receive, send_with_id)
        finally:
            request_id_var.reset(token)

    @staticmethod
    def _record(scope: Scope, status: int, started: float) -> None:
        route = scope.get("route")
        template = getattr(route, "path", None) or ("static" if scope["path"].startswith("/static") else "unmatched")
        elapsed = time.perf_counter() - started
        metrics.http_requests_total.labels(method=scope["method"], route=template, status=str(status)).inc()
        metrics.http_request_seconds.labels(method=scope["method"], route=template).observe(elapsed)
        logger.info("request", extra={"method": scope["method"], "path": scope["path"], "status": status,
                                      "duration_ms": round(elapsed * 1000, 1)})


class BodyLimitMiddleware:
    """Rejects a declared Content-Length over the limit before reading anything, and stops a
    chunked body once it passes the limit (the route sees APIError 413 from `receive`)."""

    def __init__(self, app: ASGIApp, max_body_bytes: int):
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.max_body_bytes
        message = f"the request body is larger than the server's limit of {limit} bytes"
        declared = _header(scope, b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await JSONResponse(error_body(413, "request_too_large", message), status_code=413,
                               headers={"Connection": "close"})(scope, receive, send)
            return
        seen = 0

        async def limited_receive() -> Message:
            nonlocal seen
            msg = await receive()
            if msg["type"] == "http.request":
                seen += len(msg.get("body", b""))
                if seen > limit:
                    raise APIError(413, "request_too_large", message)
            return msg

        await self.app(scope, limited_receive, send)


class BodyTimeoutMiddleware:
    """The whole request body must arrive within `body_timeout_seconds` of the request head,
    however it is sent (one byte at a time keeps a connection, a coroutine and a buffer for as
    long as the client likes otherwise). A route still reading then gets APIError 408
    `request_timeout` from `receive`, and the connection is closed. Once the body is in, `receive`
    is left alone: a streamed response waits on it for the client's disconnect."""

    def __init__(self, app: ASGIApp, body_timeout_seconds: float):
        self.app = app
        self.timeout = body_timeout_seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout
        body_done = False

        async def timed_receive() -> Message:
            nonlocal body_done
            if body_done:
                return await receive()
            try:  # uvicorn's receive only waits on an event: cancelling it loses nothing
                msg = await asyncio.wait_for(receive(), max(0.0, deadline - loop.time()))
            except asyncio.TimeoutError:
                raise APIError(408, "request_timeout", f"the request body did not arrive within {self.timeout:g} s "
                               "(body_timeout_seconds)", headers={"Connection": "close"}) from None
            body_done = msg["type"] != "http.request" or not msg.get("more_body", False)
            return msg

        await self.app(scope, timed_receive, send)


LOOPBACK = ("127.0.0.1", "localhost", "::1")
UNSAFE_METHODS = ("POST", "PUT", "PATCH", "DELETE")


def _hostname(host: str) -> str:
    """`example.com:8000` -> `example.com`, `[::1]:8000` -> `::1`."""
    if host.startswith("["):
        return host[1:].split("]", 1)[0]
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


class BrowserGuardMiddleware:
    """What keeps a web page from using a server that has no API keys (the default), through the
    visitor's browser:
    - a cross-site request that changes something (a form POST from another site: `Sec-Fetch-Site:
      cross-site`, or an `Origin` other than this server) is refused (403 `cross_site_request`);
    - DNS rebinding: a server bound to a loopback address answers only when the `Host` header names
      a loopback host (or one of `allowed_hosts`; `*` allows any), else 403 `host_not_allowed`.
    Clients that are not browsers (curl, the SDKs) send neither header, and are unaffected."""

    def __init__(self, app: ASGIApp, *, bind_host: str, allowed_hosts: list[str], api_keys: list[str]):
        self.app = app
        self.check_origin = not api_keys  # with keys, a page cannot send the Bearer header cross-site
        allowed = set(allowed_hosts) or (set(LOOPBACK) if bind_host in LOOPBACK else {"*"})
        self.allowed_hosts = None if "*" in allowed else allowed

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        host = _header(scope, b"host") or ""
        problem = None
        if self.allowed_hosts is not None and _hostname(host) not in self.allowed_hosts:
            problem = ("host_not_allowed", f"this server does not answer for host {host!r}; allowed: "
                       f"{', '.join(sorted(self.allowed_hosts))} (setting allowed_hosts)")
        elif self.check_origin and scope["method"] in UNSAFE_METHODS:
            origin = _header(scope, b"origin")
            # this server's names: the Host header, and the public one a proxy forwards
            ours = {host, *(h.strip() for h in (_header(scope, b"x-forwarded-host") or "").split(",") if h.strip())}
            if _header(scope, b"sec-fetch-site") == "cross-site" or (
                    origin and origin != "null" and origin.split("://", 1)[-1] not in ours):
                problem = ("cross_site_request", "requests from other web sites are refused by a server without "
                           "API keys; set api_keys to serve browsers on other origins")
        if problem is None:
            await self.app(scope, receive, send)
            return
        await JSONResponse(error_body(403, *problem), status_code=403)(scope, receive, send)
