"""The client's pure logic (no server needed): retry timing, header parsing, reading events,
upload labelling, the progress bar switch, and the flow drivers of both twins."""
from __future__ import annotations

import asyncio
import base64
import io
import json
import time

import httpx
import httpx_sse
import pytest

from kinetoscope_client import (
    AsyncClient,
    Client,
    ConflictError,
    InternalServerError,
    KinetoscopeError,
    Preview,
    RateLimitError,
    ServiceUnavailableError,
    Video,
)
from kinetoscope_client._core import Sleep, is_retryable_status, make_status_error, retry_delay
from kinetoscope_client._headers import parse_poll_interval, parse_retry_after
from kinetoscope_client._progress import ProgressBar
from kinetoscope_client._uploads import read_input_video
from kinetoscope_client.resources.videos import _edit_params, _EventReader


def response(status: int, headers: dict[str, str] | None = None, json: object = None) -> httpx.Response:
    return httpx.Response(status, headers=headers, json=json, request=httpx.Request("GET", "http://x/v1/videos/a"))


def test_retry_delay_honours_retry_after_else_backs_off_with_jitter():
    assert retry_delay(0, response(429, {"Retry-After": "3"})) == 3.0
    assert retry_delay(5, response(503, {"Retry-After": "0"})) == 0.0
    too_long = retry_delay(0, response(503, {"Retry-After": "3600"}))  # not honoured: backoff instead
    assert 0.375 <= too_long <= 0.5
    for attempt, nominal in [(0, 0.5), (1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0), (10, 8.0)]:
        delays = [retry_delay(attempt, None) for _ in range(50)]
        assert all(0.75 * nominal <= d <= nominal for d in delays)
        assert len(set(delays)) > 1  # jittered


def test_which_statuses_are_retried():
    assert all(is_retryable_status(s) for s in (408, 429, 500, 502, 503, 504))
    assert not any(is_retryable_status(s) for s in (400, 401, 404, 409, 413, 415, 422))


def test_header_parsing():
    assert parse_retry_after({"retry-after": "2"}) == 2.0
    assert parse_retry_after({"retry-after": "soon"}) is None
    assert parse_retry_after({}) is None
    assert 0 <= parse_retry_after({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}) < 1
    assert parse_poll_interval(httpx.Headers({"Retry-After": "1", "X-Poll-Interval": "0.25"})) == 0.25
    assert parse_poll_interval(httpx.Headers({"Retry-After": "2"})) == 2.0


def test_error_mapping():
    err = make_status_error(response(429, {"Retry-After": "5", "X-Request-ID": "req-1"}, {
        "error": {"type": "rate_limit_error", "code": "queue_full", "message": "queue is full", "param": None}}))
    assert isinstance(err, RateLimitError) and err.retry_after == 5 and err.request_id == "req-1"
    assert (err.code, err.type, err.message) == ("queue_full", "rate_limit_error", "queue is full")
    assert isinstance(make_status_error(response(409, json={})), ConflictError)
    assert type(make_status_error(response(502))) is InternalServerError
    assert isinstance(make_status_error(response(503)), InternalServerError)
    assert type(make_status_error(response(503))) is ServiceUnavailableError
    plain = make_status_error(httpx.Response(500, text="boom", request=httpx.Request("GET", "http://x")))
    assert plain.message == "boom" and plain.body == "boom" and plain.code is None


def event_stream(body: bytes) -> httpx.Response:
    return httpx.Response(200, headers={"content-type": "text/event-stream"}, content=body,
                          request=httpx.Request("GET", "http://x/v1/videos/a/events"))


def test_events_become_jobs_and_keep_alives_and_other_events_are_skipped():
    """What stream_events makes of each event httpx-sse reads (LF or CRLF lines alike)."""
    body = (b": keep-alive\n\n"
            b'data: {"id":"video_1","status":"in_progress","progress":40}\n\n'
            b"event: preview\r\ndata: {\"id\": \"video_1\",\r\ndata: \"step\": 2}\r\n\r\n"
            b'data: not json\n\n'
            b'data: {"id":"video_1","status":"completed",\ndata: "progress":100}\n\n'
            b'data: {"id":"video_1","status":"failed"}')  # no blank line ends it: dropped, as the standard says
    events = list(httpx_sse.EventSource(event_stream(body)).iter_sse())
    reader = _EventReader(previews=False)
    videos = [reader.read(e) for e in events]
    assert [(v.status, v.progress) for v in videos if v is not None] == [("in_progress", 40), ("completed", 100)]
    assert len(events) == 4 and videos[1:3] == [None, None]  # the preview (not asked for) and the non-JSON data


PREVIEW = {"id": "video_1", "steps": 2, "image": "data:image/png;base64," + base64.b64encode(b"\x89PNG-ish").decode(),
           "token_grid": [1, 2, 3], "confidence": base64.b64encode(bytes([0, 51, 102, 153, 204, 255])).decode()}


def preview_event(step: int, decided: float) -> bytes:
    return b"event: preview\ndata: " + json.dumps({**PREVIEW, "step": step, "decided": decided}).encode() + b"\n\n"


