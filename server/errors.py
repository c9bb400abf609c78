"""The server's errors, one hierarchy. Each carries what a caller is told: an HTTP status, a
stable `code`, a `message` (and the request field, `param`, where one is to blame).

    KinetoscopeError
    ├── APIError          server/api/errors.py   a request the API refuses (any status)
    ├── QueueFull         server/jobs/base.py    429: the queue holds its maximum
    └── InputError                               a job that no retry can fix: a worker fails it
        ├── TaskError         server/tasks.py    invalid_request (a task, mask or frame count)
        ├── VideoError        here (server.video)  an input video that cannot be read (400/413/415)
        └── DeadlineExceeded  server/pipeline.py deadline_exceeded (autoregressive decoding)

They are turned into the API's error shape in one place (`server.api.errors`, for every
KinetoscopeError) and into a failed job's `error` in one place (`server.worker`, InputError);
anything else is a bug: a 500, or a retried attempt.
"""
from __future__ import annotations


class KinetoscopeError(Exception):
    status: int = 500
    code: str = "internal_error"

    def __init__(self, message: str, *, code: str | None = None, status: int | None = None,
                 param: str | None = None, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.message = message
        self.code = code or self.code
        self.status = status or self.status
        self.param = param
        self.headers = dict(headers or {})


class InputError(KinetoscopeError):
    """A problem with the job's input that no retry can fix (undecodable video, bad mask...).
    The worker fails the job at once with this code and message, which the user sees."""

    status = 422
    code = "invalid_request"

    def __init__(self, code: str | None, message: str, **kwargs):
        super().__init__(message, code=code, **kwargs)


class VideoError(InputError):
    """An input video the server will not decode; `status` and `code` go into the HTTP error.
    An InputError: a worker that meets one fails the job at once (no retry decodes it better).
    Raised by server/video_decode.py and server/ffmpeg.py; importable as server.video.VideoError."""

    def __init__(self, status: int, code: str, message: str):
        super().__init__(code, message, status=status)
