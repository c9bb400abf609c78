"""/v1/tokenize, /v1/detokenize and /v1/score: the tokenizer and the autoregressive prior's
likelihood as an API (docs/api.md). Synchronous, for one
window, batched with every other network call through the model's pipeline; the same limits,
auth and errors as jobs. They need the models in this process (the embedded server; an API
replica in front of Redis workers answers 503)."""
from __future__ import annotations

import functools
from typing import Any, Optional

import numpy as np
from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.concurrency import run_in_threadpool

from server.api.deps import Authenticated, RuntimeDep, SettingsDep
from server.api.errors import APIError, validation_error
from server.api.schemas import ErrorResponse, JSONInt
from server.api.intake import UPLOADED, decode_base64, read_video
from server.api.openapi import form_schema
from server.api.validation import choose_manifest
from server.output import OUTPUT_FORMATS
from server.video import decode_input, encode_mp4

router = APIRouter(prefix="/v1", tags=["tokens"], dependencies=Authenticated)
ERRORS = {s: {"model": ErrorResponse} for s in (400, 404, 413, 415, 422, 503)}


def _body_schema(model: type[BaseModel], upload: bool) -> dict[str, Any]:
    """The OpenAPI requestBody of a route that reads its body itself (`_body`): JSON, and with
    `upload` also multipart with an input_video file part."""
    schema = model.model_json_schema()
    content: dict[str, Any] = {"application/json": {"schema": schema}}
    if upload:
        form = {**schema, "properties": {**schema["properties"], "input_video": {"type": "string", "format": "binary"}}}
        form_schema(form, schema)  # as the create form: no nulls, no other fields (it builds new dicts)
        content["multipart/form-data"] = {"schema": form}
    return {"requestBody": {"required": True, "content": content}}


class TokenizeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())
    model: Optional[str] = Field(None, description="a model id; default: the server's default model")
    input_video: str = Field(description="base64 MP4, WebM, GIF or PNG (or a multipart file part named input_video)")


class TokenizeResponse(BaseModel):
    model_config = ConfigDict(protected_namespaces=())
    model: str
    token_grid: list[int] = Field(description="(t, h, w)")
    vocab_size: int
    tokens: list[int] = Field(description="t*h*w token ids in raster order")


class DetokenizeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())
    model: Optional[str] = None
    tokens: list[JSONInt] = Field(description="t*h*w token ids in raster order, each in [0, vocab_size)")
    size: Optional[str] = Field(None, pattern=r"^\d+x\d+$", description="one of the model's sizes; default: the base size")


def _pipeline(runtime: Any, model: str | None):
    manifest = choose_manifest(runtime.catalogue, model)
    pipeline = getattr(runtime, "pipelines", {}).get(manifest.model_id)
    if pipeline is None:
        raise APIError(503, "models_not_loaded", "this API process runs no models (its workers do): tokenize and "
                       "detokenize need a server with an embedded worker")
    return manifest, pipeline


async def _body(request: Request, model_type: type[BaseModel], settings) -> tuple[BaseModel, bytes | None]:
    media = request.headers.get("content-type", "application/json").split(";")[0].strip().lower()
    try:
        if media == "multipart/form-data":
            form = await request.form(max_files=1, max_fields=8, max_part_size=settings.max_body_bytes)
            fields: dict[str, Any] = {}
            upload = None
            for name, value in form.multi_items():
                if hasattr(value, "read"):
                    upload = await value.read(settings.max_upload_bytes + 1)
                    fields[name] = UPLOADED
                elif value != "":
                    fields[name] = value
            await form.close()
            return model_type.model_validate(fields), upload
        body = await request.body()
        if not body.strip():
            raise APIError(400, "invalid_json", "the request body is empty; send a JSON object")
        return model_type.model_validate_json(body, strict=True), None
    except ValidationError as exc:
        first = exc.errors()[0]
        if first["type"] == "json_invalid":
            raise APIError(400, "invalid_json", f"the body is not valid JSON: {first['msg']}") from None
        raise validation_error(exc.errors()) from None


async def _video_tokens(request: Request, input_video: str | None, upload: bytes | None, pipeline,
                       settings) -> np.ndarray:
    """The request's video (base64 or an uploaded part) -> its first window's tokens. Only that
    window's frames are decoded, and they hold their decode slot until the encoder is done
    with them (`max_concurrent_decodes` bounds what these requests hold, not just the decode)."""
    if upload is not None and len(upload) > settings.max_upload_bytes:
        raise APIError(413, "upload_too_large", f"input_video is larger than {settings.max_upload_bytes} bytes",
                       param="input_video")
    data = upload if upload is not None else decode_base64(input_video or "", settings.max_upload_bytes)
    read = functools.partial(decode_input, max_frames=pipeline.manifest.window_frames)
    return await read_video(request, read, data, settings, then=lambda video: pipeline.tokenize(video.frames))


