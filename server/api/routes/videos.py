"""/v1/videos: create, read, list, stream, download, cancel and delete generation jobs."""
from __future__ import annotations

import base64

import json
import logging
from typing import Annotated, Any, AsyncIterator, Literal

from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import JSONResponse, Response
from sse_starlette import EventSourceResponse, ServerSentEvent

from server import metrics
from server.api.deps import Authenticated, CatalogueDep, QueueDep, SettingsDep, scoped_idempotency_key
from server.api.errors import APIError
from server.api.intake import build_job
from server.api.ranges import RangeNotSatisfiable, parse_range
from server.api.schemas import ErrorResponse, Status, TaskName, VideoDeleted, VideoJob, VideoList
from server.api.views import (POLL_HEADER, can_see, get_job_or_404, job_view, parse_prefer_wait, poll_headers, public_base,
                              wait_until_terminal)
from server.errors import KinetoscopeError
from server.jobs.base import CONTENT_VARIANTS, Job
from server.output import FRAMES_MEDIA_TYPE, OUTPUT_FORMATS

logger = logging.getLogger("kinetoscope.api")
router = APIRouter(prefix="/v1/videos", tags=["videos"], dependencies=Authenticated)



def _errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    return {s: {"model": ErrorResponse} for s in (401, *statuses)}


_POLL_HEADERS = {
    "Retry-After": {"description": "while unfinished: whole seconds until the next poll", "schema": {"type": "integer"}},
    POLL_HEADER: {"description": "while unfinished: suggested poll interval in seconds (fractions allowed)",
                  "schema": {"type": "number"}},
}
_CREATE_HEADERS = {
    **_POLL_HEADERS,
    "Location": {"description": "the job's URL", "schema": {"type": "string"}},
    "Idempotent-Replayed": {"description": "`true` when an Idempotency-Key repeat returned the existing job",
                            "schema": {"type": "string"}},
    "Preference-Applied": {"description": "`wait=N` when Prefer: wait was honoured", "schema": {"type": "string"}},
}
# One server-sent event (OpenAPI 3.1: a text/event-stream schema describes each event): job
# events are unnamed ("message"), previews are named `preview`; `data` is JSON text.
_SSE_EVENT = {
    "type": "object", "required": ["data"],
    "properties": {
        "event": {"type": "string", "enum": ["message", "preview"], "description": "absent (message): the job object"},
        "data": {"type": "string", "contentMediaType": "application/json",
                 "description": "a job object (VideoJob), or a preview's {id, step, steps, decided, image, "
                                "token_grid, confidence}"},
        "id": {"type": "string"}, "retry": {"type": "integer"},
    },
}
# What a created job's id leads to (OpenAPI links: clients and fuzzers follow them with the real id).
_JOB_LINKS = {name: {"operationId": operation, "parameters": {"video_id": "$response.body#/id"}}
              for name, operation in (("GetVideo", "get_video"), ("VideoEvents", "video_events"),
                                      ("VideoContent", "video_content"), ("CancelVideo", "cancel_video"),
                                      ("DeleteVideo", "delete_video"))}
# variant=tokens and variant=confidence: JSON documents, not bytes.
_TOKEN_DOCUMENT = {
    "type": "object", "required": ["model", "token_grid", "windows"],
    "description": 'tokens: {"model", "token_grid", "vocab_size", "windows"}; confidence: {"model", "token_grid", '
                   '"scale", "windows"}; each window a flat raster list of t*h*w integers',
    "properties": {"model": {"type": "string"}, "token_grid": {"type": "array", "items": {"type": "integer"}},
                   "vocab_size": {"type": "integer"}, "scale": {"type": "integer"},
                   "windows": {"type": "array", "items": {"type": "array", "items": {"type": "integer"}}}},
}
_EXAMPLE_PNG = ("iVBORw0KGgoAAAANSUhEUgAAAAgAAAAICAIAAABLbSncAAAAIElEQVR4nGNgIBUwQqj///8jhBgZGRgYmHDpIF2CdAAAraEDCCHdskgAAAAASUVO"
                "RK5CYII=")  # a white square on black
