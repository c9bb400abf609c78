"""GET /v1/videos/{id}/events on the wire: the exact bytes, the keep-alive of an idle stream, and
what a client disconnect does on the server.

These drive the ASGI app directly (httpx's ASGITransport returns only once a response has ended,
and an idle event stream never ends by itself), with a `receive` that can say the client left.
"""
from __future__ import annotations

import asyncio
import contextvars
import json


_IN_STREAM = contextvars.ContextVar("in_stream", default=False)  # set while a Stream's request runs


class Stream:
    """One GET on the app: the body chunks as they are sent, and a way to hang up."""

    def __init__(self, app, path: str):
        self.chunks: list[bytes] = []
        self.headers: dict[str, str] = {}
        self.ended = False
        self._hang_up = asyncio.Event()
        self._new_chunk = asyncio.Event()
        self._requested = False
        scope = {"type": "http", "asgi": {"version": "3.0", "spec_version": "2.3"}, "http_version": "1.1",
                 "method": "GET", "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": b"",
                 "root_path": "", "headers": [(b"host", b"test"), (b"accept", b"text/event-stream")],
                 "client": ("127.0.0.1", 50000), "server": ("test", 80)}
        token = _IN_STREAM.set(True)  # the request's task, and every task it starts, inherit it
        try:
            self.task = asyncio.create_task(app(scope, self._receive, self._send))
        finally:
            _IN_STREAM.reset(token)

    async def _receive(self) -> dict:
        if not self._requested:
            self._requested = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await self._hang_up.wait()
        return {"type": "http.disconnect"}

    async def _send(self, message: dict) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]
            self.headers = {k.decode().lower(): v.decode() for k, v in message["headers"]}
        elif message["type"] == "http.response.body":
            if message.get("body"):
                self.chunks.append(message["body"])
                self._new_chunk.set()
            if not message.get("more_body", False):
                self.ended = True

    @property
    def text(self) -> str:
        return b"".join(self.chunks).decode()

    async def wait_for(self, needle: str, timeout: float = 5.0) -> None:
        async def until() -> None:
            while needle not in self.text:
                self._new_chunk.clear()
                await self._new_chunk.wait()

        await asyncio.wait_for(until(), timeout)

    def hang_up(self) -> None:
        self._hang_up.set()


def job_events(text: str) -> list[dict]:
    return [json.loads(block[len("data: "):]) for block in text.split("\n\n") if block.startswith("data: ")]


async def create(api, class_label: int = 3) -> str:
    r = await api.client.post("/v1/videos", json={"task": "class_conditional", "class_label": class_label})
    assert r.status_code == 202, r.text
    return r.json()["id"]


async def test_wire_format_is_lf_separated_data_events_that_end_after_the_terminal_status(make_api):
    async with make_api(worker=True) as api:
        job_id = await create(api)
        stream = Stream(api.app, f"/v1/videos/{job_id}/events")
        await asyncio.wait_for(stream.task, 30)
        assert stream.status == 200 and stream.ended
        assert stream.headers["content-type"].startswith("text/event-stream")
        assert stream.headers["cache-control"] == "no-cache" and stream.headers["x-accel-buffering"] == "no"
        text = stream.text
        assert "\r" not in text, "events are separated by LF, as the API docs show"
        blocks = text.split("\n\n")
        assert blocks[-1] == "" and all(b.startswith(("data: {", ": ")) and "\n" not in b for b in blocks[:-1]), blocks
        events = job_events(text)
        assert events[-1]["status"] == "completed" and all(e["id"] == job_id for e in events)
        # compact JSON, as before: no spaces after separators
        assert blocks[-2] == "data: " + json.dumps(events[-1], separators=(",", ":"))


async def test_an_idle_stream_gets_keep_alive_comments(make_api):
    async with make_api(sse_keepalive_seconds=0.2) as api:  # no worker: the job stays queued and nothing changes
        job_id = await create(api)
        stream = Stream(api.app, f"/v1/videos/{job_id}/events")
        try:
            await stream.wait_for("data: ")
            await stream.wait_for(": keep-alive\n\n", timeout=3)
            first = stream.text.index(": keep-alive\n\n")
            await stream.wait_for(": keep-alive\n\n: keep-alive\n\n", timeout=3)  # and again
            assert stream.text.startswith("data: {") and first > 0
            assert [e["status"] for e in job_events(stream.text)] == ["queued"]
            assert not stream.ended
        finally:
            stream.hang_up()
            await asyncio.wait_for(stream.task, 5)


async def test_a_client_disconnect_stops_the_server_side_generator(make_api, monkeypatch):
    async with make_api(sse_keepalive_seconds=0.2) as api:
        job_id = await create(api)
        watching: list[str] = []
        original_watch = api.queue.watch

        async def watch(video_id: str, *args, **kwargs):
            watching.append(video_id)
            try:
                async for job in original_watch(video_id, *args, **kwargs):
                    yield job
            finally:
                watching.remove(video_id)

        monkeypatch.setattr(api.queue, "watch", watch)

        spawned: list[asyncio.Task] = []  # every task the streams' requests start, however deep
        loop = asyncio.get_running_loop()

        def record(loop, coro, **kwargs):
            task = asyncio.Task(coro, loop=loop, **kwargs)
            if _IN_STREAM.get():
                spawned.append(task)
            return task

        loop.set_task_factory(record)
        try:
            streams = [Stream(api.app, f"/v1/videos/{job_id}/events") for _ in range(3)]
            for stream in streams:
                await stream.wait_for(": keep-alive")
            assert watching == [job_id] * 3
            for stream in streams:
                stream.hang_up()
            await asyncio.wait_for(asyncio.gather(*(s.task for s in streams)), 5)
        finally:
            loop.set_task_factory(None)
        assert watching == [], "the job watch went on after the client left"
        await asyncio.sleep(0.5)  # longer than a ping interval and the queue's poll interval
        # sse-starlette keeps one shutdown watcher per event loop (not per stream); nothing else may stay
        left = [t for t in spawned if not t.done() and "_shutdown_watcher" not in repr(t.get_coro())]
        assert len(spawned) > 3 and left == [], left
