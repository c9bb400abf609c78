"""What both peers share: loading the model repository, reading a POST /v1/videos body into a
VideoRequest (and its input frames) through the server's own validation, encoding the video, the
error shape, and the timing headers every peer response carries."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from cli.bench.peers.lockstep import StaticBatchModel, open_engines
from server.api.errors import APIError, error_body
from server.api.intake import decode_base64
from server.api.validation import check_input_frames, choose_manifest, validate_request
from server.catalogue import Catalogue, load_catalogue
from server.errors import KinetoscopeError
from server.manifest import Manifest
from server.output import encode_video
from server.request import VideoRequest
from server.settings import Settings
from server.video import blaming, decode_input

# Response headers (seconds, on the peer's clock): waiting before any work on the request, then
# the rest of its time in the server (its input decoded, the decode loop of its batch, its MP4),
# as Kinetoscope's started_at - created_at and completed_at - started_at; the number of requests
# in the predict call that served it and that call's sequence number (equal ids: one call).
QUEUE_HEADER, COMPUTE_HEADER = "X-Queue-Seconds", "X-Compute-Seconds"
BATCH_SIZE_HEADER, BATCH_ID_HEADER = "X-Batch-Size", "X-Batch-Id"
VIDEOS_PATH = "/v1/videos"  # the peers answer the same path and body as Kinetoscope's create call
MEDIA_TYPES = {"mp4": "video/mp4", "webm": "video/webm", "gif": "image/gif"}
UNSUPPORTED = ("input_video_id", "edit", "webhook", "webhook_events")  # they need a job store


@dataclass(frozen=True)
class Prepared:
    """A request ready for the model: validated, its input video decoded."""

    request: VideoRequest
    frames: np.ndarray | None


class PeerModel:
    """The default model of a repository, its engines, and the request rules of the API."""

    def __init__(self, repo: Path, threads: int = 0):
        self.settings = Settings(model_repository=Path(repo))
        self.catalogue: Catalogue = load_catalogue(self.settings, verify=True)
        model_id = self.catalogue.default_model
        self.manifest = self.catalogue.manifests[model_id]
        engines = open_engines(self.catalogue.repositories[model_id], self.manifest, self.settings.backend, threads)
        self.model = StaticBatchModel(self.manifest, engines)

    def info(self) -> dict[str, Any]:
        return model_info(self.manifest)

    def prepare(self, body: Mapping[str, Any]) -> Prepared:
        """A POST /v1/videos JSON body -> the request as Kinetoscope would run it. APIError otherwise."""
        if not isinstance(body, Mapping):
            raise APIError(422, "invalid_value", "the body must be a JSON object")
        for name in UNSUPPORTED:
            if body.get(name) is not None:
                raise APIError(422, "unsupported", f"{name} needs Kinetoscope's job store; this peer has none", param=name)
        if body.get("previews"):
            raise APIError(422, "unsupported", "this peer publishes no previews", param="previews")
        manifest = choose_manifest(self.catalogue, body.get("model"))
        request = validate_request(body, manifest, self.settings)
        if not request.has_input:
            return Prepared(request, None)
        data = decode_base64(body.get("input_video") or "", self.settings.max_upload_bytes)
        with blaming("input_video"):  # a VideoError is answered by error_json as it is
            video = decode_input(data, self.settings)
        check_input_frames(request, len(video.frames))
        return Prepared(request, video.frames)

    def generate(self, batch: list[Prepared]) -> list[np.ndarray]:
        return self.model.generate([(p.request, p.frames) for p in batch])

    @staticmethod
    def encode(video: np.ndarray, request: VideoRequest) -> bytes:
        return encode_video(video, request.fps, request.output_format)


def parse_json(raw: bytes) -> Any:
    """A request body's JSON; APIError 400 invalid_json (as Kinetoscope answers) when it is none."""
    try:
        return json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise APIError(400, "invalid_json", f"the body is not valid JSON: {exc}") from None


def model_info(manifest: Manifest) -> dict[str, Any]:
    """What a peer's GET /info says of its model (the load driver reads the classes)."""
    m = manifest
    return {"id": m.model_id, "classes": list(m.classes), "sizes": m.sizes, "tasks": list(m.tasks)}


def default_manifest(repo: Path) -> Manifest:
    """The repository's default model's manifest, without opening any network."""
    catalogue = load_catalogue(Settings(model_repository=Path(repo)))
    return catalogue.manifests[catalogue.default_model]


def error_json(exc: Exception) -> tuple[int, bytes]:
    """(status, body) in the API's error shape; anything not ours is a 500."""
    if isinstance(exc, KinetoscopeError):
        status, body = exc.status, error_body(exc.status, exc.code, exc.message, exc.param)
    else:
        status, body = 500, error_body(500, "internal_error", f"{type(exc).__name__}: {exc}")
    return status, json.dumps(body).encode()


def timing_headers(queue_s: float, compute_s: float, batch_size: int, batch_id: int) -> dict[str, str]:
    return {QUEUE_HEADER: f"{queue_s:.6f}", COMPUTE_HEADER: f"{compute_s:.6f}",
            BATCH_SIZE_HEADER: str(batch_size), BATCH_ID_HEADER: str(batch_id)}
