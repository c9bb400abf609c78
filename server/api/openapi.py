"""The OpenAPI document: FastAPI's, plus the request-body schemas that POST /v1/videos reads by
hand (it takes JSON or multipart, which one signature cannot declare), with what the server will
accept written into them: each task's requirements, the server's limits and models, a form's
fields as a form carries them. A client or fuzzer built from the schema then sends bodies that
make jobs (tests/test_schemathesis.py); what JSON Schema cannot say stays the server's to check."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from server.api.schemas import ErrorResponse, VideoCreateMultipart, VideoCreateRequest
from server.request import needs_input
from server.tasks import ALL_TASKS, CLASS_TASKS, SPATIAL_TASKS

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
            parts = schema["components"]["schemas"]
            form_schema(parts["VideoCreateMultipart"], parts["VideoCreateRequest"])
            _task_rules(parts)
            _box_shape(parts["MaskSpec"])
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
    it (or a fuzzer) sends what can be served: frames, steps, deadline, metadata, webhooks, the
    models' ids, classes, sizes, samplers and windows, and the list filter's model ids."""
    parts = schema["components"]["schemas"]
    props, form = parts["VideoCreateRequest"]["properties"], parts["VideoCreateMultipart"]["properties"]
    sampler = parts["SamplerSpec"]["properties"]

    def bound(prop: dict[str, Any], **limits: Any) -> None:
        for option in prop.get("anyOf", [prop]):
            if option.get("type") in ("integer", "number", "string"):
                option.update(limits)

    def both(name: str, **limits: Any) -> None:  # the JSON body and the form carry the same field
        bound(props[name], **limits)
        bound(form[name], **limits)

    both("num_frames", maximum=settings.max_num_frames)
    both("deadline_seconds", maximum=settings.max_job_seconds)
    bound(sampler["steps"], maximum=settings.max_steps)
    _metadata_limits(props["metadata"], settings)
    if not settings.webhook_secret:  # such a server refuses every webhook (422 webhooks_disabled)
        for name in ("webhook", "webhook_events"):
            props[name] = {"type": "null", "description": props[name].get("description", "") +
                           ". This server has no webhook secret, so it sends no webhooks: leave it out"}
            form.pop(name, None)
    manifests = list(getattr(catalogue, "manifests", {}).values())
    if manifests:
        both("class_label", maximum=max(len(m.classes) for m in manifests) - 1)
        both("condition_frames", maximum=max(m.window_frames for m in manifests) - 1)  # 1 <= k < the window
        sizes = sorted({size for m in manifests for size in m.sizes}, key=lambda s: int(s.split("x")[0]))
        both("size", enum=sizes)
        both("model", enum=sorted(m.model_id for m in manifests))
        methods = sorted({method for m in manifests for method in m.samplers})
        bound(sampler["method"], enum=methods)
        listing = schema["paths"]["/v1/videos"]["get"]["parameters"]
        bound(next(p for p in listing if p["name"] == "model")["schema"], enum=sorted(m.model_id for m in manifests))


def _metadata_limits(prop: dict[str, Any], settings: Any) -> None:
    for option in prop.get("anyOf", [prop]):
        if option.get("type") == "object":
            option.update(maxProperties=settings.max_metadata_pairs,
                          propertyNames={"minLength": 1, "maxLength": settings.max_metadata_key_chars},
                          additionalProperties={"type": "string", "maxLength": settings.max_metadata_value_chars})


def form_schema(form: dict[str, Any], body: dict[str, Any]) -> None:
    """The multipart create body as the server reads it: a form field is absent or text, so it
    has no null (a fuzzer would send the text "null"); a number or string field has the JSON
    body's bounds (ge, le, pattern: the same pydantic model judges both); and the form takes no
    field it does not name."""
    for name, prop in form["properties"].items():
        options = [o for o in prop.get("anyOf", [prop]) if o.get("type") != "null"]
        if len(options) != 1:
            continue
        field = {**{k: v for k, v in prop.items() if k not in ("anyOf", "default")}, **options[0]}
        same = [o for o in body["properties"].get(name, {}).get("anyOf", []) if o.get("type") == field.get("type")]
        if same and field.get("type") in ("integer", "number", "string") and "format" not in field:
            field.update({k: v for k, v in same[0].items() if k != "type"})
        form["properties"][name] = field
    form["additionalProperties"] = False


def _when(tasks: tuple[str, ...] | list[str], then: dict[str, Any]) -> dict[str, Any]:
    return {"if": {"properties": {"task": {"enum": list(tasks)}}, "required": ["task"]}, "then": then}


def _task_rules(parts: dict[str, Any]) -> None:
    """What each task requires, as JSON Schema `if`/`then` rules on the JSON create body (validation.py
    enforces them; said here, a client or fuzzer built from the schema sends what is served):
    the class tasks' class_label; one input source for the conditioned tasks (input_video,
    input_video_id or, inpainting and outpainting only, edit); the spatial tasks' mask (exactly
    one of preset and box); frame_interpolation's two frames at least."""
    text, null = {"type": "string"}, {"type": "null"}
    one_input = [{"required": ["input_video"], "properties": {"input_video": text}},
                 {"required": ["input_video_id"], "properties": {"input_video_id": text}}]
    edit = {"required": ["edit"], "properties": {"edit": {"type": "object"}}}
    mask = {"type": "object", "oneOf": [{"required": ["preset"], "properties": {"preset": text, "box": null}},
                                        {"required": ["box"], "properties": {"box": {"type": "array"}, "preset": null}}]}
    conditioned = [t for t in ALL_TASKS if needs_input(t) and t not in SPATIAL_TASKS]
    parts["VideoCreateRequest"]["allOf"] = [
        _when(CLASS_TASKS, {"required": ["class_label"], "properties": {"class_label": {"type": "integer"}}}),
        _when([t for t in ALL_TASKS if not needs_input(t)], {
            "properties": {"edit": null}, "not": {"required": ["input_video", "input_video_id"],
                                                  "properties": {"input_video": text, "input_video_id": text}}}),
        _when(conditioned, {"oneOf": one_input, "properties": {"edit": null}}),
        _when(SPATIAL_TASKS, {"oneOf": [*one_input, edit], "required": ["mask"], "properties": {"mask": mask}}),
        _when(["frame_interpolation"], {"properties": {"num_frames": {"anyOf": [{"type": "integer", "minimum": 2}, null]}}}),
    ]
    # The form gets no such rules: schemathesis (4.32) cannot judge a conditional on an object
    # holding a file part ("Unsupported type: 'Binary'") and stops; the server's checks stand.


def _box_shape(mask: dict[str, Any]) -> None:
    """A box is four numbers in [0, 1] (x0 < x1 and y0 < y1 are the server's to check), or a
    non-empty list of such boxes."""
    box = mask["properties"]["box"]
    coordinate = {"type": "number", "minimum": 0, "maximum": 1}
    for option in box.get("anyOf", []):
        if option.get("type") == "array":
            inner = option["items"]
            target = inner if inner.get("type") == "array" else option
            target.update(items=coordinate, minItems=4, maxItems=4)
            if target is inner:
                option["minItems"] = 1


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
