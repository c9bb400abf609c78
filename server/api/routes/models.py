"""/v1/models: what this server can generate, read from the model manifests."""
from __future__ import annotations

from dataclasses import asdict
from typing import Any

from fastapi import APIRouter

from server.api.deps import Authenticated, CatalogueDep, SettingsDep
from server.api.errors import APIError
from server.api.schemas import ErrorResponse, ModelCard, ModelList
from server.manifest import Manifest
from server.settings import Settings

router = APIRouter(prefix="/v1/models", tags=["models"], dependencies=Authenticated)


def sampler_defaults(manifest: Manifest) -> dict[str, Any]:
    """Per task: the recommended method and each method's resolved settings."""
    return {task: {"method": manifest.sampler_for(task).method,
                   "methods": {m: asdict(manifest.sampler_for(task, {"method": m})) for m in manifest.samplers}}
            for task in manifest.tasks}


def model_card(manifest: Manifest, backend: str, settings: Settings) -> dict[str, Any]:
    return {"id": manifest.model_id, "object": "model", "description": manifest.description,
            "tasks": list(manifest.tasks), "sizes": manifest.sizes, "window_frames": manifest.window_frames,
            "default_condition_frames": manifest.default_condition_frames, "fps": manifest.fps,
            "classes": list(manifest.classes), "samplers": list(manifest.samplers),
            "sampler_defaults": sampler_defaults(manifest), "backend": backend,
            "max_num_frames": settings.max_num_frames}


@router.get("", response_model=ModelList, summary="List the models this server runs",
            responses={401: {"model": ErrorResponse}, 503: {"model": ErrorResponse}})
async def list_models(catalogue: CatalogueDep, settings: SettingsDep) -> dict[str, Any]:
    # The default model first: clients that take data[0] get what a request without `model` gets.
    ids = sorted(catalogue.manifests, key=lambda m: (m != catalogue.default_model, m))
    return {"object": "list", "data": [model_card(catalogue.manifests[m], catalogue.backend, settings) for m in ids]}


@router.get("/{model_id}", response_model=ModelCard, summary="Get one model",
            responses={401: {"model": ErrorResponse}, 404: {"model": ErrorResponse}})
async def get_model(model_id: str, catalogue: CatalogueDep, settings: SettingsDep) -> dict[str, Any]:
    if model_id not in catalogue.manifests:
        raise APIError(404, "model_not_found", f"no model {model_id!r}", param="model_id")
    return model_card(catalogue.manifests[model_id], catalogue.backend, settings)
