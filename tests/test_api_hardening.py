"""Defects an outside test campaign found in request intake (issue: jobs that never lose work,
D1-D3, D8, D9) and the short forms a newcomer types; each answered 500 or a misleading error
before its fix."""
from __future__ import annotations

import pytest

from server.api.ranges import RangeNotSatisfiable, parse_range
from test_api_errors import assert_error

CG = {"task": "class_conditional", "class_label": 1}


@pytest.mark.parametrize("raw,param", [
    (b'{"task": "class_conditional", "class_label": 1, "sampler": {"temperature": Infinity}}', "sampler.temperature"),
    (b'{"task": "class_conditional", "class_label": 1, "sampler": {"guidance_scale": NaN}}', "sampler.guidance_scale"),
    (b'{"task": "inpainting", "input_video": "AAAA", "mask": {"box": [0, 0, Infinity, 1]}}', "mask.box"),
])
async def test_non_finite_numbers_are_refused_before_a_job_exists(make_api, raw, param):
    async with make_api() as api:
        r = await api.client.post("/v1/videos", content=raw, headers={"content-type": "application/json"})
        err = assert_error(r, 422, "invalid_value")
        assert err["param"].startswith(param)
        assert (await api.client.get("/v1/videos")).json()["data"] == []  # nothing was queued


async def test_non_finite_numbers_in_a_form_are_refused(make_api):
    async with make_api() as api:
        r = await api.client.post("/v1/videos", files={"task": (None, "class_conditional"), "class_label": (None, "1"),
                                                       "sampler": (None, '{"guidance_scale": "inf"}')})
        assert_error(r, 422, "invalid_value", "sampler.guidance_scale")


@pytest.mark.parametrize("sampler,param", [
    ({"guidance_scale": 1e308}, "sampler.guidance_scale"),
    ({"temperature": 1e6}, "sampler.temperature"),
    ({"top_k": 2**70}, "sampler.top_k"),
])
async def test_sampler_numbers_have_upper_bounds(make_api, sampler, param):
    async with make_api() as api:
        assert_error(await api.client.post("/v1/videos", json={**CG, "sampler": sampler}), 422, "invalid_value", param)


async def test_deeply_nested_form_json_is_a_clear_422(make_api):
    deep = "[" * 1000 + "]" * 1000
    async with make_api() as api:
        for field in ("sampler", "mask"):
            r = await api.client.post("/v1/videos", files={"task": (None, "class_conditional"), "class_label": (None, "1"),
                                                           field: (None, deep)})
            assert_error(r, 422, "invalid_value", field)
        # the same in a JSON body
        r = await api.client.post("/v1/videos", content=b'{"task": "class_conditional", "class_label": 1, "sampler": '
                                  + deep.encode() + b"}", headers={"content-type": "application/json"})
        assert r.status_code in (400, 422) and r.json()["error"]["code"] != "internal_error"


async def test_a_wrongly_typed_nested_field_is_named(make_api):
    async with make_api() as api:
        assert_error(await api.client.post("/v1/videos", json={**CG, "sampler": 5}), 422, "invalid_value", "sampler")
        assert_error(await api.client.post("/v1/videos", json={**CG, "sampler": "x"}), 422, "invalid_value",
                     "sampler.method")
        assert_error(await api.client.post("/v1/videos", json={"task": "inpainting", "input_video": "AAAA", "mask": 3}),
                     422, "invalid_value", "mask")
        # the body itself not being an object keeps its own message
        assert_error(await api.client.post("/v1/videos", json=[1, 2]), 400, "invalid_json")


async def test_short_forms_of_mask_and_sampler(make_api):
    async with make_api() as api:
        r = await api.client.post("/v1/videos", json={**CG, "sampler": "autoregressive"})
        assert r.status_code == 202, r.text
        assert r.json()["request"]["sampler"]["method"] == "autoregressive"
        r = await api.client.post("/v1/videos", files={"task": (None, "class_conditional"), "class_label": (None, "1"),
                                                       "sampler": (None, "autoregressive")})
        assert r.status_code == 202 and r.json()["request"]["sampler"]["method"] == "autoregressive", r.text
        assert_error(await api.client.post("/v1/videos", json={"task": "inpainting", "input_video": "AAAA",
                                                               "mask": "nowhere"}), 422, "invalid_value", "mask.preset")


def test_mask_short_form_is_a_preset():
    from server.api.schemas import VideoCreateRequest

    req = VideoCreateRequest.model_validate_json(b'{"task": "inpainting", "input_video": "AAAA", "mask": "center"}',
                                                 strict=True)
    assert req.mask.preset == "center" and req.mask.box is None


@pytest.mark.parametrize("header", ["bytes=\u00b9-", "bytes=-\u00b2", "bytes=0-\u00b3"])
def test_range_with_non_ascii_digits_is_ignored(header):
    assert parse_range(header, 100) is None


def test_range_with_thousands_of_digits_is_beyond_any_file():
    huge = "9" * 5000
    with pytest.raises(RangeNotSatisfiable):
        parse_range(f"bytes={huge}-", 100)
    assert parse_range(f"bytes=10-{huge}", 100) == (10, 99)
    assert parse_range(f"bytes=-{huge}", 100) == (0, 99)


