"""Bad requests get the right status and one error shape, never reach a worker, and never disturb
other jobs; plus auth, request ids and the errors FastAPI/Starlette raise themselves."""
from __future__ import annotations

import base64
import io
import json

import pytest
from PIL import Image

B64 = lambda data: base64.b64encode(data).decode()  # noqa: E731


def assert_error(r, status: int, code: str | None = None, param: str | None = None, type: str | None = None):
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert set(error) == {"type", "code", "message", "param"} and error["message"]
    if code is not None:
        assert error["code"] == code, error
    if param is not None:
        assert error["param"] == param, error
    if type is not None:
        assert error["type"] == type, error
    return error


def gif_bytes(frames: int = 3) -> bytes:
    images = [Image.new("RGB", (32, 32), (40 * i, 0, 0)) for i in range(frames)]
    buf = io.BytesIO()
    images[0].save(buf, format="GIF", save_all=True, append_images=images[1:], duration=100)
    return buf.getvalue()


BAD_BODIES = [
    # (body, status, code, param)
    ({"task": "teleport"}, 422, "invalid_value", "task"),
    ({}, 422, "missing_field", "task"),
    ({"task": "class_conditional"}, 422, "missing_field", "class_label"),
    ({"task": "class_conditional_frame_prediction", "input_video": "AAAA"}, 422, "missing_field", "class_label"),
    ({"task": "class_conditional", "class_label": 10}, 422, "invalid_value", "class_label"),
    ({"task": "class_conditional", "class_label": -1}, 422, "invalid_value", "class_label"),
    ({"task": "class_conditional", "class_label": "3"}, 422, "invalid_value", "class_label"),
    ({"task": "class_conditional", "class_label": 1, "num_frames": 129}, 422, "invalid_value", "num_frames"),
    ({"task": "class_conditional", "class_label": 1, "num_frames": 0}, 422, "invalid_value", "num_frames"),
    ({"task": "class_conditional", "class_label": 1, "num_frames": "16"}, 422, "invalid_value", "num_frames"),
    ({"task": "class_conditional", "class_label": 1, "num_frames": 2.5}, 422, "invalid_value", "num_frames"),
    ({"task": "class_conditional", "class_label": 1, "size": "48x48"}, 422, "invalid_value", "size"),
    ({"task": "class_conditional", "class_label": 1, "size": "big"}, 422, "invalid_value", "size"),
    ({"task": "class_conditional", "class_label": 1, "fps": 0}, 422, "invalid_value", "fps"),
    ({"task": "class_conditional", "class_label": 1, "fps": 121}, 422, "invalid_value", "fps"),
    ({"task": "class_conditional", "class_label": 1, "seed": -1}, 422, "invalid_value", "seed"),
    ({"task": "class_conditional", "class_label": 1, "priority": "urgent"}, 422, "invalid_value", "priority"),
    ({"task": "class_conditional", "class_label": 1, "sampler": {"method": "diffusion"}}, 422, "invalid_value", "sampler.method"),
    ({"task": "class_conditional", "class_label": 1, "sampler": {"steps": 65}}, 422, "invalid_value", "sampler.steps"),
    ({"task": "class_conditional", "class_label": 1, "sampler": {"steps": 0}}, 422, "invalid_value", "sampler.steps"),
    ({"task": "class_conditional", "class_label": 1, "sampler": {"temperature": 0}}, 422, "invalid_value", "sampler.temperature"),
    ({"task": "class_conditional", "class_label": 1, "sampler": {"choice_temperature": -1}}, 422, "invalid_value", "sampler.choice_temperature"),
    ({"task": "class_conditional", "class_label": 1, "sampler": {"guidance_scale": -0.5}}, 422, "invalid_value", "sampler.guidance_scale"),
    ({"task": "class_conditional", "class_label": 1, "sampler": {"top_k": 0}}, 422, "invalid_value", "sampler.top_k"),
    ({"task": "class_conditional", "class_label": 1, "num_frame": 16}, 422, "unknown_field", "num_frame"),
    ({"task": "frame_prediction"}, 422, "missing_field", "input_video"),
    ({"task": "frame_prediction", "input_video": "AAAA", "input_video_id": "video_x"}, 422, "invalid_value", "input_video_id"),
    ({"task": "frame_prediction", "input_video": "AAAA", "condition_frames": 16}, 422, "invalid_value", "condition_frames"),
    ({"task": "frame_prediction", "input_video": "AAAA", "condition_frames": 0}, 422, "invalid_value", "condition_frames"),
    ({"task": "frame_prediction", "input_video": "AAAA", "condition_frames": 8, "num_frames": 8}, 422, "invalid_value", "condition_frames"),
    ({"task": "inpainting", "input_video": "AAAA"}, 422, "missing_field", "mask"),
    ({"task": "inpainting", "input_video": "AAAA", "mask": {}}, 422, "invalid_value", "mask"),
    ({"task": "inpainting", "input_video": "AAAA", "mask": {"preset": "center", "box": [0, 0, 1, 1]}}, 422, "invalid_value", "mask"),
    ({"task": "inpainting", "input_video": "AAAA", "mask": {"preset": "diagonal"}}, 422, "invalid_value", "mask.preset"),
    ({"task": "outpainting", "input_video": "AAAA", "mask": {"box": [0.1, 0.1, 1.5, 0.9]}}, 422, "invalid_value", "mask.box"),
    ({"task": "outpainting", "input_video": "AAAA", "mask": {"box": [0.6, 0.1, 0.4, 0.9]}}, 422, "invalid_value", "mask.box"),
    ({"task": "outpainting", "input_video": "AAAA", "mask": {"box": [0.1, 0.1, 0.9]}}, 422, "invalid_value", "mask.box"),
    ({"task": "outpainting", "input_video": "AAAA", "num_frames": 2,
      "mask": {"box": [[0, 0, 0.5, 0.5]] * 3}}, 422, "invalid_value", "mask.box"),
    ({"task": "class_conditional", "class_label": 1, "model": "nope"}, 404, "model_not_found", "model"),
]