_CREATE_BODY = {
    "required": True,
    "content": {
        "application/json": {"schema": {"$ref": "#/components/schemas/VideoCreateRequest"}, "examples": {
            "class_conditional": {"summary": "a clip of class 0, the model's defaults",
                                  "value": {"task": "class_conditional", "class_label": 0}},
            "seeded": {"summary": "the same clip again: a fixed seed, high priority, metadata",
                       "value": {"task": "class_conditional", "class_label": 0, "seed": 7, "priority": "high",
                                 "metadata": {"user": "u_123"}}},
            "inpainting": {"summary": "inpaint the centre of a still image (an 8x8 PNG, base64)",
                           "value": {"task": "inpainting", "mask": {"preset": "center"}, "input_video": _EXAMPLE_PNG}},
        }},
        "multipart/form-data": {"schema": {"$ref": "#/components/schemas/VideoCreateMultipart"}},
    },
}


@router.post(
    "",
    status_code=202,
    response_model=VideoJob,
    summary="Create a video generation job",
    description=(
        "Validates the request (and decodes the input video) and queues the job.\n\n"
        "**Status**: `202` with the job as it stands; `200` when the job is already finished (only possible "
        "with `Prefer: wait=N`, or an `Idempotency-Key` repeat of a finished job).\n\n"
        "**Idempotency-Key**: a repeat of a key returns the first job (same status rules, header "
        "`Idempotent-Replayed: true`); the repeat's body is not compared and never makes a second job.\n\n"
        "**Prefer: wait=N**: holds the request up to min(N, the server's max_wait_seconds) seconds for the job to "
        "finish.\n\n"
        "**Body**: JSON with `input_video` as base64 (or a `data:` URL), or multipart/form-data with the file part "
        "`input_video` and every other field as a form field; `mask` and `sampler` are JSON text there.\n\n"
        "**Errors**: 400 malformed JSON, bad base64, corrupt video; 404 unknown `model` or `input_video_id` "
        "(`param` says which); 409 `input_video_id` not completed; 413 body or video too large; 415 unsupported "
        "content type or video format; 422 invalid field (`param` names it); 429 queue full (`Retry-After`)."),
    openapi_extra={"requestBody": _CREATE_BODY},
    responses={
        200: {"model": VideoJob, "description": "the job finished within Prefer: wait", "headers": _CREATE_HEADERS,
              "links": _JOB_LINKS},
        202: {"description": "the job, queued or running", "headers": _CREATE_HEADERS, "links": _JOB_LINKS},
        **_errors(400, 404, 409, 413, 415, 422, 503),
        429: {"model": ErrorResponse, "description": "the queue is full",
              "headers": {"Retry-After": {"schema": {"type": "integer"}}}},
    },
)
async def create_video(
    request: Request, settings: SettingsDep, queue: QueueDep, catalogue: CatalogueDep,
    idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key", max_length=255,
                                                  description="repeat-safe creation: same key, same job")] = None,
    prefer: Annotated[str | None, Header(alias="Prefer", description="`wait=N`: hold the request up to N seconds")] = None,
) -> Response:
    try:
        job, input_video = await build_job(request, settings, queue, catalogue)
        new_fingerprint = job.fingerprint
        job, created = await queue.submit(job, input_video,  # QueueFull: a 429 with Retry-After
                                          idempotency_key=scoped_idempotency_key(request, idempotency_key))
        if not created and job.fingerprint and job.fingerprint != new_fingerprint:
            raise APIError(422, "idempotency_key_reused", "this Idempotency-Key was used for another request "
                           f"(job {job.id}); use a new key for a new request", param="Idempotency-Key")
    except KinetoscopeError as exc:
        task = getattr(request.state, "task", "unknown")  # bounded: set only once the task parsed
        metrics.requests_total.labels(task=task, status=str(exc.status)).inc()
        logger.info("create refused: %s", exc.message, extra={"task": task, "status": exc.status})
        raise
    task = job.task
    logger.info("job created" if created else "idempotent repeat", extra={"job_id": job.id, "model": job.model, "task": task})

    headers = {"Location": f"/v1/videos/{job.id}"}
    if not created:
        headers["Idempotent-Replayed"] = "true"
    wait = parse_prefer_wait(prefer, settings.max_wait_seconds)
    if wait is not None:
        job = await wait_until_terminal(queue, job.id, wait) or job
        headers["Preference-Applied"] = f"wait={wait:g}"
    headers.update(poll_headers(settings, job))
    status = 200 if job.terminal else 202
    metrics.requests_total.labels(task=task, status=str(status)).inc()
    return JSONResponse(await job_view(queue, job, public_base(request)), status_code=status, headers=headers)


