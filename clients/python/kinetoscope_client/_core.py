"""The core that `Client` and `AsyncClient` share: request building, the retry policy, error
mapping and response parsing, written once, with no I/O of its own.

Every operation (a create, a poll loop, a create-wait-download) is a generator, a "flow", that
yields the two effects it needs from the outside world and receives their results:

    response = yield Send(request)      # the driver sends it; transport errors are thrown back in
    yield Sleep(seconds)                # the driver sleeps

`Client._run` drives a flow with `httpx.Client.send` and `time.sleep`, `AsyncClient._run` with
`await httpx.AsyncClient.send` and `await asyncio.sleep`. That is the whole difference between
the twins, so the retry, polling and error logic cannot drift apart. (openai-python keeps two
copies of each resource method instead; this generator is about as long as one copy.)
"""
from __future__ import annotations

import os
import platform
import random
import urllib.parse
import uuid
from dataclasses import dataclass
from typing import Any, Generator, Mapping, TypeVar, Union

import httpx
from pydantic import BaseModel

from ._exceptions import APIConnectionError, APIStatusError, APITimeoutError, status_error_class
from ._headers import parse_retry_after
from ._version import __version__

__all__ = ["Send", "Sleep", "Flow", "BaseClient", "DEFAULT_BASE_URL", "DEFAULT_TIMEOUT"]

T = TypeVar("T")
ModelT = TypeVar("ModelT", bound=BaseModel)

DEFAULT_BASE_URL = "http://127.0.0.1:8000"
DEFAULT_TIMEOUT = httpx.Timeout(60.0, connect=10.0)
DEFAULT_MAX_RETRIES = 2
# How `videos.create` sends an input video: "multipart" (a file part, the other fields as form
# fields) or "json" (base64 in a JSON body). The one switch if a server takes only one of them.
DEFAULT_UPLOAD_ENCODING = "multipart"

# Retry policy: exponential backoff with jitter, unless the server says when (Retry-After).
INITIAL_RETRY_DELAY = 0.5  # seconds before the first retry
MAX_RETRY_DELAY = 8.0  # cap of the backoff
MAX_RETRY_AFTER = 60.0  # a longer Retry-After is not honoured (backoff instead)
RETRYABLE_STATUSES = frozenset({408, 429})  # and every 5xx; never 409 (content not ready)


@dataclass(frozen=True)
class Send:
    """Effect: send `request`; resume with the `httpx.Response`. With `stream`, a successful
    response's body is left unread (the caller iterates and closes it)."""

    request: httpx.Request
    stream: bool = False


@dataclass(frozen=True)
class Sleep:
    """Effect: wait `seconds`; resume with None."""

    seconds: float


Effect = Union[Send, Sleep]
Flow = Generator[Effect, Any, T]


def is_retryable_status(status_code: int) -> bool:
    return status_code in RETRYABLE_STATUSES or status_code >= 500


def retry_delay(attempt: int, response: httpx.Response | None) -> float:
    """Seconds to wait before retry number `attempt + 1` (attempt 0 is the first try).
    The server's Retry-After wins when present and sane; otherwise capped exponential backoff
    with up to 25 % jitter, so that clients that failed together do not retry together."""
    if response is not None:
        retry_after = parse_retry_after(response.headers)
        if retry_after is not None and retry_after <= MAX_RETRY_AFTER:
            return retry_after
    backoff = min(INITIAL_RETRY_DELAY * 2.0**attempt, MAX_RETRY_DELAY)
    return backoff * (1.0 - 0.25 * random.random())


def error_message(body: Any, response: httpx.Response) -> str:
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict) and error.get("message"):
            return str(error["message"])
        if isinstance(error, str):
            return error
        if "detail" in body:  # a framework's default error shape
            return str(body["detail"])
    if isinstance(body, str) and body:
        return body
    return response.reason_phrase or f"HTTP {response.status_code}"


def make_status_error(response: httpx.Response) -> APIStatusError:
    """Maps an error response (body already read) to its exception class."""
    try:
        body: Any = response.json()
    except ValueError:
        body = response.text
    cls = status_error_class(response.status_code)
    return cls(error_message(body, response), response=response, body=body)


