"""The job object's `urls` and `metadata`, and GET /v1/videos filters (the newcomer's quick start:
a create answer whose URLs can be pasted, and a list that finds one's own jobs)."""
from __future__ import annotations

import json

import pytest

from test_api_errors import assert_error

CG = {"task": "class_conditional", "class_label": 1}


async def test_urls_follow_a_proxys_forwarded_headers(make_api):
    async with make_api() as api:
        r = await api.client.post("/v1/videos", json=CG,
                                  headers={"X-Forwarded-Proto": "https", "X-Forwarded-Host": "videos.example.com"})
        job = r.json()
        assert job["urls"]["content"] == f"https://videos.example.com/v1/videos/{job['id']}/content"
        # and every URL answers on this server
        for name in ("self", "events", "cancel"):
            assert job["urls"][name].startswith("https://videos.example.com/v1/videos/")
        got = await api.client.get(job["urls"]["self"].replace("https://videos.example.com", ""))
        assert got.status_code == 200 and got.json()["urls"]["self"] == f"http://test/v1/videos/{job['id']}"


async def test_metadata_is_kept_and_echoed_json_and_multipart(make_api):
    async with make_api() as api:
        job = (await api.client.post("/v1/videos", json={**CG, "metadata": {"user": "u_1", "run": "a"}})).json()
        assert job["metadata"] == {"user": "u_1", "run": "a"}
        assert (await api.client.get(f"/v1/videos/{job['id']}")).json()["metadata"] == {"user": "u_1", "run": "a"}
        r = await api.client.post("/v1/videos", files={"task": (None, "class_conditional"), "class_label": (None, "2"),
                                                       "metadata": (None, json.dumps({"k": "v"}))})
        assert r.status_code == 202 and r.json()["metadata"] == {"k": "v"}


@pytest.mark.parametrize("metadata", [
    {f"k{i}": "v" for i in range(17)},  # too many pairs
    {"k" * 65: "v"},  # key too long
    {"": "v"},  # empty key
    {"k": "v" * 513},  # value too long
])
async def test_metadata_limits(make_api, metadata):
    async with make_api() as api:
        assert_error(await api.client.post("/v1/videos", json={**CG, "metadata": metadata}), 422, "invalid_value", "metadata")


async def test_metadata_values_are_strings(make_api):
    async with make_api() as api:
        assert_error(await api.client.post("/v1/videos", json={**CG, "metadata": {"n": 1}}), 422, "invalid_value")


async def test_list_filters_by_status_task_and_model(make_api):
    from conftest import FakeRuntime, make_api_manifest

    runtime = FakeRuntime([make_api_manifest("demo"), make_api_manifest("alpha")])
    async with make_api(runtime=runtime) as api:
        c = api.client
        a = (await c.post("/v1/videos", json=CG)).json()
        b = (await c.post("/v1/videos", json={**CG, "model": "alpha"})).json()
        await c.post(f"/v1/videos/{b['id']}/cancel")

        async def ids(**query):
            r = await c.get("/v1/videos", params=query)
            assert r.status_code == 200, r.text
            return [j["id"] for j in r.json()["data"]]

        assert await ids(model="alpha") == [b["id"]]
        assert await ids(status="canceled") == [b["id"]]
        assert await ids(status="queued", task="class_conditional") == [a["id"]]
        assert await ids(task="frame_prediction") == []
        # pagination still works under a filter
        page = (await c.get("/v1/videos", params={"task": "class_conditional", "limit": 1})).json()
        assert page["has_more"] is True and page["data"][0]["id"] == b["id"]
        assert await ids(task="class_conditional", after=b["id"]) == [a["id"]]
        # a filter value that does not exist
        assert_error(await c.get("/v1/videos", params={"status": "sleeping"}), 422, param="status")
        assert_error(await c.get("/v1/videos", params={"task": "teleport"}), 422, param="task")
        assert_error(await c.get("/v1/videos", params={"model": "nope"}), 422, "invalid_value", "model")