def test_previews_are_typed_and_a_reopened_stream_does_not_repeat_them():
    """A reopened stream replays every preview from the first: the reader yields each one once."""
    first = preview_event(1, 0.5) + b'data: {"id":"video_1","status":"in_progress","progress":50}\n\n'
    again = first + preview_event(2, 1.0) + b'data: {"id":"video_1","status":"completed","progress":100}\n\n'
    reader = _EventReader(previews=True)
    items = []
    for body in (first, again):
        reader.reopened()
        items += [x for x in map(reader.read, httpx_sse.EventSource(event_stream(body)).iter_sse()) if x is not None]
    assert [type(x).__name__ for x in items] == ["Preview", "Video", "Video", "Preview", "Video"]
    one, two = items[0], items[3]
    assert isinstance(one, Preview) and (one.step, one.steps, one.decided) == (1, 2, 0.5) and two.step == 2
    assert one.image_type == "image/png" and one.image_bytes == b"\x89PNG-ish"
    assert one.confidence == bytes([0, 51, 102, 153, 204, 255])
    assert one.confidence_map() == [[[0.0, 0.2, 0.4], [0.6, 0.8, 1.0]]]
    assert json.loads(one.model_dump_json())["confidence"] == PREVIEW["confidence"]  # base64 again on the way out


def test_an_error_event_raises():
    events = list(httpx_sse.EventSource(event_stream(b'event: error\ndata: {"message": "store gone"}\n\n')).iter_sse())
    with pytest.raises(KinetoscopeError, match="store gone"):
        _EventReader(previews=False).read(events[0])


def test_edit_params_take_a_mask_a_preset_or_a_box():
    assert _edit_params("video_a", [0, 0.25, 0.5, 1], "inpainting", {"seed": 3}) == {
        "seed": 3, "task": "inpainting", "mask": {"box": [0.0, 0.25, 0.5, 1.0]}, "edit": {"from": "video_a"}}
    assert _edit_params("video_a", "center", "outpainting", {})["mask"] == {"preset": "center"}
    assert _edit_params("video_a", {"preset": "vertical"}, "inpainting", {})["mask"] == {"preset": "vertical"}
    with pytest.raises(TypeError):
        _edit_params("video_a", "center", "inpainting", {"input_video_id": "video_b"})


def test_a_body_that_is_not_an_event_stream_is_a_transport_error():
    """stream_events reopens the stream on a TransportError, and gives up after max_retries."""
    plain = httpx.Response(200, headers={"content-type": "application/json"}, content=b"{}",
                           request=httpx.Request("GET", "http://x/v1/videos/a/events"))
    with pytest.raises(httpx.TransportError):
        list(httpx_sse.EventSource(plain).iter_sse())


def test_input_video_labels(tmp_path):
    png = b"\x89PNG\r\n\x1a\n" + bytes(16)
    assert read_input_video(png) == ("input_video.png", png, "image/png")
    mp4 = b"\x00\x00\x00\x18ftypisom" + bytes(16)
    (tmp_path / "clip.mp4").write_bytes(mp4)
    assert read_input_video(tmp_path / "clip.mp4") == ("clip.mp4", mp4, "video/mp4")
    with open(tmp_path / "clip.mp4", "rb") as f:
        assert read_input_video(f).filename == "clip.mp4"
    with pytest.raises(TypeError):
        read_input_video(io.StringIO("text"))
    with pytest.raises(TypeError):
        read_input_video(12)


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_bar_only_on_a_terminal():
    pytest.importorskip("tqdm")
    assert not ProgressBar(True, io.StringIO()).active
    assert not ProgressBar(False, FakeTerminal()).active
    term = FakeTerminal()
    with ProgressBar(True, term) as bar:
        assert bar.active
        bar.update(Video(id="video_1", status="in_progress", progress=40))
        bar.update(Video(id="video_1", status="completed", progress=100))
    assert "100/100" in term.getvalue() or "100%" in term.getvalue()


def flow_sleeping_then_returning(seconds: float):
    yield Sleep(seconds)
    return "done"


def test_both_drivers_run_the_same_flow():
    with Client("http://127.0.0.1:9") as sync_client:
        start = time.monotonic()
        assert sync_client._run(flow_sleeping_then_returning(0.05)) == "done"
        assert time.monotonic() - start >= 0.05

    async def run_async() -> str:
        async with AsyncClient("http://127.0.0.1:9") as async_client:
            return await async_client._run(flow_sleeping_then_returning(0.05))

    assert asyncio.run(run_async()) == "done"


def test_preview_image_bytes_percent_decodes_a_data_url_without_base64():
    """Review A15: as the JS SDK's decodeURIComponent (a data URL's data is percent-encoded)."""
    preview = Preview(**{**PREVIEW, "step": 1, "decided": 0.5, "image": "data:image/png,%89PNG%0D%0A%1A%0A-raw"})
    assert preview.image_bytes == b"\x89PNG\r\n\x1a\n-raw"