async def test_a_reused_idempotency_key_with_another_body_is_refused(make_api, api_sample):
    mp4, _ = api_sample
    async with make_api() as api:
        c = api.client
        first = await c.post("/v1/videos", json=CG, headers={"Idempotency-Key": "k"})
        again = await c.post("/v1/videos", json=CG, headers={"Idempotency-Key": "k"})
        assert again.json()["id"] == first.json()["id"]  # the same request: the same job
        other = await c.post("/v1/videos", json={**CG, "class_label": 2}, headers={"Idempotency-Key": "k"})
        assert_error(other, 422, "idempotency_key_reused", "Idempotency-Key")
        assert len((await c.get("/v1/videos")).json()["data"]) == 1
        # multipart retries match whatever their boundary; another upload does not
        files = {"input_video": ("a.mp4", mp4, "video/mp4")}
        form = {"task": "frame_prediction", "condition_frames": "2"}
        one = await c.post("/v1/videos", files=files, data=form, headers={"Idempotency-Key": "m"})
        two = await c.post("/v1/videos", files=files, data=form, headers={"Idempotency-Key": "m"})
        assert one.status_code == 202 and two.json()["id"] == one.json()["id"], two.text
        changed = await c.post("/v1/videos", files={"input_video": ("a.mp4", mp4 + b"\0", "video/mp4")}, data=form,
                               headers={"Idempotency-Key": "m"})
        assert_error(changed, 422, "idempotency_key_reused")


async def test_frame_interpolation_refuses_an_input_longer_than_the_limit(make_api):
    import numpy as np

    from server.video import encode_mp4

    long_clip = encode_mp4(np.zeros((12, 32, 32, 3), np.uint8), 8)
    body = {"task": "frame_interpolation", "input_video": __import__("base64").b64encode(long_clip).decode()}
    async with make_api(max_input_frames=10) as api:
        assert_error(await api.client.post("/v1/videos", json=body), 413, "video_too_long", "input_video")
        # the leading-frame tasks take its first frames, as before
        r = await api.client.post("/v1/videos", json={**body, "task": "frame_prediction"})
        assert r.status_code == 202, r.text
    async with make_api(max_input_frames=12) as api:
        assert (await api.client.post("/v1/videos", json=body)).status_code == 202


async def test_jobs_belong_to_the_key_that_made_them(make_api, api_sample):
    """D7: key B cannot list, read, download, chain, cancel or delete key A's jobs (404, as for
    an unknown id); share_jobs=true shares them."""
    a, b = {"Authorization": "Bearer key-a"}, {"Authorization": "Bearer key-b"}
    async with make_api(worker=True, api_keys=["key-a", "key-b"]) as api:
        c = api.client
        job = (await c.post("/v1/videos", json={**CG, "seed": 3}, headers={**a, "Prefer": "wait=10"})).json()
        assert job["status"] == "completed", job
        jid = job["id"]
        assert [j["id"] for j in (await c.get("/v1/videos", headers=a)).json()["data"]] == [jid]
        assert (await c.get("/v1/videos", headers=b)).json()["data"] == []
        for method, path in (("GET", f"/v1/videos/{jid}"), ("GET", f"/v1/videos/{jid}/content"),
                             ("GET", f"/v1/videos/{jid}/events"), ("POST", f"/v1/videos/{jid}/cancel"),
                             ("DELETE", f"/v1/videos/{jid}")):
            assert_error(await c.request(method, path, headers=b), 404, "video_not_found")
        chained = await c.post("/v1/videos", json={"task": "frame_prediction", "input_video_id": jid}, headers=b)
        assert_error(chained, 404, "video_not_found", "input_video_id")
        assert (await c.get(f"/v1/videos/{jid}", headers=a)).status_code == 200  # still there for its owner
    async with make_api(api_keys=["key-a", "key-b"], share_jobs=True) as api:
        job = (await api.client.post("/v1/videos", json=CG, headers=a)).json()
        assert (await api.client.get(f"/v1/videos/{job['id']}", headers=b)).status_code == 200


async def test_cross_site_posts_and_foreign_hosts_are_refused(make_api):
    """D13: with no API keys, a web page elsewhere cannot make the visitor's browser create jobs,
    and a rebound DNS name does not reach a loopback server."""
    async with make_api() as api:
        c = api.client
        form = {"task": (None, "class_conditional"), "class_label": (None, "1")}
        assert_error(await c.post("/v1/videos", files=form, headers={"Origin": "https://evil.example"}), 403,
                     "cross_site_request")
        assert_error(await c.post("/v1/videos", files=form, headers={"Sec-Fetch-Site": "cross-site"}), 403,
                     "cross_site_request")
        # the playground (same origin) and non-browser clients (no Origin) are fine
        assert (await c.post("/v1/videos", files=form, headers={"Origin": "http://test"})).status_code == 202
        behind_proxy = {"Origin": "https://videos.example.com", "X-Forwarded-Host": "videos.example.com"}
        assert (await c.post("/v1/videos", files=form, headers=behind_proxy)).status_code == 202
        assert (await c.post("/v1/videos", json=CG)).status_code == 202
        assert (await c.get("/v1/videos", headers={"Origin": "https://evil.example"})).status_code == 200  # reads: CORS
    async with make_api(allowed_hosts=[]) as api:  # bound to 127.0.0.1: loopback names only
        assert_error(await api.client.get("/v1/models", headers={"Host": "rebound.example"}), 403, "host_not_allowed")
        assert (await api.client.get("/v1/models", headers={"Host": "127.0.0.1:8000"})).status_code == 200
        assert (await api.client.get("/v1/models", headers={"Host": "localhost"})).status_code == 200
    async with make_api(allowed_hosts=[], host="0.0.0.0") as api:  # bound to every address: any host
        assert (await api.client.get("/v1/models", headers={"Host": "videos.example"})).status_code == 200
    async with make_api(api_keys=["k"]) as api:  # with keys, the key is the guard
        r = await api.client.post("/v1/videos", json=CG, headers={"Authorization": "Bearer k", "Origin": "https://app.example"})
        assert r.status_code == 202
