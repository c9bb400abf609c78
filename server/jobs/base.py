"""The job model and the queue interface that the API and the workers share.

Two implementations follow this interface: `memory.py` (the embedded, in-process queue that
`make serve` uses) and `redis.py` (Redis Streams; with `redis_claims.py` and `redis_store.py`,
the only modules that know Redis).
The API process only submits, reads, cancels and deletes; workers claim, report and finish.
"""
from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field, fields
from typing import Any, AsyncIterator, Awaitable, Callable, Protocol

from server.errors import InputError, KinetoscopeError  # noqa: F401 - InputError: the worker's contract
from server.request import VideoRequest

STATUSES = ("queued", "in_progress", "completed", "failed", "canceled", "expired")
# What a completed job keeps: the video (in the request's output_format), a PNG of its first
# frame, and the frames the model made, lossless (PNGs in a zip). Older jobs may lack "frames".
# tokens: the token grids, JSON; confidence: the MaskGIT sampler's confidence per token, JSON.
CONTENT_VARIANTS = ("video", "thumbnail", "frames", "tokens", "confidence")
TERMINAL = frozenset({"completed", "failed", "canceled", "expired"})  # expired: its deadline passed while queued
PRIORITIES = ("high", "normal", "low")


def new_job_id() -> str:
    """Sortable-enough unique id: `video_` + 24 hex chars (time prefix keeps listing cheap)."""
    return f"video_{int(time.time() * 1000):011x}{uuid.uuid4().hex[:13]}"


@dataclass
class Job:
    """One generation job: its validated request (`server.request.VideoRequest`, which holds the
    task, size, frames, fps, seed and priority) and its bookkeeping. Input video bytes are stored
    separately (see `submit`)."""

    id: str
    model: str
    request: VideoRequest
    status: str = "queued"
    progress: int = 0
    created_at: float = field(default_factory=time.time)
    started_at: float | None = None
    completed_at: float | None = None
    expires_at: float | None = None
    error: dict[str, str] | None = None
    metadata: dict[str, str] = field(default_factory=dict)  # the caller's string pairs, echoed back
    deadline_at: float | None = None  # Unix time: queued after it -> expired; running MaskGIT -> truncated
    truncated: dict[str, int] | None = None  # {"steps_done", "steps"} when the deadline cut decoding short
    webhook: dict[str, Any] | None = None  # server/webhooks.py: url, events, what was enqueued and how it went
    previews: int = 0  # previews published so far (a request with "previews": true); their images are kept apart
    owner: str = ""  # who made it: a digest of the API key ("" when the server has no keys)
    fingerprint: str = ""  # sha256 of the create request as sent: an Idempotency-Key's repeat must match it
    attempts: int = 0  # how many times a worker has started this job
    lost_leases: int = 0  # of those, how many ended because the worker died (not the job's fault)
    cancel_requested: bool = False

    # The request's fields the job object shows at its top level (api.md) and the queues sort by.
    task = property(lambda self: self.request.task)
    size = property(lambda self: str(self.request.size))
    num_frames = property(lambda self: self.request.num_frames)
    fps = property(lambda self: self.request.fps)
    seed = property(lambda self: self.request.seed)
    priority = property(lambda self: self.request.priority)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe: the stored record (memory, SQLite, Redis) and the job object's source."""
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        data["request"] = self.request.to_dict()
        data.update(task=self.task, size=self.size, num_frames=self.num_frames, fps=self.fps, seed=self.seed,
                    priority=self.priority)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Job":
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        values["request"] = VideoRequest.from_dict(data["request"])
        return cls(**values)

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL


@dataclass(frozen=True)
class JobResult:
    """What a finished attempt hands the queue: the video (in the request's output_format), a PNG
    of its first frame, the lossless frames (PNGs in a zip), the token grids (JSON), and
    {"steps_done", "steps"} when the deadline cut decoding short."""

    video: bytes
    thumbnail: bytes
    frames: bytes | None = None
    tokens: bytes | None = None
    truncated: dict[str, int] | None = None
    confidence: bytes | None = None

    def contents(self) -> dict[str, bytes]:
        """variant (CONTENT_VARIANTS) -> bytes, for the variants this result has."""
        every = {"video": self.video, "thumbnail": self.thumbnail, "frames": self.frames, "tokens": self.tokens,
                 "confidence": self.confidence}
        return {variant: data for variant, data in every.items() if data is not None}


# Error codes the queue itself writes into `Job.error` (workers add their own, e.g. from InputError).
RETRIES_EXHAUSTED = "retries_exhausted"  # dead letter: the job failed max_attempts times
WORKER_LOST = "worker_lost"  # the worker running an attempt stopped heartbeating (recorded as last reason)


class QueueFull(KinetoscopeError):
    """The queue holds its maximum number of waiting jobs; the client should retry later."""

    status, code = 429, "queue_full"

    def __init__(self, retry_after: int):
        super().__init__(f"queue is full; retry after {retry_after} s", headers={"Retry-After": str(retry_after)})
        self.retry_after = retry_after


