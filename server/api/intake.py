"""Turning a POST /v1/videos request into a job: the body (JSON or multipart), the input video's
bytes (base64, an uploaded file, or a previous job's output) and a check of that video, so
that corrupt, oversized or unsupported inputs are refused here (400/413/415) and never reach a
worker. The check decodes every frame but keeps none (server/video_decode.py check_input): the worker
decodes the frames it uses once, and a large input costs the API one frame, not the video. At
most settings.max_concurrent_decodes inputs are read at once per process (`read_video`)."""
from __future__ import annotations

import base64
import binascii
import hashlib
import time
import json
import math
import re
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, TypeVar, overload

from fastapi import Request
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from server.api.errors import APIError, validation_error
from server.api.schemas import VideoCreateRequest
from server.api.validation import (check_input_frames, check_input_source, check_metadata, choose_manifest,
                                   normalize_request)
from server.api.views import caller, get_job_or_404, public_base
from server.catalogue import Catalogue
from server.jobs.base import Job, JobQueue, new_job_id
from server.request import VideoRequest
from server.settings import Settings
from server.video import blaming, check_input
from server.jobs.webhooks import webhook_config
from server.webhooks import check_url

JSON_FORM_FIELDS = ("mask", "sampler", "metadata", "webhook_events", "edit")  # objects travel as JSON text in multipart forms
UPLOADED = ""  # the request's input_video when the bytes came as a file part


async def build_job(request: Request, settings: Settings, queue: JobQueue, catalogue: Catalogue) -> tuple[Job, bytes | None]:
    """A create request -> the job to submit and its input video bytes, or APIError. Sets
    `request.state.task` once the task is known (for the request metrics)."""
    parsed = await parse_body(request, settings)
    cancel_after = request.headers.get("cancel-after")
    if cancel_after is not None and parsed.request.deadline_seconds is None:  # Replicate's header
        parsed.request = parsed.request.model_copy(update={"deadline_seconds": parse_duration(cancel_after)})
    request.state.task = parsed.request.task
    manifest = choose_manifest(catalogue, parsed.request.model)
    if parsed.request.edit is not None:  # the source job decides the clip's length and size
        check_input_source(parsed.request)
        parsed.request = await edit_source(parsed.request, manifest, queue, request)
    normalized = normalize_request(parsed.request, manifest, settings)
    if normalized.edit_from is not None:  # an edit's input is its source's token document
        input_video, frames = await edit_tokens(queue, normalized.edit_from), None
    else:
        input_video, frames = await load_input(parsed, normalized, queue, settings, request)
    if frames is not None:
        check_input_frames(normalized, frames)
    job = Job(id=new_job_id(), model=manifest.model_id, request=normalized,
              deadline_at=time.time() + normalized.deadline_seconds,
              metadata=check_metadata(parsed.request.metadata, settings), fingerprint=parsed.fingerprint(),
              owner=caller(request), webhook=await load_webhook(parsed.request, settings, request))
    return job, input_video


async def edit_source(req: VideoCreateRequest, manifest, queue: JobQueue, request: Request) -> VideoCreateRequest:
    """An edit's source job -> the request with the source's num_frames and size filled in.
    404/409/422 for a source it cannot edit."""
    source_id = req.edit.from_
    source = await get_job_or_404(queue, source_id, request, param="edit.from")
    if source.status != "completed":
        raise APIError(409, "video_not_ready", f"job {source_id} is {source.status}; only a completed job can be "
                       "edited", param="edit.from")
    if source.model != manifest.model_id:
        raise APIError(422, "invalid_value", f"job {source_id} was made by model {source.model}, not "
                       f"{manifest.model_id}: an edit keeps the source's tokens, so it needs the same model",
                       param="edit.from")
    if req.num_frames is not None and req.num_frames != source.num_frames:
        raise APIError(422, "invalid_value", f"an edit keeps its source's {source.num_frames} frames; got "
                       f"num_frames {req.num_frames}", param="num_frames")
    return req.model_copy(update={"num_frames": source.num_frames, "size": req.size or source.size})


async def edit_tokens(queue: JobQueue, source_id: str) -> bytes:
    """The source's token document: the edit job's input."""
    document = await queue.get_content(source_id, "tokens")
    if document is None:
        raise APIError(404, "content_not_found", f"the tokens of job {source_id} have expired or were deleted",
                       param="edit.from")
    return document


