"""Turning queue jobs into API job objects, and the headers that steer polling clients."""
from __future__ import annotations

import asyncio
import math
import re
from typing import Any

from starlette.requests import Request

from server.api.errors import APIError
from server.jobs.base import Job, JobQueue
from server.jobs.view import job_object
from server.settings import Settings

POLL_HEADER = "X-Poll-Interval"


def public_base(request: Request) -> str:
    """The server's URL as the client sees it: scheme and host from X-Forwarded-Proto /
    X-Forwarded-Host when a proxy sets them, else from the request; plus the app's root path."""
    headers = request.headers
    scheme = headers.get("x-forwarded-proto", request.url.scheme).split(",")[0].strip()
    host = headers.get("x-forwarded-host", headers.get("host", request.url.netloc)).split(",")[0].strip()
    return f"{scheme}://{host}{request.scope.get('root_path', '')}".rstrip("/")


async def job_view(queue: JobQueue, job: Job, base: str) -> dict[str, Any]:
    """The job object of api.md (queue_position is asked of the queue only while queued); `base`:
    `public_base(request)`, for the absolute `urls`."""
    position = await queue.queue_position(job.id) if job.status == "queued" else None
    return job_object(job, base, position)


def caller(request: Request) -> str:
    """Who is asking: the API key's digest (set by the key check), "" on a server without keys."""
    return getattr(request.state, "principal", None) or ""


def can_see(request: Request, job: Job) -> bool:
    """A job belongs to the key that made it, unless the server shares jobs between keys."""
    return request.app.state.settings.share_jobs or job.owner == caller(request)


async def get_job_or_404(queue: JobQueue, video_id: str, request: Request, param: str = "video_id") -> Job:
    """The job, or 404 -- also for another key's job (its existence is not told)."""
    job = await queue.get(video_id)
    if job is None or not can_see(request, job):
        raise APIError(404, "video_not_found", f"no video job {video_id!r}", param=param)
    return job


def poll_headers(settings: Settings, job: Job) -> dict[str, str]:
    """While a job is unfinished: `Retry-After` (whole seconds, what HTTP allows) and
    `X-Poll-Interval` (seconds, fractions allowed) say when to ask again."""
    if job.terminal:
        return {}
    interval = settings.poll_interval_seconds
    return {"Retry-After": str(max(1, math.ceil(interval))), POLL_HEADER: f"{interval:g}"}


_WAIT = re.compile(r"(?:^|[,;\s])wait\s*=\s*\"?(\d+(?:\.\d+)?)\"?", re.IGNORECASE)


def parse_prefer_wait(prefer: str | None, max_wait: float) -> float | None:
    """`Prefer: wait=N` (RFC 7240) -> seconds to hold the request, capped at max_wait.
    A missing or malformed preference is ignored, as the RFC asks."""
    if not prefer:
        return None
    match = _WAIT.search(prefer)
    if match is None:
        return None
    return min(float(match.group(1)), max_wait)


async def wait_until_terminal(queue: JobQueue, job_id: str, seconds: float) -> Job | None:
    """Holds up to `seconds` for the job to finish; returns the job as it then stands."""
    async def watch_to_end() -> None:
        async for job in queue.watch(job_id):
            if job.terminal:
                return

    if seconds > 0:
        try:
            await asyncio.wait_for(watch_to_end(), timeout=seconds)
        except asyncio.TimeoutError:
            pass
    return await queue.get(job_id)
