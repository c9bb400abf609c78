"""`client.videos`: create, inspect, wait for, stream, download, cancel and delete jobs.

`_VideosCore` builds every operation once as a flow (see `_core`); `Videos` and `AsyncVideos`
only run those flows with their client's transport. Event streaming is the one exception:
reading a response body is itself I/O, so each twin has its own short loop over httpx-sse's
event reader (`iter_sse` / `aiter_sse`).
"""
from __future__ import annotations

import base64
import json
import math
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, AsyncIterator, Iterator, Literal, Mapping, Optional, Sequence, Union, overload

import httpx
from httpx_sse import EventSource

from .._core import Flow, Sleep, new_idempotency_key, parse_model, quote_id
from .._exceptions import APIConnectionError, JobFailedError, WaitTimeoutError
from .._headers import parse_poll_interval
from .._progress import ProgressBar
from .._uploads import read_input_video
from ..pagination import AsyncPage, AsyncPager, SyncPage
from ..types import Mask, Preview, Variant, Video, VideoCreateParams, VideoDeleted, VideoList
from ._edits import _edit_params
from ._events import _EventReader, _previews_only

if sys.version_info >= (3, 11):
    from typing import Unpack
else:  # typing_extensions comes with pydantic
    from typing_extensions import Unpack

if TYPE_CHECKING:
    from .._client import AsyncClient, Client

__all__ = ["Videos", "AsyncVideos"]

PathLike = Union[str, os.PathLike]

DEFAULT_POLL_INTERVAL = 1.0  # seconds, when neither the caller nor the server says
MIN_POLL_INTERVAL = 0.1
MAX_POLL_INTERVAL = 60.0
_CREATE_KEYS = VideoCreateParams.__required_keys__ | VideoCreateParams.__optional_keys__


def _form_value(value: Any) -> str:
    """Multipart form fields are strings: objects (mask, sampler) go as JSON text."""
    if isinstance(value, (dict, list, tuple, bool)):
        return json.dumps(value)
    return str(value)


def _with_extra_read_time(timeout: httpx.Timeout | None, seconds: float) -> httpx.Timeout | None:
    if timeout is None or timeout.read is None:
        return timeout
    return httpx.Timeout(timeout.connect, read=timeout.read + seconds, write=timeout.write, pool=timeout.pool)


def _clamp_interval(seconds: float) -> float:
    return min(max(seconds, MIN_POLL_INTERVAL), MAX_POLL_INTERVAL)


