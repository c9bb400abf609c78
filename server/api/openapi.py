"""The OpenAPI document: FastAPI's, plus the request-body schemas that POST /v1/videos reads by
hand (it takes JSON or multipart, which one signature cannot declare)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from server.api.schemas import ErrorResponse, VideoCreateMultipart, VideoCreateRequest

_REF = "#/components/schemas/{model}"


def install_docs(app: FastAPI) -> None:
    """/docs (Swagger UI) and /redoc from assets the server serves itself (fastapi-offline's
    copies), not from a CDN: the API documentation works with no network."""
    from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
    from fastapi.responses import HTMLResponse
    from fastapi.staticfiles import StaticFiles

    import fastapi_offline

    assets = Path(fastapi_offline.__file__).parent / "static"  # swagger-ui-bundle.js, swagger-ui.css, redoc
    app.mount(DOCS_STATIC, StaticFiles(directory=assets), name="docs-static")

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url=app.openapi_url, title=f"{app.title} API",
                                   swagger_js_url=f"{DOCS_STATIC}/swagger-ui-bundle.js",
                                   swagger_css_url=f"{DOCS_STATIC}/swagger-ui.css",
                                   swagger_favicon_url=f"{DOCS_STATIC}/favicon.png")

    @app.get("/redoc", include_in_schema=False)
    async def redoc() -> HTMLResponse:
        return get_redoc_html(openapi_url=app.openapi_url, title=f"{app.title} API",
                              redoc_js_url=f"{DOCS_STATIC}/redoc.standalone.js",
                              redoc_favicon_url=f"{DOCS_STATIC}/favicon.png", with_google_fonts=False)


DOCS_STATIC = "/docs-static"


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
            settings = getattr(app.state, "settings", None)
            if settings is not None:
                _with_server_limits(schema, settings, getattr(app.state, "catalogue", None))
            if settings is not None and not settings.api_keys:  # an open server: no auth to declare
                _drop_security(schema)
            if getattr(app.state, "catalogue", None) is not None:  # once the models are known: final
                app.openapi_schema = schema
            return schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def _with_server_limits(schema: dict[str, Any], settings: Any, catalogue: Any) -> None:
    """The limits the server checks, in the create body's schema, so that a client generated from
    it (or a fuzzer) sends what can be served: frames, steps, deadline, and the models' classes
    and sizes."""
    props = schema["components"]["schemas"]["VideoCreateRequest"]["properties"]
    sampler = schema["components"]["schemas"]["SamplerSpec"]["properties"]

    def bound(prop: dict[str, Any], **limits: Any) -> None:
        for option in prop.get("anyOf", [prop]):
            if option.get("type") in ("integer", "number", "string"):
                option.update(limits)

    bound(props["num_frames"], maximum=settings.max_num_frames)
    bound(props["condition_frames"], maximum=settings.max_num_frames - 1)
    bound(props["deadline_seconds"], maximum=settings.max_job_seconds)
    bound(sampler["steps"], maximum=settings.max_steps)
    manifests = list(getattr(catalogue, "manifests", {}).values())
    if manifests:
        bound(props["class_label"], maximum=max(len(m.classes) for m in manifests) - 1)
        sizes = sorted({size for m in manifests for size in m.sizes}, key=lambda s: int(s.split("x")[0]))
        bound(props["size"], enum=sizes)
        bound(props["model"], enum=sorted(m.model_id for m in manifests))


def _drop_security(schema: dict[str, Any]) -> None:
    schema.get("components", {}).pop("securitySchemes", None)
    for path in schema.get("paths", {}).values():
        for operation in path.values():
            operation.pop("security", None)


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