@router.get("", response_model=VideoList, summary="List recent jobs, newest first", responses=_errors(422))
async def list_videos(
    request: Request, queue: QueueDep, catalogue: CatalogueDep,
    after: Annotated[str | None, Query(description="a job id: list the jobs after it (the previous page's last_id)")] = None,
    limit: Annotated[int, Query(ge=1, le=100, description="page size")] = 20,
    status: Annotated[Status | None, Query(description="only jobs with this status")] = None,
    task: Annotated[TaskName | None, Query(description="only jobs of this task")] = None,
    model: Annotated[str | None, Query(min_length=1, description="only jobs of this model id")] = None,
) -> dict[str, Any]:
    if model is not None and model not in catalogue.manifests:
        raise APIError(422, "invalid_value", f"no model {model!r}; this server has: {', '.join(sorted(catalogue.manifests))}",
                       param="model")
    wanted = {k: v for k, v in (("status", status), ("task", task), ("model", model)) if v is not None}
    where = (lambda job: can_see(request, job) and all(getattr(job, k) == v for k, v in wanted.items()))
    jobs, has_more = await queue.list(after=after, limit=limit, where=where)
    base = public_base(request)
    data = [await job_view(queue, job, base) for job in jobs]
    return {"object": "list", "data": data, "has_more": has_more,
            "first_id": data[0]["id"] if data else None, "last_id": data[-1]["id"] if data else None}


@router.get("/{video_id}", response_model=VideoJob, summary="Get a job",
            description="While the job is unfinished, `Retry-After` and `X-Poll-Interval` suggest when to poll "
                        "again. `Prefer: wait=N` holds the request until the job finishes or N seconds pass.",
            responses={200: {"headers": _POLL_HEADERS}, **_errors(404)})
async def get_video(
    request: Request, video_id: str, settings: SettingsDep, queue: QueueDep,
    prefer: Annotated[str | None, Header(alias="Prefer", description="`wait=N`: hold up to N seconds for the job to finish")] = None,
) -> Response:
    job = await get_job_or_404(queue, video_id, request)
    headers: dict[str, str] = {}
    wait = parse_prefer_wait(prefer, settings.max_wait_seconds)
    if wait is not None and not job.terminal:
        job = await wait_until_terminal(queue, video_id, wait) or job
        headers["Preference-Applied"] = f"wait={wait:g}"
    headers.update(poll_headers(settings, job))
    return JSONResponse(await job_view(queue, job, public_base(request)), headers=headers)