@pytest.mark.parametrize("body,status,code,param", BAD_BODIES, ids=[f"{b}"[:60] for b, *_ in BAD_BODIES])
async def test_invalid_fields(make_api, body, status, code, param):
    async with make_api() as api:
        assert_error(await api.client.post("/v1/videos", json=body), status, code, param)
        assert (await api.queue.depth()) == {"high": 0, "normal": 0, "low": 0}  # nothing was queued


async def test_bad_inputs_are_refused_and_other_jobs_keep_running(make_api, api_sample):
    mp4, png = api_sample
    async with make_api(worker=True, max_upload_bytes=20_000) as api:
        client = api.client
        spatial = {"task": "inpainting", "mask": {"preset": "center"}}
        # malformed JSON, non-object JSON, empty body
        assert_error(await client.post("/v1/videos", content=b'{"task": ', headers={"content-type": "application/json"}),
                     400, "invalid_json")
        assert_error(await client.post("/v1/videos", content=b"[1, 2]", headers={"content-type": "application/json"}),
                     400, "invalid_json")
        assert_error(await client.post("/v1/videos", content=b"", headers={"content-type": "application/json"}),
                     400, "invalid_json")
        assert_error(await client.post("/v1/videos", content=b"task=x", headers={"content-type": "text/plain"}),
                     415, "unsupported_media_type")
        # bad base64, empty, corrupt, unsupported, oversized
        assert_error(await client.post("/v1/videos", json={**spatial, "input_video": "not base64!!"}),
                     400, "invalid_base64", "input_video")
        assert_error(await client.post("/v1/videos", json={**spatial, "input_video": ""}), 400, "invalid_video", "input_video")
        corrupt = mp4[:40] + b"\x00" * 400
        assert_error(await client.post("/v1/videos", json={**spatial, "input_video": B64(corrupt)}),
                     400, "invalid_video", "input_video")
        assert_error(await client.post("/v1/videos", json={**spatial, "input_video": B64(b"%PDF-1.4 not a video")}),
                     415, "unsupported_media_type", "input_video")
        assert_error(await client.post("/v1/videos", json={**spatial, "input_video": B64(b"\x89PNG" + bytes(30_000))}),
                     413, "upload_too_large", "input_video")
        assert_error(await client.post("/v1/videos", files={"input_video": ("big.mp4", bytes(30_000), "video/mp4")},
                                       data={"task": "inpainting", "mask": '{"preset": "center"}'}),
                     413, "upload_too_large", "input_video")
        assert_error(await client.post("/v1/videos", files={"input_video": ("x.png", png, "image/png")},
                                       data={"task": "inpainting", "mask": "{center"}), 422, "invalid_value", "mask")
        assert_error(await client.post("/v1/videos", files={"input_video": ("x.png", png, "image/png")},
                                       data={"task": "inpainting", "mask": "nowhere"}), 422, "invalid_value", "mask.preset")
        # too few frames for the task
        assert_error(await client.post("/v1/videos", json={"task": "frame_interpolation", "input_video": B64(png)}),
                     422, "invalid_value", "input_video")
        assert_error(await client.post("/v1/videos", json={"task": "frame_prediction", "input_video": B64(mp4),
                                                           "condition_frames": 6}), 422, "invalid_value", "input_video")
        # chaining from an unknown or unfinished job
        assert_error(await client.post("/v1/videos", json={"task": "frame_prediction", "input_video_id": "video_nope"}),
                     404, "video_not_found", "input_video_id")
        api.runtime.hold.clear()
        pending = (await client.post("/v1/videos", json={"task": "class_conditional", "class_label": 0})).json()
        assert_error(await client.post("/v1/videos", json={"task": "frame_prediction", "input_video_id": pending["id"]}),
                     409, "video_not_ready", "input_video_id")
        api.runtime.hold.set()
        # good inputs of every accepted kind still run to completion, and only they reached the worker
        for body in ({**spatial, "input_video": B64(mp4)}, {**spatial, "input_video": "data:image/gif;base64," + B64(gif_bytes())},
                     {"task": "frame_interpolation", "input_video": B64(mp4).rstrip("=")}):
            r = await client.post("/v1/videos", json=body, headers={"Prefer": "wait=10"})
            assert r.status_code == 200 and r.json()["status"] == "completed", r.text
        assert (await client.get(f"/v1/videos/{pending['id']}", headers={"Prefer": "wait=10"})).json()["status"] == "completed"
        assert len(api.runtime.calls) == 4


