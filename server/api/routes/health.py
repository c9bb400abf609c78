"""Operations endpoints: liveness, readiness (open to all) and Prometheus metrics (behind the key)."""
from __future__ import annotations

import asyncio
import logging
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from server import metrics
from server.api.deps import Authenticated, QueueDep
from server.api.errors import error_body
from server.api.schemas import ErrorResponse, Health, Ready

logger = logging.getLogger("kinetoscope.api")
router = APIRouter(tags=["operations"])
metrics_router = APIRouter(tags=["operations"], dependencies=Authenticated)



@router.get("/healthz", summary="Liveness: the process is up", response_model=Health)
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", summary="Readiness: models loaded and the queue reachable",
            responses={200: {"model": Ready},
                       503: {"model": ErrorResponse, "description": "not ready; `message` says why"}})
async def readyz(request: Request) -> Response:
    catalogue = getattr(request.app.state, "catalogue", None)
    queue = getattr(request.app.state, "queue", None)
    problem = None
    if catalogue is None or not catalogue.manifests:
        problem = "models are not loaded"
    elif queue is None:
        problem = "the job queue is not open"
    else:
        try:
            timeout = request.app.state.settings.queue_ping_timeout_seconds
            if not await asyncio.wait_for(queue.ping(), timeout):
                problem = "the job queue does not answer"
        except Exception as exc:  # noqa: BLE001 - any failure to ping means "not ready"
            problem = f"the job queue is unreachable ({type(exc).__name__})"
    if problem is not None:
        return JSONResponse(error_body(503, "not_ready", problem), status_code=503, headers={"Retry-After": "1"})
    body: dict[str, Any] = {"status": "ready", "models": sorted(catalogue.manifests), "queue": "ok"}
    return JSONResponse(body)


@metrics_router.get("/metrics", summary="Prometheus metrics (text format)", response_class=Response,
                    responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}},
                               401: {"model": ErrorResponse}})
async def prometheus_metrics(queue: QueueDep) -> Response:
    try:  # read at scrape time so they are never stale
        await metrics.refresh_from_queue(queue)
    except Exception:  # noqa: BLE001 - the other metrics are still worth serving
        logger.warning("could not read the queue's depth and totals for /metrics", exc_info=True)
    body, content_type = metrics.render()
    return Response(body, media_type=content_type)