@router.get("/{video_id}/events", summary="Stream the job's changes (server-sent events)",
            description="`text/event-stream`: one `data: <job JSON>` event now and at each change; the stream "
                        "ends after a terminal status. A job created with `\"previews\": true` also gets an "
                        "`event: preview` per MaskGIT step (autoregressive sampler: every ar_preview_every_tokens "
                        "tokens and at each window's end), data `{\"id\", \"step\", \"steps\", \"decided\", "
                        "\"image\", \"token_grid\", \"confidence\"}` (`image`: a PNG data URL of the clip's frames "
                        "side by side; `confidence`: base64 of one byte per token), before the job "
                        "event of the same change. A `: keep-alive` comment is sent every sse_keepalive_seconds "
                        "(a setting, 15 s by default) to keep proxies from closing a quiet stream.",
            response_class=EventSourceResponse,
            responses={200: {"content": {"text/event-stream": {"schema": _SSE_EVENT}},
                             "description": "events whose data is a job object"}, **_errors(404)})
async def video_events(request: Request, video_id: str, queue: QueueDep, settings: SettingsDep) -> EventSourceResponse:
    await get_job_or_404(queue, video_id, request)
    base = public_base(request)

    async def events() -> AsyncIterator[ServerSentEvent]:
        # Ends after a terminal status (watch does). When the client goes away, sse-starlette
        # cancels this generator where it waits, and the cancellation ends queue.watch with it.
        sent_previews, last = 0, None
        async for job in queue.watch(video_id):
            if job.previews > sent_previews:  # every preview, in order, even when several came at once
                for preview in await queue.get_previews(video_id, sent_previews):
                    yield ServerSentEvent(json.dumps({"id": video_id, **preview}, separators=(",", ":")),
                                          event="preview", sep="\n")
                    sent_previews += 1
            view = await job_view(queue, job, base)
            if view != last:  # a change that only added previews is not a job event
                last = view
                yield ServerSentEvent(json.dumps(view, separators=(",", ":")), sep="\n")

    # sep="\n" and the comment keep the wire format of the API docs (the library's default is CRLF
    # and a timestamped ": ping"); Cache-Control as before (the library's default is no-store).
    return EventSourceResponse(
        events(), ping=settings.sse_keepalive_seconds, sep="\n", headers={"Cache-Control": "no-cache"},
        ping_message_factory=lambda: ServerSentEvent(comment="keep-alive", sep="\n"),
    )


def _media_type(job: Job, variant: str) -> tuple[str, str]:
    """(MIME type, file extension) of one content variant of a job."""
    if variant == "video":
        fmt = job.request.output_format
        return OUTPUT_FORMATS[fmt], fmt
    return {"thumbnail": ("image/png", "png"), "frames": (FRAMES_MEDIA_TYPE, "zip"),
            "tokens": ("application/json", "json"), "confidence": ("application/json", "confidence.json")}[variant]