async def load_webhook(req: VideoCreateRequest, settings: Settings, request: Request) -> dict[str, Any] | None:
    """The job's webhook (server/webhooks.py), or APIError 422: the URL is checked here, host
    resolution included, so a refused one never makes a job."""
    if req.webhook is None:
        if req.webhook_events is not None:
            raise APIError(422, "missing_field", "webhook_events needs a webhook URL", param="webhook")
        return None
    if not settings.webhook_secret:
        raise APIError(422, "webhooks_disabled", "this server has no webhook secret (KINETOSCOPE_WEBHOOK_SECRET), "
                       "so it sends no webhooks", param="webhook")
    await run_in_threadpool(check_url, req.webhook, settings.webhook_allow_private_addresses)
    events = list(dict.fromkeys(req.webhook_events)) if req.webhook_events else None
    return webhook_config(req.webhook, events, public_base(request), settings.webhook_progress_step)


@dataclass
class ParsedRequest:
    request: VideoCreateRequest
    upload: bytes | None  # the file part's bytes (multipart), if any

    def fingerprint(self) -> str:
        """The same for every retry of one request (JSON or multipart, whatever the boundary)."""
        digest = hashlib.sha256(self.request.model_dump_json(exclude_none=True).encode())
        digest.update(hashlib.sha256(self.upload or b"").digest())
        return digest.hexdigest()


async def parse_body(request: Request, settings: Settings) -> ParsedRequest:
    """JSON (strict types: "16" is not a number) or multipart/form-data (form text is coerced)."""
    media = request.headers.get("content-type", "application/json").split(";")[0].strip().lower()
    if media == "application/json" or media.endswith("+json"):
        return ParsedRequest(_from_json(await request.body()), None)
    if media == "multipart/form-data":
        return await _from_multipart(request, settings)
    raise APIError(415, "unsupported_media_type",
                   f"send application/json or multipart/form-data, not {media!r}")


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}


def parse_duration(text: str) -> float:
    """`Cancel-After: 30`, `30s`, `1.5m`, `2h`, `500ms` -> seconds (> 0), else 422."""
    match = _DURATION.match(text)
    seconds = float(match.group(1)) * _UNIT_SECONDS[match.group(2)] if match else 0.0
    if not seconds > 0 or not math.isfinite(seconds):
        raise APIError(422, "invalid_value", f"Cancel-After must be a positive duration such as 30s, 5m or 1h; "
                       f"got {text[:40]!r}", param="Cancel-After")
    return seconds


def _from_json(body: bytes) -> VideoCreateRequest:
    if not body.strip():
        raise APIError(400, "invalid_json", "the request body is empty; send a JSON object")
    try:
        return VideoCreateRequest.model_validate_json(body, strict=True)
    except ValidationError as exc:
        errors = exc.errors()
        if errors[0]["type"] == "json_invalid":
            raise APIError(400, "invalid_json", f"the body is not valid JSON: {errors[0]['msg']}") from None
        if errors[0]["type"] == "model_type" and not errors[0]["loc"]:  # the body itself, not a nested field
            raise APIError(400, "invalid_json", "the body must be a JSON object") from None
        raise validation_error(errors) from None


async def _from_multipart(request: Request, settings: Settings) -> ParsedRequest:
    form = await request.form(max_files=1, max_fields=32, max_part_size=settings.max_body_bytes)
    try:
        fields: dict[str, Any] = {}
        upload: bytes | None = None
        for name in set(form.keys()):
            values = form.getlist(name)
            if len(values) > 1:
                raise APIError(422, "invalid_value", f"form field {name!r} is given {len(values)} times", param=name)
            value = values[0]
            if isinstance(value, UploadFile):
                if name != "input_video":
                    raise APIError(422, "unknown_field", f"the only file part is input_video, not {name!r}", param=name)
                upload = await value.read(settings.max_upload_bytes + 1)
                if len(upload) > settings.max_upload_bytes:
                    raise APIError(413, "upload_too_large",
                                   f"input_video is larger than {settings.max_upload_bytes} bytes", param="input_video")
                fields[name] = UPLOADED
            elif value != "":  # an empty form field means "not given"
                fields[name] = _json_field(name, value) if name in JSON_FORM_FIELDS else value
    finally:
        await form.close()
    try:
        return ParsedRequest(VideoCreateRequest.model_validate(fields), upload)
    except ValidationError as exc:
        raise validation_error(exc.errors()) from None