@router.post("/tokenize", response_model=TokenizeResponse, responses=ERRORS,
             summary="A video's tokens (its first window)", openapi_extra=_body_schema(TokenizeRequest, True))
async def tokenize(request: Request, runtime: RuntimeDep, settings: SettingsDep) -> dict[str, Any]:
    req, upload = await _body(request, TokenizeRequest, settings)
    manifest, pipeline = _pipeline(runtime, req.model)
    tokens = await _video_tokens(request, req.input_video, upload, pipeline, settings)
    return {"model": manifest.model_id, "token_grid": list(manifest.token_grid), "vocab_size": manifest.vocab_size,
            "tokens": tokens.reshape(-1).tolist()}


@router.post("/detokenize", response_class=Response, summary="Tokens -> an MP4 (and the super-resolution cascade)",
             openapi_extra=_body_schema(DetokenizeRequest, False),
             responses={200: {"content": {OUTPUT_FORMATS["mp4"]: {"schema": {"type": "string", "format": "binary"}}}},
                        **ERRORS})
async def detokenize(request: Request, runtime: RuntimeDep, settings: SettingsDep) -> Response:
    req, _ = await _body(request, DetokenizeRequest, settings)
    manifest, pipeline = _pipeline(runtime, req.model)
    tokens = _check_tokens(req.tokens, manifest)
    size = req.size or manifest.sizes[0]
    if size not in manifest.sizes:
        raise APIError(422, "invalid_value", f"model {manifest.model_id} makes sizes {', '.join(manifest.sizes)}; "
                       f"got {size!r}", param="size")
    width, height = (int(v) for v in size.split("x"))
    frames = await pipeline.detokenize(tokens, (height, width))
    mp4 = await run_in_threadpool(encode_mp4, frames, manifest.fps)
    return Response(mp4, media_type=OUTPUT_FORMATS["mp4"])


class ScoreRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())
    model: Optional[str] = None
    input_video: Optional[str] = Field(None, description="base64 video (its first window is scored), or...")
    tokens: Optional[list[JSONInt]] = Field(None, description="...t*h*w token ids instead")


class ScoreResponse(BaseModel):
    model_config = ConfigDict(protected_namespaces=())
    model: str
    log_likelihood: float = Field(description="nats: the exact log-probability of the tokens under the autoregressive prior")
    bits_per_token: float
    per_latent_frame: list[float] = Field(description="the log-likelihood summed per latent frame: a surprise curve")


def _check_tokens(tokens: list[int], manifest) -> np.ndarray:
    n = manifest.num_tokens
    if len(tokens) != n:
        raise APIError(422, "invalid_value", f"tokens must hold {n} ids (token_grid {list(manifest.token_grid)}); "
                       f"got {len(tokens)}", param="tokens")
    array = np.asarray(tokens, dtype=np.int64)
    if array.min() < 0 or array.max() >= manifest.vocab_size:
        raise APIError(422, "invalid_value", f"token ids must lie in [0, {manifest.vocab_size}); got "
                       f"{int(array.min())}..{int(array.max())}", param="tokens")
    return array.reshape(manifest.token_grid)


@router.post("/score", response_model=ScoreResponse, responses=ERRORS,
             summary="The log-likelihood of a video (or tokens) under the autoregressive prior",
             openapi_extra=_body_schema(ScoreRequest, True))
async def score(request: Request, runtime: RuntimeDep, settings: SettingsDep) -> dict[str, Any]:
    req, upload = await _body(request, ScoreRequest, settings)
    manifest, pipeline = _pipeline(runtime, req.model)
    if (req.tokens is None) == (req.input_video is None and upload is None):
        raise APIError(422, "invalid_value", "give input_video or tokens, exactly one", param="tokens")
    if req.tokens is not None:
        tokens = _check_tokens(req.tokens, manifest)
    else:
        tokens = await _video_tokens(request, req.input_video, upload, pipeline, settings)
    try:
        log_prob = await pipeline.score(tokens)
    except ValueError as exc:  # TaskError: no autoregressive prior
        raise APIError(422, "invalid_request", str(exc), param="model") from None
    total = float(log_prob.sum())
    return {"model": manifest.model_id, "log_likelihood": total,
            "bits_per_token": -total / log_prob.size / np.log(2),
            "per_latent_frame": [float(v) for v in log_prob.reshape(len(log_prob), -1).sum(axis=1)]}