def parse_model(model: type[ModelT], response: httpx.Response) -> ModelT:
    return model.model_validate(response.json())


def quote_id(value: str) -> str:
    """An id as one URL path segment (a stray "/" or "?" cannot reach another endpoint)."""
    return urllib.parse.quote(str(value), safe="")


def new_idempotency_key() -> str:
    return str(uuid.uuid4())


class BaseClient:
    """Options and the request/retry logic; subclasses add the transport (`_http`, `_run`)."""

    _http: Union[httpx.Client, httpx.AsyncClient]

    def __init__(
        self,
        *,
        base_url: str | None,
        api_key: str | None,
        timeout: float | httpx.Timeout | None,
        max_retries: int,
        default_headers: Mapping[str, str] | None,
        upload_encoding: str,
    ) -> None:
        if upload_encoding not in ("multipart", "json"):
            raise ValueError("upload_encoding must be 'multipart' or 'json'")
        if max_retries < 0:
            raise ValueError("max_retries must be >= 0")
        self.base_url = (base_url or os.environ.get("KINETOSCOPE_BASE_URL") or DEFAULT_BASE_URL).rstrip("/")
        self.api_key = api_key if api_key is not None else os.environ.get("KINETOSCOPE_API_KEY") or None
        self.timeout = timeout if isinstance(timeout, httpx.Timeout) or timeout is None else httpx.Timeout(timeout)
        self.max_retries = max_retries
        self.upload_encoding = upload_encoding
        self._default_headers = dict(default_headers or {})

    # --- request building ---------------------------------------------------------------------

    def _headers(self, extra: Mapping[str, str] | None) -> dict[str, str]:
        headers = {
            "Accept": "application/json",
            "User-Agent": f"kinetoscope-client/{__version__} python/{platform.python_version()}",
        }
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        headers.update(self._default_headers)
        headers.update(extra or {})
        return headers

    def _build_request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        data: Mapping[str, Any] | None = None,
        files: Any = None,
        headers: Mapping[str, str] | None = None,
        timeout: httpx.Timeout | None = None,
    ) -> httpx.Request:
        """`timeout` overrides the client's for this request (None: the client's)."""
        params = {k: v for k, v in (params or {}).items() if v is not None}
        return self._http.build_request(
            method,
            self.base_url + path,
            params=params or None,
            json=json,
            data=data,
            files=files,
            headers=self._headers(headers),
            timeout=timeout if timeout is not None else self.timeout,
        )

    # --- the retry loop -----------------------------------------------------------------------

    def _request(self, method: str, path: str, *, stream: bool = False, **request_args: Any) -> Flow[httpx.Response]:
        """Sends a request, retrying connection errors, timeouts, 408, 429 and 5xx up to
        `max_retries` times. The request is rebuilt for each try from the same arguments, so
        headers such as `Idempotency-Key` are identical on every try. Returns the response
        (status < 400) or raises the mapped `APIStatusError` / `APIConnectionError`."""
        attempt = 0
        while True:
            request = self._build_request(method, path, **request_args)
            retries_left = attempt < self.max_retries
            try:
                response: httpx.Response = yield Send(request, stream)
            except httpx.TimeoutException as exc:
                if not retries_left:
                    raise APITimeoutError(request=request) from exc
                yield Sleep(retry_delay(attempt, None))
            except httpx.TransportError as exc:
                if not retries_left:
                    raise APIConnectionError(f"could not reach the Kinetoscope server at {request.url} "
                                             f"({type(exc).__name__}: {exc}); is it running? (base URL: "
                                             "Client(base_url=...) or KINETOSCOPE_BASE_URL)", request=request) from exc
                yield Sleep(retry_delay(attempt, None))
            else:
                if response.status_code < 400:
                    return response
                if not (retries_left and is_retryable_status(response.status_code)):
                    raise make_status_error(response)
                yield Sleep(retry_delay(attempt, response))
            attempt += 1

    def _get_json(self, path: str, model: type[ModelT], **request_args: Any) -> Flow[ModelT]:
        response = yield from self._request("GET", path, **request_args)
        return parse_model(model, response)