def _json_field(name: str, value: str) -> Any:
    if not value.lstrip().startswith(("{", "[")):
        return value  # a short form (mask=center, sampler=autoregressive); the schema judges it
    try:
        return json.loads(value)
    except (json.JSONDecodeError, RecursionError):  # RecursionError: nested too deep to be a mask or sampler
        raise APIError(422, "invalid_value", f"form field {name} must be JSON text, e.g. "
                       + ('{"preset": "center"}' if name == "mask" else '{"steps": 12}'), param=name) from None


def decode_base64(text: str, max_bytes: int) -> bytes:
    """Standard or URL-safe base64, padding optional, whitespace ignored, `data:` URLs accepted."""
    text = text.strip()
    if text.startswith("data:"):
        header, _, text = text.partition(",")
        if not header.endswith(";base64"):
            raise APIError(400, "invalid_base64", "a data: URL input_video must be base64 (data:video/mp4;base64,...)",
                           param="input_video")
    text = "".join(text.split())
    if len(text) * 3 // 4 > max_bytes + 2:  # refuse before decoding a huge string
        raise APIError(413, "upload_too_large", f"input_video is larger than {max_bytes} bytes", param="input_video")
    padded = text + "=" * (-len(text) % 4)
    try:
        data = base64.b64decode(padded, altchars=b"-_" if ("-" in text or "_" in text) else None, validate=True)
    except (binascii.Error, ValueError):
        raise APIError(400, "invalid_base64", "input_video is not valid base64", param="input_video") from None
    if not data:
        raise APIError(400, "invalid_video", "input_video is empty", param="input_video")
    if len(data) > max_bytes:
        raise APIError(413, "upload_too_large", f"input_video is larger than {max_bytes} bytes", param="input_video")
    return data


async def load_input(parsed: ParsedRequest, normalized: VideoRequest, queue: JobQueue,
                     settings: Settings, request: Request) -> tuple[bytes | None, int | None]:
    """The input video's bytes and frame count, or (None, None) for tasks without an input."""
    if not normalized.has_input:
        return None, None
    req = parsed.request
    if req.input_video_id is not None:
        data, param = await _previous_output(queue, req.input_video_id, request), "input_video_id"
    elif parsed.upload is not None:
        data, param = parsed.upload, "input_video"
    else:
        data, param = decode_base64(req.input_video or "", settings.max_upload_bytes), "input_video"
    if not data:
        raise APIError(400, "invalid_video", "input_video is empty", param=param)
    video = await read_video(request, check_input, data, settings, param)
    if video.truncated and normalized.task == "frame_interpolation":
        raise APIError(413, "video_too_long", f"frame_interpolation uses the input's last frame, and this input has "
                       f"more than max_input_frames ({settings.max_input_frames}) frames; send a shorter clip",
                       param=param)
    return data, video.num_frames


Read = TypeVar("Read")
Used = TypeVar("Used")


@overload
async def read_video(request: Request, read: Callable[[bytes, Settings], Read], data: bytes, settings: Settings,
                     param: str = ..., then: None = None) -> Read: ...
@overload
async def read_video(request: Request, read: Callable[[bytes, Settings], Read], data: bytes, settings: Settings,
                     param: str = ..., *, then: Callable[[Read], Awaitable[Used]]) -> Used: ...
async def read_video(request: Request, read: Callable[[bytes, Settings], Read], data: bytes, settings: Settings,
                     param: str = "input_video", then: Callable[[Read], Awaitable[Used]] | None = None) -> Read | Used:
    """`read(data, settings)` (check_input or decode_input) in a worker thread (decoding is CPU
    work: off the event loop), at most `max_concurrent_decodes` at once in this process (each
    may hold a frame or a whole video: unbounded, a burst of large uploads adds them all up);
    a VideoError names `param`. `then(video)`: what uses the frames, awaited (and its result
    returned) while the slot is still held, so that the frames it keeps alive count against the
    bound too."""
    async with request.app.state.decode_slots:
        with blaming(param):
            video = await run_in_threadpool(read, data, settings)
        return video if then is None else await then(video)


async def _previous_output(queue: JobQueue, job_id: str, request: Request) -> bytes:
    job = await get_job_or_404(queue, job_id, request, param="input_video_id")
    if job.status != "completed":
        raise APIError(409, "video_not_ready", f"job {job_id} is {job.status}; only a completed job's video can be an input",
                       param="input_video_id")
    data = await queue.get_content(job_id, "video")
    if data is None:
        raise APIError(404, "video_not_found", f"the content of job {job_id} has expired or was deleted",
                       param="input_video_id")
    return data
