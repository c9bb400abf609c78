"""The client's errors: one base class, one class per HTTP status a user handles differently.

    KinetoscopeError
    ├── APIStatusError            the server answered with a 4xx/5xx (`.status_code`, `.code`, ...)
    │   ├── BadRequestError              400
    │   ├── AuthenticationError          401
    │   ├── NotFoundError                404
    │   ├── ConflictError                409  (content not ready)
    │   ├── PayloadTooLargeError         413
    │   ├── UnsupportedMediaTypeError    415
    │   ├── UnprocessableEntityError     422
    │   ├── RateLimitError               429  (`.retry_after`)
    │   └── InternalServerError          5xx
    │       └── ServiceUnavailableError  503
    ├── APIConnectionError        no answer: refused, reset, DNS, ...
    │   └── APITimeoutError
    ├── JobFailedError            a waited-on job ended failed or canceled (`.job`)
    └── WaitTimeoutError          a wait ran past its `timeout` (`.job` as last seen)
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

import httpx

from ._headers import parse_retry_after

if TYPE_CHECKING:
    from .types import Video

__all__ = [
    "KinetoscopeError",
    "APIStatusError",
    "BadRequestError",
    "AuthenticationError",
    "NotFoundError",
    "ConflictError",
    "PayloadTooLargeError",
    "UnsupportedMediaTypeError",
    "UnprocessableEntityError",
    "RateLimitError",
    "InternalServerError",
    "ServiceUnavailableError",
    "APIConnectionError",
    "APITimeoutError",
    "JobFailedError",
    "WaitTimeoutError",
]


class KinetoscopeError(Exception):
    """Base class of every error this package raises."""


class APIStatusError(KinetoscopeError):
    """The server answered with an error status. Its JSON body is
    `{"error": {"type", "code", "message", "param"}}`; the fields are copied onto the exception."""

    status_code: int
    body: Any
    code: str | None
    type: str | None
    param: str | None
    request_id: str | None

    def __init__(self, message: str, *, response: httpx.Response, body: Any) -> None:
        super().__init__(message)
        self.message = message
        self.response = response
        self.request = response.request
        self.status_code = response.status_code
        self.body = body
        error = body.get("error") if isinstance(body, dict) else None
        error = error if isinstance(error, dict) else {}
        self.code = error.get("code")
        self.type = error.get("type")
        self.param = error.get("param")
        self.request_id = response.headers.get("x-request-id")

    def __str__(self) -> str:
        parts = [f"{self.status_code}"]
        if self.code:
            parts.append(f"[{self.code}]")
        parts.append(self.message)
        if self.param:
            parts.append(f"(param: {self.param})")
        if self.request_id:
            parts.append(f"(request id: {self.request_id})")
        return " ".join(parts)


class BadRequestError(APIStatusError):
    """400: the request is malformed (e.g. an input video that cannot be decoded)."""


class AuthenticationError(APIStatusError):
    """401: missing or wrong API key."""


class NotFoundError(APIStatusError):
    """404: unknown job or model id (or the job was deleted or expired)."""


class ConflictError(APIStatusError):
    """409: the job's content is not ready yet."""


class PayloadTooLargeError(APIStatusError):
    """413: the body or the uploaded video is over the server's limit."""


class UnsupportedMediaTypeError(APIStatusError):
    """415: the upload is not an MP4, WebM, GIF or PNG."""


class UnprocessableEntityError(APIStatusError):
    """422: a field is invalid; `.param` names it."""


class RateLimitError(APIStatusError):
    """429: the server's queue is full. `.retry_after` is the server's suggested wait in seconds."""

    def __init__(self, message: str, *, response: httpx.Response, body: Any) -> None:
        super().__init__(message, response=response, body=body)
        self.retry_after = parse_retry_after(response.headers)


class InternalServerError(APIStatusError):
    """5xx: the server failed."""


class ServiceUnavailableError(InternalServerError):
    """503: the server is not ready (models loading, queue unreachable)."""


class APIConnectionError(KinetoscopeError):
    """No HTTP answer: the connection was refused, reset or dropped."""

    def __init__(self, message: str = "connection error", *, request: httpx.Request | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.request = request


class APITimeoutError(APIConnectionError):
    """The request timed out (see the client's `timeout`)."""

    def __init__(self, message: str = "request timed out", *, request: httpx.Request | None = None) -> None:
        super().__init__(message, request=request)


class JobFailedError(KinetoscopeError):
    """A job that the client waited on ended `failed` or `canceled`. `.job` is the final job;
    `.code` and `.message` come from `job.error` when the server gave one."""

    def __init__(self, job: "Video") -> None:
        self.job = job
        self.code = job.error.code if job.error else None
        detail = job.error.message if job.error else "no error detail"
        self.message = f"job {job.id} ended {job.status}: {detail}"
        super().__init__(self.message)


class WaitTimeoutError(KinetoscopeError, TimeoutError):
    """A wait for a job ran past its `timeout`; the job goes on on the server. `.job` is the
    job as last seen."""

    def __init__(self, job: "Video", timeout: float) -> None:
        self.job = job
        self.timeout = timeout
        super().__init__(f"job {job.id} still {job.status} ({job.progress}%) after {timeout:g} s")


_STATUS_ERRORS: dict[int, type[APIStatusError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    404: NotFoundError,
    409: ConflictError,
    413: PayloadTooLargeError,
    415: UnsupportedMediaTypeError,
    422: UnprocessableEntityError,
    429: RateLimitError,
    503: ServiceUnavailableError,
}


def status_error_class(status_code: int) -> type[APIStatusError]:
    if status_code in _STATUS_ERRORS:
        return _STATUS_ERRORS[status_code]
    if status_code >= 500:
        return InternalServerError
    return APIStatusError
