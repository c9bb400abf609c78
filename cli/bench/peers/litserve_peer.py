"""The LitServe peer: the model behind LitServe's own request-level dynamic batching.

Written as LitServe's documentation teaches a batched API (the LitAPI and LitServer docstrings of
litserve 0.2.19): `setup` loads the model once per inference worker, `decode_request` turns one
HTTP body into a model input, `predict(batch)` receives up to `max_batch_size` decoded requests
that LitServe gathered for at most `batch_timeout` seconds and returns one output per request,
`encode_response` turns one output into the HTTP answer. Batching is set on the LitAPI
(`max_batch_size`, `batch_timeout`; the LitServer arguments of the same names are deprecated).

`predict` runs the whole decode loop of its batch (cli/bench/peers/lockstep.py): the requests
advance in lockstep, each network call covers every request still decoding, and the batch answers
when its last request is done. Requests arriving meanwhile wait for the next predict call: that,
not the model code, is what differs from Kinetoscope's step-level batching.

A request that fails validation must not fail its batch (LitServe fails every request of a batch
whose decode_request raises): decode_request returns the error as the request's value, predict
passes it through, encode_response answers it in the API's error shape.

Timing: LitServe's inference worker is another process than its HTTP server, and LitServe passes
no arrival time to the worker. So the worker stamps when it took each request up (decode_request,
which LitServe runs for the whole batch just before predict) and when its response was ready (wall clock, shared by the processes of one machine), and a small ASGI
middleware on the HTTP side (LitServer's `middlewares`) turns those and the request's arrival into
the queue and compute seconds of common.py.

Run: python -m cli.bench.peers.litserve_peer --repo model_repository --port 8101
"""
from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from pathlib import Path
import numpy as np

from cli.bench.peers.common import (BATCH_ID_HEADER, BATCH_SIZE_HEADER, COMPUTE_HEADER, MEDIA_TYPES, QUEUE_HEADER,
                                    VIDEOS_PATH, PeerModel, Prepared, default_manifest, error_json, model_info)

try:
    import litserve as ls
except ImportError:  # the peers are optional: pip install -e '.[peers]'
    ls = None

LITSERVE_MISSING = "the LitServe peer needs litserve: pip install -e '.[peers]'"
STARTED_HEADER, COMPLETED_HEADER = "X-Started-At", "X-Completed-At"  # worker -> middleware, epoch seconds
DEFAULT_MAX_BATCH_SIZE = 16  # Kinetoscope's own max_batch_size default
DEFAULT_BATCH_TIMEOUT_S = 0.05  # a twentieth of a second: small against a clip's ~0.5-1 s of decoding


@dataclass
class Decoded:
    """decode_request's value: the request ready for the model, or the error that answers it
    (carried through predict unchanged), and when the worker began on it."""

    value: Prepared | Exception
    started_at: float


@dataclass
class Output:
    """One request's result of a predict call."""

    prepared: Prepared | None
    video: np.ndarray | None
    error: Exception | None
    started_at: float
    batch_size: int
    batch_id: int


