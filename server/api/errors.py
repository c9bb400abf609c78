"""One error shape for every failure the API reports: `{"error": {"type", "code", "message", "param"}}`.

Routes raise `APIError` (or let any other KinetoscopeError of server/errors.py through: a
TaskError is a 422, QueueFull a 429); the handlers here turn it, and FastAPI's and Starlette's
own errors (validation, unknown route, wrong method), into that shape so a client needs one parser.
"""
from __future__ import annotations

import logging
from typing import Any, Sequence

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from server.errors import KinetoscopeError

logger = logging.getLogger("kinetoscope.api")

# The error `type` says which family a failure belongs to; `code` is the precise reason.
ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    408: "invalid_request_error",
    409: "conflict_error",
    413: "request_too_large",
    415: "unsupported_media_type",
    416: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
    500: "server_error",
    503: "unavailable_error",
}
DEFAULT_CODES = {
    400: "bad_request",
    401: "invalid_api_key",
    404: "not_found",
    405: "method_not_allowed",
    408: "request_timeout",
    409: "conflict",
    413: "request_too_large",
    415: "unsupported_media_type",
    416: "range_not_satisfiable",
    422: "invalid_value",
    429: "queue_full",
    500: "internal_error",
    503: "not_ready",
}


class APIError(KinetoscopeError):
    """An error the client caused or should know about; becomes a JSON error response."""

    def __init__(self, status: int, code: str | None, message: str, param: str | None = None,
                 type: str | None = None, headers: dict[str, str] | None = None):
        super().__init__(message, code=code or DEFAULT_CODES.get(status, "error"), status=status, param=param,
                         headers=headers)
        self.type = type


def error_body(status: int, code: str, message: str, param: str | None = None,
               type: str | None = None) -> dict[str, Any]:
    return {"error": {"type": type or ERROR_TYPES.get(status, "server_error"), "code": code,
                      "message": message, "param": param}}


def error_response(err: KinetoscopeError) -> JSONResponse:
    """Every KinetoscopeError (server/errors.py) -> the API's error shape: the one mapping."""
    kind = getattr(err, "type", None) or ERROR_TYPES.get(err.status, "invalid_request_error" if err.status < 500
                                                         else "server_error")
    return JSONResponse(error_body(err.status, err.code, err.message, err.param, kind),
                        status_code=err.status, headers=err.headers)


def loc_to_param(loc: Sequence[Any]) -> str | None:
    """FastAPI/pydantic error location -> a dotted field name (`sampler.steps`, `limit`).
    The leading "body"/"query"/"path"/"header" says where, not what, so it is dropped."""
    parts = [str(p) for p in loc]
    if parts and parts[0] in ("body", "query", "path", "header", "cookie"):
        parts = parts[1:]
    return ".".join(parts) or None


def validation_error(errors: Sequence[dict[str, Any]]) -> APIError:
    """The first pydantic error as a 422 naming its field (one clear message beats a list)."""
    first = errors[0] if errors else {"loc": (), "msg": "invalid request"}
    param = loc_to_param(first.get("loc", ()))
    msg = first.get("msg", "invalid value")
    message = f"{param}: {msg}" if param else msg
    if len(errors) > 1:
        message += f" (and {len(errors) - 1} more)"
    code = "missing_field" if first.get("type") == "missing" else (
        "unknown_field" if first.get("type") == "extra_forbidden" else "invalid_value")
    return APIError(422, code, message, param=param)


async def _api_error(request: Request, exc: KinetoscopeError) -> JSONResponse:
    return error_response(exc)


async def _request_validation(request: Request, exc: RequestValidationError) -> JSONResponse:
    return error_response(validation_error(exc.errors()))


async def _http_exception(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    status = exc.status_code
    headers = dict(exc.headers or {})
    if status == 404:
        message = f"no route {request.method} {request.url.path}"
    elif status == 405:
        message = f"method {request.method} is not allowed on {request.url.path}"
        methods = allowed_methods(request)
        if methods:
            headers["Allow"] = ", ".join(methods)
        elif not headers.get("Allow"):
            headers.pop("Allow", None)  # never an empty Allow: it would say "no method at all"
    else:
        message = str(exc.detail)
    return JSONResponse(error_body(status, DEFAULT_CODES.get(status, "error"), message),
                        status_code=status, headers=headers)


def allowed_methods(request: Request) -> list[str]:
    """Every method some route serves at this path. Starlette's 405 names only the first route
    whose path matched (GET of /v1/videos/{id}, not its DELETE): RFC 9110 wants them all. Each
    method is asked of the routing itself (routers nest), not of a list of routes. A mount
    matches any method, so it is asked what its app serves: static files are GET and HEAD; any
    other mounted app is left to set its own Allow (empty here: the caller keeps the raiser's)."""
    from starlette.routing import Match, Mount
    from starlette.staticfiles import StaticFiles

    allowed: set[str] = set()
    for route in request.app.router.routes:
        if isinstance(route, Mount):
            if isinstance(route.app, StaticFiles) and route.matches(request.scope)[0] == Match.FULL:
                allowed |= {"GET", "HEAD"}
        else:
            allowed |= {method for method in _METHODS
                        if route.matches({**request.scope, "method": method})[0] == Match.FULL}
    return [method for method in _METHODS if method in allowed]


_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")


def install_error_handlers(app: FastAPI) -> None:
    """Unhandled exceptions are caught by RequestContextMiddleware (it knows the request id)."""
    app.add_exception_handler(KinetoscopeError, _api_error)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, _request_validation)  # type: ignore[arg-type]
    app.add_exception_handler(StarletteHTTPException, _http_exception)  # type: ignore[arg-type]
