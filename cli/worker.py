"""`kinetoscope worker`: take jobs from Redis and run them; start as many as you like, on any
machine. Its flags are the settings a worker reads (cli/options.py), `--concurrency` for
worker_concurrency as before; the API's own settings (port, keys, HTTP limits) are left out."""
from __future__ import annotations

import asyncio
import os
import signal
from typing import Annotated

import typer

from cli.options import with_settings

# Settings only the HTTP API reads: not flags of a worker.
API_ONLY = ("port", "allowed_hosts", "api_keys", "share_jobs", "embedded_workers", "max_queue_length",
            "retry_after_seconds", "poll_interval_seconds", "max_wait_seconds", "max_body_bytes", "shutdown_seconds")


@with_settings(exclude=API_ONLY, aliases={"worker_concurrency": ["--concurrency"]})
def worker(settings, metrics_port: Annotated[int, typer.Option(
        help="serve this worker's Prometheus metrics here (on --host); 0 = off")] = 0) -> None:
    """Take jobs from Redis and run them; start as many as you like, on any machine."""
    from server import metrics
    from server.api.logs import configure_logging
    from server.jobs import open_queue
    from server.runtime import load_runtime
    from server.webhooks import run_deliveries
    from server.worker import run_worker

    if not settings.redis_url:
        raise typer.BadParameter("a worker needs --redis-url (or KINETOSCOPE_REDIS_URL)")
    configure_logging(settings.log_level)
    if metrics_port:
        from prometheus_client import start_http_server

        start_http_server(metrics_port, addr=settings.host)

    async def main():
        runtime = load_runtime(settings)
        queue = open_queue(settings, on_event=metrics.on_worker_event)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        # Workers send due webhook deliveries too: they outlive any one API replica.
        webhooks = asyncio.create_task(run_deliveries(queue, settings, stop))
        try:
            await run_worker(queue, metrics.instrument_generate(runtime.generate),
                             worker_id=f"{os.uname().nodename}-{os.getpid()}", concurrency=settings.worker_concurrency,
                             heartbeat_seconds=settings.heartbeat_seconds, stop=stop, on_event=metrics.on_worker_event,
                             claim_wait_seconds=settings.claim_wait_seconds,
                             cancel_poll_seconds=settings.cancel_poll_seconds,
                             progress_push_seconds=settings.progress_push_seconds, resumable=runtime.resumable)
        finally:
            stop.set()
            await asyncio.gather(webhooks, return_exceptions=True)
            await queue.close()
            runtime.close()

    asyncio.run(main())
