"""The OpenAPI document: FastAPI's, plus the request-body schemas that POST /v1/videos reads by
hand (it takes JSON or multipart, which one signature cannot declare)."""
from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from server.api.schemas import ErrorResponse, VideoCreateMultipart, VideoCreateRequest

_REF = "#/components/schemas/{model}"


def install_openapi(app: FastAPI) -> None:
    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version, description=app.description,
                                 routes=app.routes, tags=app.openapi_tags)
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            for model in (VideoCreateRequest, VideoCreateMultipart, ErrorResponse):
                model_schema = model.model_json_schema(ref_template=_REF)
                components.update(model_schema.pop("$defs", {}))
                components[model.__name__] = model_schema
            _use_our_validation_errors(schema)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def _use_our_validation_errors(schema: dict[str, Any]) -> None:
    """FastAPI documents its own 422 body (HTTPValidationError); ours is ErrorResponse."""
    ours = {"$ref": _REF.format(model="ErrorResponse")}
    for path in schema.get("paths", {}).values():
        for operation in path.values():
            response = operation.get("responses", {}).get("422")
            if response is not None:
                response["description"] = "invalid field; `param` names it"
                response["content"] = {"application/json": {"schema": ours}}
    for name in ("HTTPValidationError", "ValidationError"):
        schema["components"]["schemas"].pop(name, None)