class JobCanceled(Exception):
    """Raised by a generate function when `should_stop()` turned true: the job was canceled
    (or taken away from this worker), so the attempt ends without a result."""


class JobQueue(Protocol):
    """What the API and workers need from a job store. All methods are coroutines."""

    # --- API side -------------------------------------------------------------------
    async def submit(self, job: Job, input_video: bytes | None = None,
                     idempotency_key: str | None = None) -> tuple[Job, bool]:
        """Store and enqueue `job` (with its input video bytes, if any). Returns (job, created).
        A repeated idempotency key returns the first job and created=False.
        Raises QueueFull when the number of queued jobs is at the limit."""
        ...

    async def get(self, job_id: str) -> Job | None: ...

    async def list(self, after: str | None = None, limit: int = 20,
                   where: Callable[[Job], bool] | None = None) -> tuple[list[Job], bool]:
        """Jobs newest first, starting after the job id `after`, only those `where` keeps;
        returns (jobs, has_more)."""
        ...

    def unavailable(self, exc: BaseException) -> bool:
        """Whether `exc` means the job store is unreachable or refusing writes for now (the API
        answers 503 with Retry-After), as opposed to a bug (500)."""
        ...

    async def queue_position(self, job_id: str) -> int | None:
        """0-based number of jobs that will be started before this one; None unless queued."""
        ...

    async def cancel(self, job_id: str) -> Job | None:
        """Queued jobs become canceled at once; running ones get cancel_requested and the
        worker stops them at the next decoding step. Idempotent. None if unknown."""
        ...

    async def delete(self, job_id: str) -> bool: ...

    async def get_content(self, job_id: str, variant: str) -> bytes | None:
        """`variant`: one of CONTENT_VARIANTS."""
        ...

    async def get_input(self, job_id: str) -> bytes | None:
        """The input video bytes stored with the job at submit time."""
        ...

    async def get_previews(self, job_id: str, after: int = 0) -> list[dict[str, Any]]:
        """The job's previews from number `after` on, in order: {"step", "steps", "decided", "image"}."""
        ...

    async def watch(self, job_id: str, poll_interval: float = 0.25) -> AsyncIterator[Job]:
        """Yields the job now and at each change, ending after a terminal status."""
        ...

    async def ping(self) -> bool: ...

    async def depth(self) -> dict[str, int]:
        """Queued jobs per priority."""
        ...

    # --- worker side ----------------------------------------------------------------
    async def claim(self, worker_id: str, timeout: float = 1.0) -> Job | None:
        """Take the next job (high before normal before low, FIFO within a priority), marking
        it in_progress; also reclaims jobs whose worker stopped heartbeating. None on timeout."""
        ...

    async def heartbeat(self, job_id: str, worker_id: str) -> bool:
        """Renews the lease of a running job. False when this worker no longer owns it (it was
        reclaimed by another worker, finished, or deleted): the worker should drop the attempt."""
        ...

    async def set_progress(self, job_id: str, progress: int) -> None: ...

    async def save_checkpoint(self, job_id: str, worker_id: str, data: bytes) -> None:
        """Keeps the running job's latest decoding checkpoint (server/resume.py), if this worker
        still owns it; it goes when the job ends."""
        ...

    async def get_checkpoint(self, job_id: str) -> bytes | None:
        """The latest checkpoint of an unfinished job (a reclaimed attempt resumes from it)."""
        ...

    async def add_previews(self, job_id: str, previews: list[dict[str, Any]]) -> None:
        """Publishes previews of a running job (the job's `previews` count rises, so watchers wake)."""
        ...

    async def complete(self, job_id: str, worker_id: str, result: "JobResult") -> None:
        """Stores the result's content first, then marks the job completed (with `truncated`)."""
        ...

    async def fail(self, job_id: str, worker_id: str, code: str, message: str,
                   retryable: bool = True) -> None:
        """Retryable failures go back to the queue until the retry limit; then (or when not
        retryable) the job ends failed with the reason (dead letter)."""
        ...

    async def finish_canceled(self, job_id: str, worker_id: str) -> None: ...

    async def counters(self) -> dict[str, int]:
        """Totals since the store was created, for metrics: "reclaimed" (attempts taken over from
        a worker that stopped heartbeating), "retried" (failed attempts sent back to the queue),
        "dead" (jobs failed for good after max_attempts), "expired" (jobs whose deadline passed
        while they were queued: they ended `expired` and never ran). Shared by every process of a
        store."""
        ...

    async def close(self) -> None: ...


async def watch_job(get: Callable[[str], Awaitable["Job | None"]], job_id: str,
                    wait: Callable[[], Awaitable[object]]) -> AsyncIterator[Job]:
    """The `watch` of every queue: yields the job now and whenever it changes, ending after a
    terminal status (or when the job is gone); `wait` sleeps until it may have changed."""
    last = None
    while True:
        job = await get(job_id)
        if job is None:
            return
        if job != last:
            yield job
            last = job
        if job.terminal:
            return
        await wait()
