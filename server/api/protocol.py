"""The HTTP/1.1 connection protocol `serve` runs under uvicorn: uvicorn's h11 protocol with a
deadline on reading each request (slowloris, issue #12 D10).

uvicorn bounds only the idle time between two requests of a connection (`timeout_keep_alive`).
Nothing bounds the time a client takes to *send* one: a connection that opens and sends nothing,
or sends its headers a byte at a time, or declares a body and trickles it, stays open for ever,
and a few thousand of them exhaust the process's file descriptors. uvicorn has no setting for it,
so this subclass adds one timer per connection, following h11's view of the client's side:

- waiting for a request head (h11 `IDLE`): the head must be complete `header_timeout_seconds`
  after the connection opened or after the first byte of a later request (the wait between
  requests is uvicorn's keep-alive timeout). Then the server answers 408 `request_timeout` (if
  the client sent anything) and closes the connection;
- receiving a body (h11 `SEND_BODY`): the API's BodyTimeoutMiddleware answers 408 once
  `body_timeout_seconds` have passed while a route reads it; this timer, `BACKSTOP_SECONDS`
  later, closes connections whose body nobody reads (a route that answered without it).

It is h11, not httptools, whatever is installed: the deadline needs the parser's state, which
this class reads from h11 (httptools is not a dependency, so uvicorn would pick h11 anyway).
"""
from __future__ import annotations

import asyncio
import json

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from server.api.errors import error_body

BACKSTOP_SECONDS = 1.0  # after body_timeout_seconds: the middleware's 408 goes first


def timeout_response(seconds: float) -> bytes:
    """The raw 408 sent when a request head is late (h11 cannot send a response before a request)."""
    body = json.dumps(error_body(408, "request_timeout", f"the request head did not arrive within {seconds:g} s "
                                 "(header_timeout_seconds)")).encode()
    head = (f"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\ncontent-length: {len(body)}\r\n"
            "connection: close\r\n\r\n").encode()
    return head + body


class RequestDeadlineProtocol(H11Protocol):
    """uvicorn's H11Protocol with a read deadline per request; `deadline_protocol` sets the two
    timeouts on a subclass (uvicorn builds one protocol object per connection from a class)."""

    header_timeout: float = 20.0
    body_timeout: float = 60.0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self._timer: asyncio.TimerHandle | None = None
        self._phase = h11.IDLE  # the client-side h11 state the timer is for
        self._head_bytes = 0  # bytes of the current request head received so far
        super().connection_made(transport)
        self._arm(self.header_timeout)

    def data_received(self, data: bytes) -> None:
        if self.conn.their_state is h11.IDLE:
            self._head_bytes += len(data)
        super().data_received(data)
        self._follow(self.conn.their_state)

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel()
        super().connection_lost(exc)

    def _follow(self, state: type) -> None:
        """A new client-side state starts its own deadline (or none once the request is in)."""
        if state is self._phase:
            return
        self._phase = state
        self._cancel()
        if state is h11.IDLE:  # the first bytes of a next request on a kept-alive connection
            self._arm(self.header_timeout)
        elif state is h11.SEND_BODY:
            self._head_bytes = 0
            self._arm(self.body_timeout + BACKSTOP_SECONDS)
        else:
            self._head_bytes = 0

    def _arm(self, seconds: float) -> None:
        self._timer = self.loop.call_later(seconds, self._expired)

    def _cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _expired(self) -> None:
        self._timer = None
        if self.transport.is_closing():
            return
        waiting_for_head = self.conn.their_state is h11.IDLE  # so no response is under way either
        if waiting_for_head and self._head_bytes:
            self.transport.write(timeout_response(self.header_timeout))
        self.logger.info("closing a connection whose request %s did not arrive in time",
                         "head" if waiting_for_head else "body")
        self.transport.close()


def deadline_protocol(header_timeout: float, body_timeout: float) -> type[RequestDeadlineProtocol]:
    """The protocol class for uvicorn.Config(http=...) with these timeouts (seconds)."""
    return type("RequestDeadlineProtocol", (RequestDeadlineProtocol,),
                {"header_timeout": header_timeout, "body_timeout": body_timeout})
