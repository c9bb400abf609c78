"""The plain FastAPI peer: one POST endpoint that runs one request at a time.

The obvious server a user writes around a model: an async endpoint validates the body and decodes
the input video (concurrently: that is per-request work), then takes a lock and runs the model
on that one request in a worker thread (run_in_threadpool, so the event loop keeps accepting
requests meanwhile). asyncio.Lock wakes its waiters in arrival order, so the requests are served
first come, first served. The decode is the lockstep decode of a batch of one, so the video is the
one the other targets make.

Queue seconds: the wait for the lock; compute seconds: the rest of the request's time in the
server (reading the body and its input video, then the model and the MP4 under the lock).

Run: python -m cli.bench.peers.fastapi_peer --repo model_repository --port 8102
"""
from __future__ import annotations

import argparse
import asyncio
import itertools
import time
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response

from cli.bench.peers.common import MEDIA_TYPES, VIDEOS_PATH, PeerModel, error_json, parse_json, timing_headers


def make_app(repo: str | Path, threads: int = 0) -> FastAPI:
    peer = PeerModel(Path(repo), threads)
    lock = asyncio.Lock()
    calls = itertools.count(1)
    app = FastAPI(title="Kinetoscope peer: plain FastAPI, one request at a time")

    def error(exc: Exception, headers: dict[str, str] | None = None) -> Response:
        status, body = error_json(exc)
        return Response(body, status_code=status, media_type="application/json", headers=headers)

    @app.get("/health")
    async def health():
        return {"status": "ok"}

    @app.get("/info")
    async def info():
        return {"model": peer.info()}

    @app.post(VIDEOS_PATH)
    async def create(request: Request):
        received = time.time()
        try:
            prepared = await run_in_threadpool(peer.prepare, parse_json(await request.body()))
        except Exception as exc:  # a body that is not JSON or not a valid request, or an undecodable input video
            return error(exc)
        waiting = time.time()
        async with lock:
            started, call = time.time(), next(calls)
            queue_s = started - waiting
            try:
                [video] = await run_in_threadpool(peer.generate, [prepared])
                content = await run_in_threadpool(peer.encode, video, prepared.request)
            except Exception as exc:
                return error(exc, timing_headers(queue_s, time.time() - received - queue_s, 1, call))
            completed = time.time()
        headers = timing_headers(queue_s, completed - received - queue_s, 1, call)
        return Response(content, media_type=MEDIA_TYPES[prepared.request.output_format], headers=headers)

    return app


def main(argv: list[str] | None = None) -> None:
    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repo", default="model_repository")
    parser.add_argument("--port", type=int, default=8102)
    parser.add_argument("--threads", type=int, default=0, help="ONNX Runtime intra-op threads (0: every core)")
    args = parser.parse_args(argv)
    uvicorn.run(make_app(args.repo, args.threads), host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