class _VideosCore:
    def __init__(self, client: Union["Client", "AsyncClient"]) -> None:
        self._client = client

    # --- flows shared by the twins ----------------------------------------------------------

    def _create(self, params: Mapping[str, Any]) -> Flow[tuple[Video, Optional[float]]]:
        """POST /v1/videos. Returns the job and the poll interval the server suggested."""
        unknown = set(params) - _CREATE_KEYS
        if unknown:
            raise TypeError(f"unexpected argument(s) for videos.create: {', '.join(sorted(unknown))}")
        if "task" not in params:
            raise TypeError("videos.create needs task=...")
        fields = {k: v for k, v in params.items() if v is not None}
        # one key per call, generated before the retry loop so every retry carries the same one
        headers = {"Idempotency-Key": fields.pop("idempotency_key", None) or new_idempotency_key()}
        timeout = None
        wait = fields.pop("wait", None)
        if wait is not None:
            headers["Prefer"] = f"wait={math.ceil(wait)}"
            timeout = _with_extra_read_time(self._client.timeout, wait)

        body: dict[str, Any] = {}
        if "input_video" in fields:
            upload = read_input_video(fields.pop("input_video"))
            if self._client.upload_encoding == "multipart":
                body["data"] = {k: _form_value(v) for k, v in fields.items()}
                body["files"] = {"input_video": (upload.filename, upload.content, upload.content_type)}
            else:
                body["json"] = {**fields, "input_video": base64.b64encode(upload.content).decode("ascii")}
        else:
            body["json"] = fields

        response = yield from self._client._request("POST", "/v1/videos", headers=headers, timeout=timeout, **body)
        return parse_model(Video, response), parse_poll_interval(response.headers)

    def _retrieve(self, video_id: str) -> Flow[tuple[Video, Optional[float]]]:
        """GET /v1/videos/{id}. Returns the job and the poll interval the server suggested."""
        response = yield from self._client._request("GET", f"/v1/videos/{quote_id(video_id)}")
        return parse_model(Video, response), parse_poll_interval(response.headers)

    def _wait(
        self,
        video: Video,
        suggested: Optional[float],
        poll_interval: Optional[float],
        timeout: Optional[float],
        progress: bool,
    ) -> Flow[Video]:
        """Polls until the job is terminal, at `poll_interval` if given, else at the interval the
        server suggests on each answer. Raises JobFailedError unless it completed."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with ProgressBar(progress) as bar:
            while True:
                bar.update(video)
                if video.is_terminal:
                    break
                interval = poll_interval if poll_interval is not None else suggested
                interval = _clamp_interval(interval if interval is not None else DEFAULT_POLL_INTERVAL)
                if deadline is not None:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        raise WaitTimeoutError(video, timeout)  # type: ignore[arg-type]
                    interval = min(interval, remaining)
                yield Sleep(interval)
                video, suggested = yield from self._retrieve(video.id)
        if video.status != "completed":
            raise JobFailedError(video)
        return video

    def _poll(self, video_id: str, poll_interval: Optional[float], timeout: Optional[float], progress: bool) -> Flow[Video]:
        video, suggested = yield from self._retrieve(video_id)
        return (yield from self._wait(video, suggested, poll_interval, timeout, progress))

    def _create_and_poll(
        self, params: Mapping[str, Any], poll_interval: Optional[float], timeout: Optional[float], progress: bool
    ) -> Flow[Video]:
        video, suggested = yield from self._create(params)
        return (yield from self._wait(video, suggested, poll_interval, timeout, progress))

    def _list(self, after: Optional[str], limit: Optional[int], filters: dict[str, Optional[str]]) -> Flow[VideoList]:
        response = yield from self._client._request("GET", "/v1/videos", params={"after": after, "limit": limit, **filters})
        return parse_model(VideoList, response)

    def _cancel(self, video_id: str) -> Flow[Video]:
        response = yield from self._client._request("POST", f"/v1/videos/{quote_id(video_id)}/cancel")
        return parse_model(Video, response)

    def _delete(self, video_id: str) -> Flow[VideoDeleted]:
        response = yield from self._client._request("DELETE", f"/v1/videos/{quote_id(video_id)}")
        try:
            body = response.json()
        except ValueError:  # e.g. 204 No Content
            body = None
        if isinstance(body, dict) and "id" in body:
            return VideoDeleted.model_validate({"deleted": True, **body})
        return VideoDeleted(id=video_id)

    def _download(self, video_id: str, variant: Variant, path: Optional[PathLike]) -> Flow[Union[bytes, Path]]:
        response = yield from self._client._request(
            "GET", f"/v1/videos/{quote_id(video_id)}/content", params={"variant": variant}, headers={"Accept": "*/*"}
        )
        if path is None:
            return response.content
        # a blocking write even under AsyncClient: results are a few MiB at most
        out = Path(path)
        out.write_bytes(response.content)
        return out

    def _generate(
        self,
        params: Mapping[str, Any],
        output: Optional[PathLike],
        poll_interval: Optional[float],
        timeout: Optional[float],
        progress: bool,
    ) -> Flow[Union[bytes, Path]]:
        video = yield from self._create_and_poll(params, poll_interval, timeout, progress)
        return (yield from self._download(video.id, "video", output))

    def _open_events(self, video_id: str) -> Flow[httpx.Response]:
        timeout = self._client.timeout
        # no read timeout: a queued job may not change for a long time; the server closes the
        # stream at a terminal status
        stream_timeout = httpx.Timeout(timeout.connect if timeout else None, read=None,
                                       write=timeout.write if timeout else None, pool=timeout.pool if timeout else None)
        return (yield from self._client._request(
            "GET", f"/v1/videos/{quote_id(video_id)}/events", headers={"Accept": "text/event-stream"},
            timeout=stream_timeout, stream=True,
        ))

    def _stream_ended_early(self, video_id: str, reconnects: int) -> None:
        """Called when a stream closed before a terminal status; raises once out of retries."""
        if reconnects > self._client.max_retries:
            raise APIConnectionError(f"event stream of {video_id} closed before the job finished")


class Videos(_VideosCore):
    _client: "Client"

    def create(self, **params: Unpack[VideoCreateParams]) -> Video:
        """Creates a job (POST /v1/videos) and returns it as the server first answered:
        `queued` normally, or `completed` when `wait=N` was given and it finished in time.

        Fields as in the API: `task` (required), `model`, `class_label`, `input_video` (path,
        bytes or binary file; sent as a multipart upload), `input_video_id`, `mask`,
        `condition_frames`, `num_frames`, `size` ("WxH"), `fps`, `seed`, `sampler`, `priority`;
        plus `idempotency_key` (default: a new uuid4, reused by retries) and `wait` (seconds)."""
        return self._client._run(self._create(params))[0]

    def retrieve(self, video_id: str) -> Video:
        """GET /v1/videos/{id}."""
        return self._client._run(self._retrieve(video_id))[0]

    def list(self, *, after: Optional[str] = None, limit: Optional[int] = None, status: Optional[str] = None,
             task: Optional[str] = None, model: Optional[str] = None) -> SyncPage:
        """GET /v1/videos, newest first. Iterating the page walks every later page too."""
        filters = {"status": status, "task": task, "model": model}
        return SyncPage(self._client._run(self._list(after, limit, filters)),
                        lambda cursor: self.list(after=cursor, limit=limit, **filters))

    def cancel(self, video_id: str) -> Video:
        """Cancels a queued or running job (idempotent). A running job stops at its next
        decoding step, so the returned job may still be `in_progress` for a moment."""
        return self._client._run(self._cancel(video_id))

    def delete(self, video_id: str) -> VideoDeleted:
        """Deletes the job and its content."""
        return self._client._run(self._delete(video_id))

    def download_content(self, video_id: str, variant: Variant = "video", path: Optional[PathLike] = None) -> Union[bytes, Path]:
        """A completed job's video (`variant="video"`, in the request's output_format), first-frame
        PNG (`"thumbnail"`), lossless frames (`"frames"`, PNGs in a zip), token grids (`"tokens"`,
        JSON `{"model", "token_grid", "vocab_size", "windows"}`) or MaskGIT confidence map
        (`"confidence"`, JSON `{"model", "token_grid", "scale", "windows"}`); or, while a
        `previews=True` job runs, its latest preview (`"preview"`, a PNG strip). As bytes, or
        written to `path` (then the Path is returned). ConflictError if not ready yet."""
        return self._client._run(self._download(video_id, variant, path))

    def poll(self, video_id: str, *, poll_interval: Optional[float] = None, timeout: Optional[float] = None,
             progress: bool = False) -> Video:
        """Waits for an existing job; see `create_and_poll`."""
        return self._client._run(self._poll(video_id, poll_interval, timeout, progress))

    def create_and_poll(self, *, poll_interval: Optional[float] = None, timeout: Optional[float] = None,
                        progress: bool = False, **params: Unpack[VideoCreateParams]) -> Video:
        """Creates a job and polls until it finishes; returns the completed job.

        Polls every `poll_interval` seconds if given, else as the server suggests
        (`X-Poll-Interval` / `Retry-After`). Raises JobFailedError if the job fails or is
        canceled, WaitTimeoutError after `timeout` seconds. `progress=True` shows a tqdm bar
        when stdout is a terminal."""
        return self._client._run(self._create_and_poll(params, poll_interval, timeout, progress))

    def generate(self, *, output: Optional[PathLike] = None, poll_interval: Optional[float] = None,
                 timeout: Optional[float] = None, progress: bool = False,
                 **params: Unpack[VideoCreateParams]) -> Union[bytes, Path]:
        """Creates a job, waits for it and downloads the MP4: bytes, or the Path `output`."""
        return self._client._run(self._generate(params, output, poll_interval, timeout, progress))

    @overload
    def stream_events(self, video_id: str, *, previews: Literal[False] = False) -> Iterator[Video]: ...
    @overload
    def stream_events(self, video_id: str, *, previews: Literal[True]) -> Iterator[Union[Video, Preview]]: ...

    def stream_events(self, video_id: str, *, previews: bool = False) -> Iterator[Union[Video, Preview]]:
        """Yields the job at each change (GET /v1/videos/{id}/events, server-sent events) and
        stops after a terminal status. With `previews=True` it also yields each `Preview` (a job
        created with `previews=True`), in the order the server sent them: a step's preview comes
        before the job event of the same change. A dropped stream is reopened up to
        `max_retries` times; previews already yielded are not yielded again."""
        reader = _EventReader(previews)
        reconnects = 0
        while True:
            response = self._client._run(self._open_events(video_id))
            reader.reopened()
            try:
                # httpx-sse drops a last event that no blank line ended (as the SSE standard says);
                # the stream then counts as dropped, and the reopened one starts with the job as it is.
                # A body that is not text/event-stream raises SSEError, a TransportError: reopened too.
                for event in EventSource(response).iter_sse():
                    item = reader.read(event)
                    if item is not None:
                        yield item
                        if isinstance(item, Video) and item.is_terminal:
                            return
            except httpx.TransportError:
                pass  # reconnect below
            finally:
                response.close()
            reconnects += 1
            self._stream_ended_early(video_id, reconnects)

    def stream_previews(self, video_id: str) -> Iterator[Preview]:
        """Yields each preview of a job created with `previews=True` (one per MaskGIT step, or
        every few tokens of the autoregressive sampler: the
        clip as guessed so far, with the sampler's confidence map) until the job ends. A finished
        job's previews are replayed. Raises JobFailedError if the job failed or was canceled."""
        for item in self.stream_events(video_id, previews=True):
            preview = _previews_only(item)
            if preview is not None:
                yield preview

    def edit(self, video_id: str, *, mask: Union[Mask, str, Sequence[float]],
             task: Literal["inpainting", "outpainting"] = "inpainting", **params: Any) -> Video:
        """An exact edit of a completed job (`"edit": {"from": video_id}`): regenerates only the
        tokens whose footprint meets the region `mask` leaves to generate (inpainting: inside
        it; outpainting: outside); every other token keeps its value exactly. `mask`: a Mask, a
        preset name, or an `[x0, y0, x1, y1]` box (relative). The clip's length and size are the
        source's. Other fields as `create` (`seed`, `sampler`, `previews`, `wait`, ...)."""
        return self.create(**_edit_params(video_id, mask, task, params))


class AsyncVideos(_VideosCore):
    _client: "AsyncClient"

    async def create(self, **params: Unpack[VideoCreateParams]) -> Video:
        """See `Videos.create`."""
        return (await self._client._run(self._create(params)))[0]

    async def retrieve(self, video_id: str) -> Video:
        """GET /v1/videos/{id}."""
        return (await self._client._run(self._retrieve(video_id)))[0]

    def list(self, *, after: Optional[str] = None, limit: Optional[int] = None, status: Optional[str] = None,
             task: Optional[str] = None, model: Optional[str] = None) -> AsyncPager:
        """GET /v1/videos, newest first: `await` it for the first page, or `async for` over it
        (or over a page) for every job across pages."""
        filters = {"status": status, "task": task, "model": model}

        async def first_page(cursor: Optional[str] = after) -> AsyncPage:
            return AsyncPage(await self._client._run(self._list(cursor, limit, filters)), first_page)

        return AsyncPager(first_page)

    async def cancel(self, video_id: str) -> Video:
        """See `Videos.cancel`."""
        return await self._client._run(self._cancel(video_id))

    async def delete(self, video_id: str) -> VideoDeleted:
        """Deletes the job and its content."""
        return await self._client._run(self._delete(video_id))

    async def download_content(self, video_id: str, variant: Variant = "video",
                               path: Optional[PathLike] = None) -> Union[bytes, Path]:
        """See `Videos.download_content`."""
        return await self._client._run(self._download(video_id, variant, path))

    async def poll(self, video_id: str, *, poll_interval: Optional[float] = None, timeout: Optional[float] = None,
                   progress: bool = False) -> Video:
        """See `Videos.poll`."""
        return await self._client._run(self._poll(video_id, poll_interval, timeout, progress))

    async def create_and_poll(self, *, poll_interval: Optional[float] = None, timeout: Optional[float] = None,
                              progress: bool = False, **params: Unpack[VideoCreateParams]) -> Video:
        """See `Videos.create_and_poll`."""
        return await self._client._run(self._create_and_poll(params, poll_interval, timeout, progress))

    async def generate(self, *, output: Optional[PathLike] = None, poll_interval: Optional[float] = None,
                       timeout: Optional[float] = None, progress: bool = False,
                       **params: Unpack[VideoCreateParams]) -> Union[bytes, Path]:
        """See `Videos.generate`."""
        return await self._client._run(self._generate(params, output, poll_interval, timeout, progress))

    @overload
    def stream_events(self, video_id: str, *, previews: Literal[False] = False) -> AsyncIterator[Video]: ...
    @overload
    def stream_events(self, video_id: str, *, previews: Literal[True]) -> AsyncIterator[Union[Video, Preview]]: ...

    async def stream_events(self, video_id: str, *, previews: bool = False) -> AsyncIterator[Union[Video, Preview]]:
        """See `Videos.stream_events`."""
        reader = _EventReader(previews)
        reconnects = 0
        while True:
            response = await self._client._run(self._open_events(video_id))
            reader.reopened()
            try:
                async for event in EventSource(response).aiter_sse():  # as in Videos.stream_events
                    item = reader.read(event)
                    if item is not None:
                        yield item
                        if isinstance(item, Video) and item.is_terminal:
                            return
            except httpx.TransportError:
                pass  # reconnect below
            finally:
                await response.aclose()
            reconnects += 1
            self._stream_ended_early(video_id, reconnects)

    async def stream_previews(self, video_id: str) -> AsyncIterator[Preview]:
        """See `Videos.stream_previews`."""
        async for item in self.stream_events(video_id, previews=True):
            preview = _previews_only(item)
            if preview is not None:
                yield preview

    async def edit(self, video_id: str, *, mask: Union[Mask, str, Sequence[float]],
                   task: Literal["inpainting", "outpainting"] = "inpainting", **params: Any) -> Video:
        """See `Videos.edit`."""
        return await self.create(**_edit_params(video_id, mask, task, params))