async def test_unknown_ids_routes_and_methods(make_api):
    async with make_api() as api:
        assert_error(await api.client.get("/v1/videos/video_missing"), 404, "video_not_found", "video_id", "not_found_error")
        assert_error(await api.client.get("/v1/models/nope"), 404, "model_not_found")
        assert_error(await api.client.get("/v2/anything"), 404, "not_found")
        r = assert_error(await api.client.put("/v1/videos"), 405, "method_not_allowed")
        assert r["type"] == "invalid_request_error"
        assert_error(await api.client.get("/v1/videos", params={"limit": 0}), 422, "invalid_value", "limit")
        assert_error(await api.client.get("/v1/videos", params={"limit": "many"}), 422, "invalid_value", "limit")


async def test_body_limit(make_api):
    async with make_api(max_body_bytes=1000) as api:
        big = json.dumps({"task": "inpainting", "input_video": "A" * 2000}).encode()
        assert_error(await api.client.post("/v1/videos", content=big, headers={"content-type": "application/json"}),
                     413, "request_too_large")

        async def chunks():  # no Content-Length: the limit must hold while streaming
            for _ in range(4):
                yield b" " * 400

        assert_error(await api.client.post("/v1/videos", content=chunks(), headers={"content-type": "application/json"}),
                     413, "request_too_large")
        big_form = await api.client.post("/v1/videos", files={"input_video": ("a.mp4", bytes(5000), "video/mp4")},
                                         data={"task": "frame_prediction"})
        assert_error(big_form, 413)


async def test_api_keys(make_api):
    async with make_api(api_keys=["s3cret", "other"]) as api:
        c = api.client
        for method, path in [("GET", "/v1/models"), ("GET", "/v1/videos"), ("POST", "/v1/videos"),
                             ("GET", "/v1/videos/video_x"), ("GET", "/metrics"), ("DELETE", "/v1/videos/video_x")]:
            e = assert_error(await c.request(method, path), 401, "missing_api_key", type="authentication_error")
            assert "Bearer" in (await c.request(method, path)).headers["www-authenticate"]
            assert_error(await c.request(method, path, headers={"Authorization": "Bearer wrong"}), 401, "invalid_api_key")
            assert_error(await c.request(method, path, headers={"Authorization": "Basic czNjcmV0"}), 401, "missing_api_key")
            assert e["param"] is None
        assert (await c.get("/healthz")).status_code == 200
        assert (await c.get("/readyz")).status_code == 200
        assert (await c.get("/openapi.json")).status_code == 200
        ok = await c.get("/v1/models", headers={"Authorization": "Bearer other"})
        assert ok.status_code == 200
        body = {"task": "class_conditional", "class_label": 0}
        r = await c.post("/v1/videos", json=body, headers={"Authorization": "Bearer s3cret", "Idempotency-Key": "same"})
        assert r.status_code == 202
        again = await c.post("/v1/videos", json=body, headers={"Authorization": "Bearer s3cret", "Idempotency-Key": "same"})
        assert again.json()["id"] == r.json()["id"]
        # another key's caller using the same idempotency key gets a job of its own
        other = await c.post("/v1/videos", json=body, headers={"Authorization": "Bearer other", "Idempotency-Key": "same"})
        assert other.status_code == 202 and other.json()["id"] != r.json()["id"]


async def test_request_id_is_echoed_or_made_on_every_response(make_api):
    async with make_api() as api:
        r = await api.client.get("/v1/videos/nope", headers={"X-Request-ID": "client-123"})
        assert r.headers["x-request-id"] == "client-123"
        made = await api.client.get("/healthz")
        assert made.headers["x-request-id"].startswith("req_")
        hostile = await api.client.get("/healthz", headers={"X-Request-ID": "a b\tc" + "x" * 200})
        assert hostile.headers["x-request-id"].startswith("req_")
        assert (await api.client.get("/nowhere")).headers["x-request-id"].startswith("req_")


async def test_unhandled_exception_is_a_json_500(make_api):
    async with make_api() as api:
        async def broken(*args, **kwargs):
            raise RuntimeError("boom")

        api.queue.list = broken
        r = await api.client.get("/v1/videos", headers={"X-Request-ID": "trace-me"})
        error = assert_error(r, 500, "internal_error", type="server_error")
        assert "trace-me" in error["message"] and "boom" not in error["message"]
        assert r.headers["x-request-id"] == "trace-me"
        assert (await api.client.get("/healthz")).status_code == 200  # still serving
