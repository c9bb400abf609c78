"""Dependencies the routes declare by type: `SettingsDep`, `QueueDep`, `CatalogueDep`, `RuntimeDep`, and the
API-key check. Everything comes from `app.state`, set up by `create_app` and its lifespan."""
from __future__ import annotations

import hashlib
import hmac
from typing import Annotated, Any, Awaitable, Callable, Protocol

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from server.api.errors import APIError
from server.catalogue import Catalogue
from server.jobs.base import Job, JobQueue, JobResult
from server.settings import Settings


class RuntimeLike(Protocol):
    """What the API needs of `server.runtime.Runtime`, the executor an embedded worker runs jobs
    on (the /v1/tokenize, /v1/detokenize and /v1/score routes call its pipelines)."""

    catalogue: Catalogue
    pipelines: dict[str, Any]

    def generate(self, job: Job, input_video: bytes | None, on_progress: Callable[[float], None],
                 should_stop: Callable[[], bool]) -> Awaitable[JobResult]: ...


def get_settings(request: Request) -> Settings:
    return request.app.state.settings


def get_queue(request: Request) -> JobQueue:
    queue = getattr(request.app.state, "queue", None)
    if queue is None:
        raise APIError(503, "not_ready", "the job queue is not open yet")
    return queue


def get_catalogue(request: Request) -> Catalogue:
    catalogue = getattr(request.app.state, "catalogue", None)
    if catalogue is None:
        raise APIError(503, "not_ready", "models are not loaded yet")
    return catalogue


def get_runtime(request: Request) -> RuntimeLike:
    runtime = getattr(request.app.state, "runtime", None)
    if runtime is None:
        raise APIError(503, "not_ready", "models are not loaded yet")
    return runtime


SettingsDep = Annotated[Settings, Depends(get_settings)]
QueueDep = Annotated[JobQueue, Depends(get_queue)]
CatalogueDep = Annotated[Any, Depends(get_catalogue)]  # a Catalogue; Any keeps FastAPI from inspecting it
RuntimeDep = Annotated[Any, Depends(get_runtime)]  # a RuntimeLike

_bearer = HTTPBearer(auto_error=False, description="`Authorization: Bearer <key>`, required when the server has API keys")


async def require_api_key(request: Request,
                          credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]) -> None:
    """401 unless the request carries one of settings.api_keys (no keys configured: open)."""
    keys = request.app.state.settings.api_keys
    if not keys:
        return
    challenge = {"WWW-Authenticate": 'Bearer realm="kinetoscope"'}
    if credentials is None:
        raise APIError(401, "missing_api_key", "this server needs an API key: send 'Authorization: Bearer <key>'",
                       headers=challenge)
    given = credentials.credentials.encode()
    # compare_digest on every key: the time taken does not tell how much of a key matched
    if not any(hmac.compare_digest(given, key.encode()) for key in keys):
        raise APIError(401, "invalid_api_key", "the API key is not valid", headers=challenge)
    # Idempotency keys are scoped per API key, so two callers can never receive each other's job.
    request.state.principal = hashlib.sha256(given).hexdigest()[:16]


def scoped_idempotency_key(request: Request, key: str | None) -> str | None:
    principal = getattr(request.state, "principal", None)
    return f"{principal}:{key}" if key is not None and principal is not None else key


Authenticated = [Depends(require_api_key)]