@router.head("/{video_id}/content", include_in_schema=False)
@router.get(
    "/{video_id}/content", summary="Download the video, its thumbnail (PNG) or its lossless frames (zip of PNGs)",
    description="Single byte ranges work (`Range: bytes=a-b`, `a-`, `-n`): 206 with `Content-Range`; 416 when the "
                "range starts past the end. 409 until the job has completed.",
    response_class=Response,
    responses={
        200: {"content": {**{t: {"schema": {"type": "string", "format": "binary"}}
                             for t in (*OUTPUT_FORMATS.values(), "image/png", FRAMES_MEDIA_TYPE)},
                          "application/json": {"schema": _TOKEN_DOCUMENT}},
              "headers": {"Accept-Ranges": {"schema": {"type": "string"}}, "ETag": {"schema": {"type": "string"}}}},
        206: {"description": "the requested byte range",
              "content": {t: {} for t in (*OUTPUT_FORMATS.values(), "image/png", FRAMES_MEDIA_TYPE, "application/json")},
              "headers": {"Content-Range": {"schema": {"type": "string"}}}},
        **_errors(404, 409, 422),
        416: {"model": ErrorResponse, "description": "range not satisfiable",
              "headers": {"Content-Range": {"schema": {"type": "string"}}}},
    },
)
async def video_content(
    request: Request, video_id: str, queue: QueueDep,
    variant: Annotated[Literal[CONTENT_VARIANTS + ("preview",)], Query(  # type: ignore[valid-type]
        description="video (in the request's output_format), thumbnail (PNG of the first frame), frames (the frames "
                    "the model made, lossless: PNG files in a zip), tokens (the token grids, JSON: "
                    '{"model", "token_grid", "vocab_size", "windows"}), confidence (the sampler\'s '
                    'confidence per token, 0..255, JSON {"model", "token_grid", "scale", "windows"}) or preview (a job '
                    'with "previews": true: the '
                    "latest preview, a PNG strip of the clip's frames; there as soon as the first step is done)")] = "video",
    range_header: Annotated[str | None, Header(alias="Range", description="bytes=start-end")] = None,
) -> Response:
    job = await get_job_or_404(queue, video_id, request)
    if variant == "preview":
        return await _latest_preview(queue, job)
    if job.status != "completed":
        raise APIError(409, "video_not_ready", f"job {video_id} is {job.status}; content exists once it has completed")
    data = await queue.get_content(video_id, variant)
    if data is None:
        raise APIError(404, "content_not_found", f"the {variant} of job {video_id} has expired or was deleted")
    media_type, extension = _media_type(job, variant)
    headers = {"Accept-Ranges": "bytes", "ETag": f'"{video_id}-{variant}"',  # content never changes once written
               "Cache-Control": "private, max-age=3600",
               "Content-Disposition": f'inline; filename="{video_id}.{extension}"'}
    try:
        byte_range = parse_range(range_header, len(data))
    except RangeNotSatisfiable:
        raise APIError(416, "range_not_satisfiable", f"the {variant} has {len(data)} bytes",
                       headers={"Content-Range": f"bytes */{len(data)}", "Accept-Ranges": "bytes"}) from None
    if byte_range is None:
        return Response(data, media_type=media_type, headers=headers)
    start, end = byte_range
    headers["Content-Range"] = f"bytes {start}-{end}/{len(data)}"
    return Response(data[start:end + 1], status_code=206, media_type=media_type, headers=headers)


async def _latest_preview(queue: Any, job: Job) -> Response:
    if not job.request.previews:
        raise APIError(404, "content_not_found", f'job {job.id} was not created with "previews": true')
    if job.previews == 0:
        raise APIError(409, "preview_not_ready", f"job {job.id} has no preview yet (one comes after each decoding step)")
    [latest] = await queue.get_previews(job.id, job.previews - 1)
    data = base64.b64decode(latest["image"].split(",", 1)[1])
    return Response(data, media_type="image/png", headers={"Cache-Control": "no-cache", "X-Preview-Step": str(latest["step"])})


@router.post("/{video_id}/cancel", response_model=VideoJob, summary="Cancel a queued or running job",
             description="Idempotent: canceling a canceled or finished job returns it unchanged. A running job "
                         "stops at its next decoding step (its status turns `canceled` shortly after).",
             responses=_errors(404))
async def cancel_video(request: Request, video_id: str, settings: SettingsDep, queue: QueueDep) -> Response:
    await get_job_or_404(queue, video_id, request)
    job = await queue.cancel(video_id)
    if job is None:
        raise APIError(404, "video_not_found", f"no video job {video_id!r}", param="video_id")
    logger.info("cancel requested", extra={"job_id": video_id})
    return JSONResponse(await job_view(queue, job, public_base(request)), headers=poll_headers(settings, job))


@router.delete("/{video_id}", response_model=VideoDeleted, summary="Delete a job and its content",
               description="An unfinished job is canceled first.", responses=_errors(404))
async def delete_video(request: Request, video_id: str, queue: QueueDep) -> dict[str, Any]:
    job = await get_job_or_404(queue, video_id, request)
    if not job.terminal:
        await queue.cancel(video_id)
    if not await queue.delete(video_id):
        raise APIError(404, "video_not_found", f"no video job {video_id!r}", param="video_id")
    logger.info("job deleted", extra={"job_id": video_id})
    return {"id": video_id, "object": "video.deleted", "deleted": True}

