"""The OpenAPI document says what the server serves (issue #12, found with schemathesis): each
task's requirements, the form body as a form carries it, the listing's model ids, one SSE event,
the token documents, and a 405's Allow header naming every method of the path. Before, every
body schemathesis generated was refused (a class task without class_label, an inpainting
without an input or a mask, the text "null" in a form field, `6.0` for an integer), so a run
created no job."""
from __future__ import annotations

import pytest

jsonschema_rs = pytest.importorskip("jsonschema_rs")  # installed with schemathesis (the test extra)


async def _schema(api) -> dict:
    return (await api.client.get("/openapi.json")).json()


def _valid(schema: dict, component: str, body: dict) -> bool:
    document = {"$schema": "https://json-schema.org/draft/2020-12/schema",
                "$ref": f"#/components/schemas/{component}", "components": schema["components"]}
    return jsonschema_rs.validator_for(document).is_valid(body)


@pytest.mark.parametrize("body,valid", [
    ({"task": "class_conditional", "class_label": 3}, True),
    ({"task": "class_conditional"}, False),  # a class task needs its class
    ({"task": "class_conditional", "class_label": None}, False),
    ({"task": "class_conditional", "class_label": 3, "edit": {"from": "video_1"}}, False),
    ({"task": "class_conditional", "class_label": 3, "input_video": "AAAA", "input_video_id": "video_1"}, False),
    ({"task": "frame_prediction", "input_video": "AAAA"}, True),
    ({"task": "frame_prediction"}, False),  # no input
    ({"task": "frame_prediction", "input_video": "AAAA", "input_video_id": "video_1"}, False),  # two inputs
    ({"task": "frame_prediction", "input_video_id": "video_1", "edit": {"from": "video_2"}}, False),
    ({"task": "inpainting", "input_video": "AAAA", "mask": {"preset": "center"}}, True),
    ({"task": "inpainting", "edit": {"from": "video_1"}, "mask": {"box": [0.1, 0.1, 0.9, 0.9]}}, True),
    ({"task": "inpainting", "input_video": "AAAA"}, False),  # no mask
    ({"task": "inpainting", "input_video": "AAAA", "mask": {"preset": "center", "box": [0, 0, 1, 1]}}, False),
    ({"task": "inpainting", "input_video": "AAAA", "mask": {"box": [0, 0, 2, 1]}}, False),  # outside [0, 1]
    ({"task": "frame_interpolation", "input_video": "AAAA", "num_frames": 1}, False),
    ({"task": "frame_prediction", "input_video": "AAAA", "condition_frames": 16}, False),  # < the window
    ({"task": "class_conditional", "class_label": 3, "metadata": {"k" * 65: "v"}}, False),
    ({"task": "class_conditional", "class_label": 3, "webhook": "https://example.com/hook"}, False),  # no secret
])
async def test_the_create_schema_says_what_each_task_needs(make_api, body, valid):
    async with make_api() as api:
        schema = await _schema(api)
        assert _valid(schema, "VideoCreateRequest", body) is valid


async def test_the_form_schema_has_no_nulls_and_no_other_fields(make_api):
    async with make_api() as api:
        form = (await _schema(api))["components"]["schemas"]["VideoCreateMultipart"]
        assert form["additionalProperties"] is False
        assert all("anyOf" not in prop and prop.get("type") != "null" for prop in form["properties"].values())
        assert form["properties"]["class_label"]["minimum"] == 0 and form["properties"]["class_label"]["maximum"] == 9
        assert "webhook" not in form["properties"]  # a server without a webhook secret takes none


async def test_integers_may_be_written_as_integral_numbers(make_api):
    """JSON Schema's integer admits 3.0; the server now does too (3.5 and "3" stay refused)."""
    async with make_api() as api:
        ok = await api.client.post("/v1/videos", json={"task": "class_conditional", "class_label": 3.0, "num_frames": 16.0})
        assert ok.status_code == 202, ok.text
        assert ok.json()["request"]["class_label"] == 3 and ok.json()["num_frames"] == 16
        for bad in (3.5, "3"):
            r = await api.client.post("/v1/videos", json={"task": "class_conditional", "class_label": bad})
            assert r.status_code == 422 and r.json()["error"]["param"] == "class_label"