class TimingMiddleware:
    """On LitServe's HTTP side: X-Queue-Seconds (arrival -> the worker taking the request up, in
    decode_request) and X-Compute-Seconds (that -> its response ready), from the worker's stamps."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        received = time.time()

        async def send_timed(message):
            if message["type"] == "http.response.start":
                from starlette.datastructures import MutableHeaders

                headers = MutableHeaders(scope=message)
                started, completed = headers.get(STARTED_HEADER), headers.get(COMPLETED_HEADER)
                if started and completed:
                    headers[QUEUE_HEADER] = f"{max(0.0, float(started) - received):.6f}"
                    headers[COMPUTE_HEADER] = f"{float(completed) - float(started):.6f}"
            await send(message)

        await self.app(scope, receive, send_timed)


class VideoAPI(ls.LitAPI if ls is not None else object):
    """POST /v1/videos (the create body of Kinetoscope's API) -> the MP4, batched by LitServe."""

    def __init__(self, repo: str | Path, *, threads: int = 0, max_batch_size: int = DEFAULT_MAX_BATCH_SIZE,
                 batch_timeout: float = DEFAULT_BATCH_TIMEOUT_S):
        if ls is None:
            raise RuntimeError(LITSERVE_MISSING)
        super().__init__(max_batch_size=max_batch_size, batch_timeout=batch_timeout, api_path=VIDEOS_PATH)
        self.repo, self.threads = str(repo), threads
        self.peer: PeerModel | None = None
        self.batches = 0

    def setup(self, device):
        # CPU only (ONNX Runtime's CPU provider, as the other targets); `device` is LitServe's "cpu".
        self.peer = PeerModel(Path(self.repo), self.threads)

    # No annotation on `request`: LitServe reads it to choose the endpoint's body type (none: the raw JSON).
    def decode_request(self, request, **kwargs) -> Decoded:
        started = time.time()  # the worker takes the request up: its queueing ends here
        try:
            return Decoded(self.peer.prepare(request), started)
        except Exception as exc:  # answered by encode_response; the batch goes on
            return Decoded(exc, started)

    def predict(self, batch: list[Decoded], **kwargs) -> list[Output]:
        self.batches += 1
        runnable = [d.value for d in batch if isinstance(d.value, Prepared)]
        error: Exception | None = None
        videos: list[np.ndarray] = []
        try:
            videos = self.peer.generate(runnable) if runnable else []
        except Exception as exc:  # the whole batch ran as one: it fails as one
            error = exc
        made = iter(videos)  # in the order of `runnable`, which keeps the batch's order
        outputs = []
        for d in batch:
            prepared = d.value if isinstance(d.value, Prepared) else None
            failure = error if prepared is not None else d.value
            video = next(made, None) if prepared is not None else None
            outputs.append(Output(prepared, video, failure, d.started_at, len(batch), self.batches))
        return outputs

    def encode_response(self, output: Output, **kwargs):
        from starlette.responses import Response

        headers = {STARTED_HEADER: f"{output.started_at:.6f}", BATCH_SIZE_HEADER: str(output.batch_size),
                   BATCH_ID_HEADER: str(output.batch_id)}
        if output.error is not None or output.video is None:
            status, body = error_json(output.error or RuntimeError("no video was made"))
            headers[COMPLETED_HEADER] = f"{time.time():.6f}"
            return Response(body, status_code=status, media_type="application/json", headers=headers)
        request = output.prepared.request
        content = self.peer.encode(output.video, request)
        headers[COMPLETED_HEADER] = f"{time.time():.6f}"
        return Response(content, media_type=MEDIA_TYPES[request.output_format], headers=headers)


def make_server(repo: str | Path, *, max_batch_size: int = DEFAULT_MAX_BATCH_SIZE,
                batch_timeout: float = DEFAULT_BATCH_TIMEOUT_S, workers_per_device: int = 1, threads: int = 0):
    """The LitServer: one CPU inference worker by default (ONNX Runtime already uses every core
    in it), the model's classes at GET /info, and a queue timeout long enough for video: LitServe
    answers 504 to a request that waited longer than `timeout` (30 s by default)."""
    if ls is None:
        raise RuntimeError(LITSERVE_MISSING)
    api = VideoAPI(repo, threads=threads, max_batch_size=max_batch_size, batch_timeout=batch_timeout)
    return ls.LitServer(api, accelerator="cpu", workers_per_device=workers_per_device, timeout=600,
                        model_metadata=model_info(default_manifest(Path(repo))), middlewares=[TimingMiddleware])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repo", default="model_repository")
    parser.add_argument("--port", type=int, default=8101)
    parser.add_argument("--max-batch-size", type=int, default=DEFAULT_MAX_BATCH_SIZE)
    parser.add_argument("--batch-timeout", type=float, default=DEFAULT_BATCH_TIMEOUT_S, help="seconds")
    parser.add_argument("--workers-per-device", type=int, default=1)
    parser.add_argument("--threads", type=int, default=0, help="ONNX Runtime intra-op threads (0: every core)")
    args = parser.parse_args(argv)
    server = make_server(args.repo, max_batch_size=args.max_batch_size, batch_timeout=args.batch_timeout,
                         workers_per_device=args.workers_per_device, threads=args.threads)
    server.run(host="127.0.0.1", port=args.port, log_level="warning", generate_client_file=False)


if __name__ == "__main__":
    main()
