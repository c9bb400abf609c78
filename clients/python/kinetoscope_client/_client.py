"""`Client` and `AsyncClient`: the shared core (`_core.BaseClient`) plus a transport.

Each twin differs from the other only in `_run`, which carries out a flow's effects: sending
with httpx's sync or async client, and sleeping with `time.sleep` or `asyncio.sleep`.
"""
from __future__ import annotations

import asyncio
import time
from typing import Any, Mapping, Optional, TypeVar, Union

import httpx

from ._core import DEFAULT_MAX_RETRIES, DEFAULT_TIMEOUT, DEFAULT_UPLOAD_ENCODING, BaseClient, Flow, Sleep
from .resources import AsyncModels, AsyncTokens, AsyncVideos, Models, Tokens, Videos

__all__ = ["Client", "AsyncClient"]

T = TypeVar("T")


def _resume(flow: Flow[T], result: Any, error: Optional[BaseException]) -> tuple[bool, Any]:
    """Advances a flow by one effect: (False, next effect), or (True, its return value)."""
    try:
        effect = flow.throw(error) if error is not None else flow.send(result)
    except StopIteration as stop:
        return True, stop.value
    return False, effect


class Client(BaseClient):
    """The synchronous client.

    `base_url` defaults to $KINETOSCOPE_BASE_URL, then http://127.0.0.1:8000; `api_key` to
    $KINETOSCOPE_API_KEY (sent as `Authorization: Bearer`). `timeout` is per request (seconds or
    an `httpx.Timeout`); `max_retries` is how often a failed request is retried (connection
    errors, timeouts, 408, 429, 5xx). Pass `http_client` to bring your own `httpx.Client`
    (proxies, event hooks); it is then yours to close."""

    _http: httpx.Client

    def __init__(
        self,
        base_url: Optional[str] = None,
        api_key: Optional[str] = None,
        *,
        timeout: Union[float, httpx.Timeout, None] = DEFAULT_TIMEOUT,
        max_retries: int = DEFAULT_MAX_RETRIES,
        default_headers: Optional[Mapping[str, str]] = None,
        http_client: Optional[httpx.Client] = None,
        upload_encoding: str = DEFAULT_UPLOAD_ENCODING,
    ) -> None:
        super().__init__(base_url=base_url, api_key=api_key, timeout=timeout, max_retries=max_retries,
                         default_headers=default_headers, upload_encoding=upload_encoding)
        self._owns_http = http_client is None
        self._http = http_client if http_client is not None else httpx.Client()
        self.videos = Videos(self)
        self.models = Models(self)
        self.tokens = Tokens(self)

    def _run(self, flow: Flow[T]) -> T:
        result: Any = None
        error: Optional[BaseException] = None
        while True:
            done, effect = _resume(flow, result, error)
            if done:
                return effect
            result, error = None, None
            if isinstance(effect, Sleep):
                time.sleep(effect.seconds)
                continue
            try:
                result = self._http.send(effect.request, stream=effect.stream)
                if effect.stream and result.status_code >= 400:
                    result.read()  # the flow reads error bodies to raise the right exception
            except httpx.TransportError as exc:
                error = exc

    def with_options(self, *, timeout: Union[float, httpx.Timeout, None, object] = ...,
                     max_retries: Optional[int] = None) -> "Client":
        """A client like this one (sharing its connection pool) with other timeout/retries."""
        return Client(self.base_url, self.api_key,
                      timeout=self.timeout if timeout is ... else timeout,  # type: ignore[arg-type]
                      max_retries=self.max_retries if max_retries is None else max_retries,
                      default_headers=self._default_headers, http_client=self._http,
                      upload_encoding=self.upload_encoding)

    def close(self) -> None:
        if self._owns_http:
            self._http.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncClient(BaseClient):
    """The asyncio client: the same surface as `Client`, with coroutines (see `Client`)."""

    _http: httpx.AsyncClient

    def __init__(
        self,
        base_url: Optional[str] = None,
        api_key: Optional[str] = None,
        *,
        timeout: Union[float, httpx.Timeout, None] = DEFAULT_TIMEOUT,
        max_retries: int = DEFAULT_MAX_RETRIES,
        default_headers: Optional[Mapping[str, str]] = None,
        http_client: Optional[httpx.AsyncClient] = None,
        upload_encoding: str = DEFAULT_UPLOAD_ENCODING,
    ) -> None:
        super().__init__(base_url=base_url, api_key=api_key, timeout=timeout, max_retries=max_retries,
                         default_headers=default_headers, upload_encoding=upload_encoding)
        self._owns_http = http_client is None
        self._http = http_client if http_client is not None else httpx.AsyncClient()
        self.videos = AsyncVideos(self)
        self.models = AsyncModels(self)
        self.tokens = AsyncTokens(self)

    async def _run(self, flow: Flow[T]) -> T:
        result: Any = None
        error: Optional[BaseException] = None
        while True:
            done, effect = _resume(flow, result, error)
            if done:
                return effect
            result, error = None, None
            if isinstance(effect, Sleep):
                await asyncio.sleep(effect.seconds)
                continue
            try:
                result = await self._http.send(effect.request, stream=effect.stream)
                if effect.stream and result.status_code >= 400:
                    await result.aread()
            except httpx.TransportError as exc:
                error = exc

    def with_options(self, *, timeout: Union[float, httpx.Timeout, None, object] = ...,
                     max_retries: Optional[int] = None) -> "AsyncClient":
        """See `Client.with_options`."""
        return AsyncClient(self.base_url, self.api_key,
                           timeout=self.timeout if timeout is ... else timeout,  # type: ignore[arg-type]
                           max_retries=self.max_retries if max_retries is None else max_retries,
                           default_headers=self._default_headers, http_client=self._http,
                           upload_encoding=self.upload_encoding)

    async def close(self) -> None:
        if self._owns_http:
            await self._http.aclose()

    async def __aenter__(self) -> "AsyncClient":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