async def test_the_listing_filter_names_the_served_models(make_api):
    async with make_api() as api:
        params = (await _schema(api))["paths"]["/v1/videos"]["get"]["parameters"]
        model = next(p for p in params if p["name"] == "model")["schema"]
        assert [o for o in model["anyOf"] if o.get("type") == "string"][0]["enum"] == ["demo"]


async def test_events_content_and_create_links_are_described(make_api):
    async with make_api() as api:
        paths = (await _schema(api))["paths"]
        event = paths["/v1/videos/{video_id}/events"]["get"]["responses"]["200"]["content"]["text/event-stream"]["schema"]
        assert event["type"] == "object" and event["required"] == ["data"]  # one event, as OpenAPI 3.1 reads it
        content = paths["/v1/videos/{video_id}/content"]["get"]["responses"]["200"]["content"]
        assert content["application/json"]["schema"]["type"] == "object"  # tokens / confidence documents
        create = paths["/v1/videos"]["post"]
        links = create["responses"]["202"]["links"]
        assert links["GetVideo"] == {"operationId": "get_video", "parameters": {"video_id": "$response.body#/id"}}
        for name, example in create["requestBody"]["content"]["application/json"]["examples"].items():
            r = await api.client.post("/v1/videos", json=example["value"])
            assert r.status_code == 202, (name, r.text)  # every documented example makes a job


async def test_a_405_allows_every_method_of_the_path(make_api):
    async with make_api() as api:
        r = await api.client.request("OPTIONS", "/v1/videos/video_x")
        assert r.status_code == 405
        assert {m.strip() for m in r.headers["allow"].split(",")} >= {"GET", "DELETE"}
        r = await api.client.request("PUT", "/v1/videos")
        assert {m.strip() for m in r.headers["allow"].split(",")} >= {"GET", "POST"}


async def test_a_405_on_a_mounted_path_names_what_the_mount_serves(make_api):
    """Review A1: a mount was skipped, so StaticFiles' 405 got `Allow: ''` ("no method at all")."""
    async with make_api() as api:
        r = await api.client.post("/static/app.js")
        assert r.status_code == 405 and r.json()["error"]["code"] == "method_not_allowed"
        assert [m.strip() for m in r.headers["allow"].split(",")] == ["GET", "HEAD"]


async def test_a_405_keeps_the_raisers_allow_when_the_routing_knows_none():
    import httpx
    from fastapi import FastAPI
    from starlette.exceptions import HTTPException

    from server.api.errors import install_error_handlers

    async def mounted(scope, receive, send):
        raise HTTPException(405, headers={"Allow": "PUT"} if scope["path"].endswith("/put") else None)

    app = FastAPI()
    install_error_handlers(app)
    app.mount("/x", mounted)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
        r = await client.post("/x/put")
        assert r.status_code == 405 and r.headers["allow"] == "PUT"
        r = await client.post("/x/other")
        assert r.status_code == 405 and "allow" not in r.headers  # never an empty Allow


async def test_token_lists_may_be_written_as_integral_numbers():
    """Review R12: one JSONInt on every integer request field; DetokenizeRequest.tokens and
    ScoreRequest.tokens refused `3.0`, contrary to "the server accepts integral JSON numbers"."""
    import pydantic

    from server.api.routes.tokens import DetokenizeRequest, ScoreRequest
    from server.api.schemas import SamplerSpec

    assert DetokenizeRequest.model_validate_json('{"tokens": [3.0, 4]}', strict=True).tokens == [3, 4]
    assert ScoreRequest.model_validate_json('{"tokens": [0.0]}', strict=True).tokens == [0]
    assert SamplerSpec.model_validate_json('{"steps": 8.0, "top_k": 2.0}', strict=True).steps == 8
    for bad in ('[3.5]', '["3"]'):
        with pytest.raises(pydantic.ValidationError):
            DetokenizeRequest.model_validate_json(f'{{"tokens": {bad}}}', strict=True)
    with pytest.raises(pydantic.ValidationError):
        SamplerSpec.model_validate_json('{"steps": 0.0}', strict=True)  # the bound still holds
