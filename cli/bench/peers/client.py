"""The load driver's HTTP side for a peer (`kinetoscope bench --target litserve|fastapi`).

A peer has no job API: one POST of the create body answers with the video itself, so a request is
that one call (no polling, no download). The body is the one Kinetoscope gets (the same
`_Session.body`: seed, class label, mask, steps), with the input video as base64 as in JSON
create bodies. The queue and compute seconds and the predict call's size and id come from the
response headers (cli/bench/peers/common.py). Nothing is retried.
"""
from __future__ import annotations

import base64
import time
from typing import Any

import httpx

from cli.bench.client import _Session, header_seconds
from cli.bench.options import BenchError
from cli.bench.peers.common import BATCH_ID_HEADER, BATCH_SIZE_HEADER, COMPUTE_HEADER, QUEUE_HEADER, VIDEOS_PATH
from cli.bench.stats import RequestRecord


def response_error(response: httpx.Response) -> str:
    """"<status>/<code>": the code of the API's error shape, else of LitServe's own {"detail"}."""
    try:
        body = response.json()
    except ValueError:
        return f"{response.status_code}/unknown"
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict) and error.get("code"):
        return f"{response.status_code}/{error['code']}"
    return f"{response.status_code}/{'litserve' if isinstance(body, dict) and 'detail' in body else 'unknown'}"


def _int_header(response: httpx.Response, name: str) -> int | None:
    try:
        return int(response.headers[name])
    except (KeyError, ValueError):
        return None


class PeerSession(_Session):
    """A run against a peer: same bodies and report as against Kinetoscope, one POST a request."""

    def __init__(self, base_url: str, http: httpx.AsyncClient, **options):
        super().__init__(None, http, **options)
        self.base_url = base_url.rstrip("/")
        self.timeout = httpx.Timeout(30.0, read=self.request_timeout_s)

    def body(self, task: str, index: int) -> dict[str, Any]:
        body = super().body(task, index)
        if isinstance(body.get("input_video"), bytes):
            body["input_video"] = base64.b64encode(body["input_video"]).decode()
        return body

    async def post(self, body: dict[str, Any]) -> httpx.Response:
        return await self.http.post(self.base_url + VIDEOS_PATH, json=body, timeout=self.timeout)

    async def request(self, index: int, task: str, start: float) -> RequestRecord:
        """One measured request, never raising: every outcome ends up in the record."""
        sent = time.monotonic()
        record = RequestRecord(index=index, task=task, sent_at=sent - start, steps=self.steps_for(index))
        try:
            response = await self.post(self.body(task, index))
        except httpx.TimeoutException:
            record.error = "timeout/request"
            return record
        except httpx.HTTPError as e:
            record.error = f"transport/{type(e).__name__}"
            return record
        record.queue_s = header_seconds(response.headers, QUEUE_HEADER)
        record.compute_s = header_seconds(response.headers, COMPUTE_HEADER)
        record.batch_size = _int_header(response, BATCH_SIZE_HEADER)
        record.batch_id = _int_header(response, BATCH_ID_HEADER)
        if not response.is_success:
            record.error = response_error(response)
            return record
        record.ok, record.latency_s, record.content_bytes = True, time.monotonic() - sent, len(response.content)
        return record

    async def discover_num_classes(self) -> None:
        """The classes from GET /info (LitServe's model_metadata; the FastAPI peer says the same).
        Also the first contact: an unreachable URL fails here."""
        try:
            response = await self.http.get(self.base_url + "/info", timeout=self.timeout)
        except httpx.HTTPError as e:
            raise BenchError(f"cannot reach {self.base_url}: {type(e).__name__}: {e}") from None
        try:
            model = response.json()["model"]
            classes = model["classes"]
            self.model_id = model.get("id")
        except (ValueError, KeyError, TypeError, AttributeError):
            return  # every class-conditional request uses label 0
        if classes:
            self.num_classes = len(classes)

    async def make_input_video(self) -> None:
        """The conditional tasks' input: one class_conditional video from the peer."""
        try:
            response = await self.post(self.body("class_conditional", 0))
        except httpx.HTTPError as e:
            raise BenchError(f"could not make an input video: transport/{type(e).__name__} ({e})") from None
        if not response.is_success:
            raise BenchError(f"could not make an input video with a class_conditional request: {response_error(response)}")
        self.input_video = response.content

    async def scrape_batch_histogram(self) -> None:
        return None  # a peer has no /metrics: its batches come from the response headers
