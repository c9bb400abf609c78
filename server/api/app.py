"""The FastAPI application: `create_app` wires settings, the job queue, the runtime, routers,
middleware and the playground page; `serve` runs it under uvicorn."""
from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import time
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, AsyncIterator

from fastapi import FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool

from server import metrics
from server.webhooks import run_deliveries
from server.api.errors import install_error_handlers
from server.api.middleware import (BodyLimitMiddleware, BodyTimeoutMiddleware, BrowserGuardMiddleware,
                                   RequestContextMiddleware)
from server.api.openapi import install_docs, install_openapi
from server.api.routes import health, models, tokens, videos
from server.settings import Settings

logger = logging.getLogger("kinetoscope.api")

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"

DESCRIPTION = """\
Kinetoscope generates short videos with masked generative video transformers (MAGVIT tasks).

Jobs are asynchronous: `POST /v1/videos` answers `202` with a job; poll `GET /v1/videos/{id}`
(its `Retry-After` / `X-Poll-Interval` headers say when), stream `GET /v1/videos/{id}/events`, or
send `Prefer: wait=N`. Then download `GET /v1/videos/{id}/content`.

Errors are always `{"error": {"type", "code", "message", "param"}}`. When the server has API keys,
every endpoint but `/healthz` and `/readyz` needs `Authorization: Bearer <key>`; the playground page
(`/`, `/static`) and this schema (`/openapi.json`, `/docs`) hold no data and are open.
Every response carries `X-Request-ID` (the client's, if it sent one).
"""


def embedded_worker_wanted(settings: Settings) -> bool:
    """Without Redis there is no other process to run jobs, so the API runs a worker itself."""
    return settings.redis_url is None and settings.embedded_workers


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    state = app.state
    settings: Settings = state.settings
    # Per event loop, as everything made here (an asyncio.Semaphore binds to the first loop that
    # waits on it): the input videos read at once, server/api/intake.py read_video.
    state.decode_slots = asyncio.Semaphore(settings.max_concurrent_decodes)
    owns_queue = state.queue is None
    if owns_queue:
        from server.jobs import open_queue
        state.queue = open_queue(settings)
    if state.runtime is None and embedded_worker_wanted(settings):
        from server.runtime import load_runtime
        state.runtime = await run_in_threadpool(load_runtime, settings)  # opening engines is slow, blocking work
    if state.catalogue is None:
        if state.runtime is not None:
            state.catalogue = state.runtime.catalogue
        else:  # an API replica in front of Redis workers needs the manifests only
            from server.catalogue import load_catalogue
            state.catalogue = await run_in_threadpool(load_catalogue, settings)
    stop = asyncio.Event()
    worker = _start_embedded_worker(state, settings, stop) if embedded_worker_wanted(settings) else None
    # Every API process sends due webhook deliveries (with Redis, whichever process comes first).
    webhooks = asyncio.create_task(run_deliveries(state.queue, settings, stop), name="kinetoscope-webhooks")
    logger.info("ready", extra={"model": state.catalogue.default_model})
    try:
        yield
    finally:
        stop.set()
        if worker is not None:
            try:  # the worker itself abandons jobs after shutdown_seconds; this is the backstop
                await asyncio.wait_for(worker, settings.shutdown_seconds + 5)
            except asyncio.TimeoutError:
                logger.warning("embedded worker did not stop; cancelled it")
            except Exception:  # noqa: BLE001 - already logged by the done callback
                pass
        await asyncio.gather(webhooks, return_exceptions=True)
        if owns_queue:
            await state.queue.close()


def _start_embedded_worker(state: Any, settings: Settings, stop: asyncio.Event) -> asyncio.Task:
    from server.worker import run_worker
    task = asyncio.create_task(run_worker(
        state.queue, metrics.instrument_generate(state.runtime.generate), worker_id=f"api-{os.getpid()}",
        concurrency=settings.worker_concurrency, heartbeat_seconds=settings.heartbeat_seconds,
        stop=stop, on_event=metrics.on_worker_event, drain_seconds=settings.shutdown_seconds,
        claim_wait_seconds=settings.claim_wait_seconds, cancel_poll_seconds=settings.cancel_poll_seconds,
        progress_push_seconds=settings.progress_push_seconds,
        resumable=getattr(state.runtime, "resumable", False)),
        name="kinetoscope-embedded-worker")

    def report(t: asyncio.Task) -> None:
        if not t.cancelled() and t.exception() is not None:
            logger.error("embedded worker stopped", exc_info=t.exception())
    task.add_done_callback(report)
    return task


def create_app(settings: Settings | None = None, *, runtime: Any = None, queue: Any = None,
               catalogue: Any = None) -> FastAPI:
    """The API. `queue`, `runtime` (only with an embedded worker) and `catalogue` (the runtime's,
    else the manifests alone) are made in the lifespan (open_queue, load_runtime, load_catalogue)
    unless given; a given queue is left open on shutdown (its owner closes it)."""
    settings = settings or Settings()
    app = FastAPI(title="Kinetoscope", version="1", description=DESCRIPTION, lifespan=lifespan,
                  docs_url=None, redoc_url=None,  # install_docs serves them from local assets
                  generate_unique_id_function=lambda route: route.name,  # operationId = the function's name
                  openapi_tags=[{"name": "videos", "description": "generation jobs"},
                                {"name": "models", "description": "what the server can generate"},
                                {"name": "operations", "description": "health, readiness and metrics"}])
    app.state.settings, app.state.runtime, app.state.queue = settings, runtime, queue
    app.state.catalogue = catalogue if catalogue is not None else getattr(runtime, "catalogue", None)
    install_error_handlers(app)
    install_openapi(app)
    install_docs(app)
    for router in (videos.router, tokens.router, models.router, health.router, health.metrics_router):
        app.include_router(router)
    _mount_playground(app)
    # Added last = outermost: the request id is set before anything else runs, even a 413.
    app.add_middleware(BodyTimeoutMiddleware, body_timeout_seconds=settings.body_timeout_seconds)
    app.add_middleware(BodyLimitMiddleware, max_body_bytes=settings.max_body_bytes)
    app.add_middleware(BrowserGuardMiddleware, bind_host=settings.host, allowed_hosts=settings.allowed_hosts,
                       api_keys=settings.api_keys)
    app.add_middleware(RequestContextMiddleware)
    return app


def _mount_playground(app: FastAPI) -> None:
    """The playground page at / and its files at /static, when server/static/ has them. They are
    open even with API keys: a browser cannot send a Bearer header when opening a page, and the
    page asks for the key and sends it with its API calls."""
    index = STATIC_DIR / "index.html"
    if not index.is_file():
        return
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    @app.get("/", include_in_schema=False)
    async def playground() -> FileResponse:
        return FileResponse(index, media_type="text/html")


def serve(settings: Settings | None = None) -> None:
    """Runs the API under uvicorn on settings.host:settings.port (127.0.0.1 unless told otherwise)."""
    import uvicorn

    from server.api.logs import configure_logging
    from server.api.protocol import deadline_protocol

    settings = settings or Settings()
    configure_logging(settings.log_level)
    # The port first: a second server on a busy port fails at once, before loading any model
    # (uvicorn would run the lifespan, which loads the models, before binding).
    sock = listen_socket(settings.host, settings.port)
    # access_log off: RequestContextMiddleware logs each request with its request id. http: uvicorn's
    # h11 protocol with deadlines on reading a request (server/api/protocol.py).
    config = uvicorn.Config(create_app(settings), log_level=settings.log_level, access_log=False, log_config=None,
                            timeout_graceful_shutdown=settings.shutdown_seconds,
                            http=deadline_protocol(settings.header_timeout_seconds, settings.body_timeout_seconds))
    server = _Server(config)
    started = time.monotonic()
    try:
        server.run(sockets=[sock])
    finally:
        if server.should_exit:
            logger.info("stopped", extra={"seconds": round(time.monotonic() - started, 1)})


class _Server:
    """uvicorn's server, but a second Ctrl-C exits at once (uvicorn would still wait for the
    lifespan's shutdown). Nothing is lost: with the job store, jobs left running run again after
    a restart."""

    def __new__(cls, config):
        import uvicorn

        class Server(uvicorn.Server):
            def handle_exit(self, sig: int, frame: Any) -> None:
                if self.should_exit and sig == signal.SIGINT:
                    logger.warning("second interrupt: exiting now")
                    os._exit(130)
                super().handle_exit(sig, frame)

        return Server(config)


class PortInUse(RuntimeError):
    pass


def listen_socket(host: str, port: int) -> socket.socket:
    """A bound socket for uvicorn, or PortInUse with a one-line reason."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise PortInUse(f"cannot listen on {host}:{port}: {exc.strerror or exc} (is another server running? "
                        "choose another port with --port or PORT=...)") from None
    sock.set_inheritable(True)
    return sock
