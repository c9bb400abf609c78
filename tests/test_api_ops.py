"""Models, health, readiness, metrics, the OpenAPI document, the playground page, and the app's
start-up and shutdown (queue, runtime and embedded worker)."""
from __future__ import annotations

import sys
import types

import httpx

from server.api import app as app_module
from server.api.app import create_app
from server.settings import Settings


async def test_models_list_describes_each_model(make_api):
    from conftest import FakeRuntime, make_api_manifest

    runtime = FakeRuntime([make_api_manifest("demo"), make_api_manifest("alpha", tasks=["class_conditional"])])
    async with make_api(runtime=runtime, max_num_frames=64) as api:
        r = await api.client.get("/v1/models")
        assert r.status_code == 200
        body = r.json()
        assert body["object"] == "list" and [m["id"] for m in body["data"]] == ["demo", "alpha"]
        demo = body["data"][0]
        builtin = {"steps": 12, "temperature": 1.0, "choice_temperature": 4.5, "guidance_scale": 0.0, "top_k": None}
        assert demo.pop("sampler_defaults") == {  # no defaults in the manifest: the built-in ones, for every task
            task: {"method": "maskgit", "methods": {m: {"method": m, **builtin} for m in ("maskgit", "autoregressive")}}
            for task in demo["tasks"]}
        assert demo == {"id": "demo", "object": "model", "description": "test model",
                        "tasks": ["class_conditional", "class_conditional_frame_prediction", "frame_prediction",
                                  "frame_interpolation", "inpainting", "outpainting"],
                        "sizes": ["32x32", "64x64", "128x128"], "window_frames": 16, "default_condition_frames": 5,
                        "fps": 8, "classes": [f"digit_{i}" for i in range(10)], "samplers": ["maskgit", "autoregressive"],
                        "backend": "onnxruntime", "max_num_frames": 64}
        assert (await api.client.get("/v1/models/alpha")).json()["tasks"] == ["class_conditional"]
        # a task the chosen model does not serve
        r = await api.client.post("/v1/videos", json={"model": "alpha", "task": "frame_prediction", "input_video": "AAAA"})
        assert r.status_code == 422 and r.json()["error"]["param"] == "task"
        r = await api.client.post("/v1/videos", json={"model": "alpha", "task": "class_conditional", "class_label": 0})
        assert r.status_code == 202 and r.json()["model"] == "alpha"


async def test_health_and_readiness(make_api):
    async with make_api() as api:
        assert (await api.client.get("/healthz")).json() == {"status": "ok"}
        ready = await api.client.get("/readyz")
        assert ready.status_code == 200 and ready.json() == {"status": "ready", "models": ["demo"], "queue": "ok"}

        async def down():
            raise ConnectionError("redis is gone")

        api.queue.ping = down
        r = await api.client.get("/readyz")
        assert r.status_code == 503 and r.json()["error"]["code"] == "not_ready"
        assert "unreachable" in r.json()["error"]["message"]
        assert (await api.client.get("/healthz")).status_code == 200
        api.app.state.catalogue = None
        r = await api.client.get("/readyz")
        assert r.status_code == 503 and "models" in r.json()["error"]["message"]
        r = await api.client.get("/v1/models")
        assert r.status_code == 503 and r.json()["error"]["type"] == "unavailable_error"


async def test_metrics_are_prometheus_text(make_api):
    async with make_api(worker=True) as api:
        await api.client.post("/v1/videos", json={"task": "class_conditional", "class_label": 1}, headers={"Prefer": "wait=10"})
        await api.client.post("/v1/videos", json={"task": "class_conditional"})
        r = await api.client.get("/metrics")
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
        text = r.text
        assert 'kinetoscope_requests_total{status="200",task="class_conditional"}' in text
        assert 'kinetoscope_requests_total{status="422",task="class_conditional"}' in text
        assert 'kinetoscope_worker_events_total{event="job_completed"}' in text
        assert 'kinetoscope_compute_seconds_count{task="class_conditional"}' in text
        assert 'kinetoscope_http_requests_total{method="POST",route="/v1/videos",status="200"}' in text
        for name in ("kinetoscope_jobs_reclaimed_total", "kinetoscope_jobs_retried_total", "kinetoscope_jobs_dead_total",
                     "kinetoscope_batch_size", "kinetoscope_queue_seconds_count", "kinetoscope_encode_seconds"):
            assert name in text, name


async def test_metrics_read_queue_depth_and_store_totals_at_scrape(make_api):
    async with make_api() as api:
        for priority in ("low", "low", "high"):
            await api.client.post("/v1/videos", json={"task": "class_conditional", "class_label": 1, "priority": priority})

        async def counters():
            return {"reclaimed": 3, "retried": 5, "dead": 1}

        api.queue.counters = counters
        text = (await api.client.get("/metrics")).text
        assert 'kinetoscope_queue_depth{priority="low"} 2.0' in text
        assert 'kinetoscope_queue_depth{priority="high"} 1.0' in text
        assert 'kinetoscope_queue_depth{priority="normal"} 0.0' in text
        assert "kinetoscope_jobs_reclaimed_total 3.0" in text and "kinetoscope_jobs_retried_total 5.0" in text
        assert "kinetoscope_jobs_dead_total 1.0" in text


async def test_metrics_count_jobs_that_expired_in_the_queue(make_api):
    """A job whose deadline passes while it waits ends `expired` when a worker reaches it, and
    /metrics counts it (kinetoscope_jobs_expired_total), as it counts truncated ones."""
    import asyncio

    async with make_api() as api:  # no worker: the job waits
        r = await api.client.post("/v1/videos", json={"task": "class_conditional", "class_label": 1,
                                                      "deadline_seconds": 0.05})
        assert r.status_code == 202
        before = (await api.client.get("/metrics")).text
        assert "kinetoscope_jobs_expired_total 0.0" in before
        await asyncio.sleep(0.1)  # not time.sleep: the event loop keeps running (Review A11)
        assert await api.queue.claim("w1", timeout=0.2) is None  # the worker skips it: expired
        assert (await api.client.get(f"/v1/videos/{r.json()['id']}")).json()["status"] == "expired"
        assert "kinetoscope_jobs_expired_total 1.0" in (await api.client.get("/metrics")).text


async def test_openapi_documents_every_endpoint_and_both_bodies(make_api):
    async with make_api() as api:
        doc = (await api.client.get("/openapi.json")).json()
        paths = doc["paths"]
        expected = {("/v1/videos", "post"), ("/v1/videos", "get"), ("/v1/videos/{video_id}", "get"),
                    ("/v1/videos/{video_id}", "delete"), ("/v1/videos/{video_id}/events", "get"),
                    ("/v1/videos/{video_id}/content", "get"), ("/v1/videos/{video_id}/cancel", "post"),
                    ("/v1/models", "get"), ("/healthz", "get"), ("/readyz", "get"), ("/metrics", "get")}
        assert expected <= {(p, m) for p, ops in paths.items() for m in ops}
        create = paths["/v1/videos"]["post"]
        assert set(create["requestBody"]["content"]) == {"application/json", "multipart/form-data"}
        assert {"200", "202", "400", "401", "404", "409", "413", "415", "422", "429"} <= set(create["responses"])
        assert "Retry-After" in create["responses"]["429"]["headers"]
        assert {p["name"] for p in create["parameters"]} == {"Idempotency-Key", "Prefer"}
        schemas = doc["components"]["schemas"]
        assert {"VideoCreateRequest", "VideoCreateMultipart", "VideoJob", "ErrorResponse", "MaskSpec"} <= set(schemas)
        assert "HTTPValidationError" not in schemas
        assert {ref.split("/")[-1] for ref in _refs(doc)} <= set(schemas)  # no dangling reference
        assert "206" in paths["/v1/videos/{video_id}/content"]["get"]["responses"]


async def test_playground_is_served_when_present(make_api, tmp_path, monkeypatch):
    (tmp_path / "index.html").write_text("<!doctype html><title>Kinetoscope</title>")
    (tmp_path / "app.js").write_text("console.log(1)")
    monkeypatch.setattr(app_module, "STATIC_DIR", tmp_path)
    async with make_api(api_keys=["k"]) as api:
        page = await api.client.get("/")
        assert page.status_code == 200 and "Kinetoscope" in page.text and page.headers["content-type"].startswith("text/html")
        js = await api.client.get("/static/app.js")
        assert js.status_code == 200 and "console" in js.text
    monkeypatch.setattr(app_module, "STATIC_DIR", tmp_path / "absent")
    async with make_api() as api:
        assert (await api.client.get("/")).status_code == 404


async def test_lifespan_opens_queue_loads_runtime_and_runs_the_worker(monkeypatch):
    from conftest import FakeRuntime

    loaded = {}
    fake = FakeRuntime()

    def load_runtime(settings):
        loaded["engines"] = True
        return fake

    def load_catalogue(settings):
        loaded["engines"] = False
        return fake.catalogue

    monkeypatch.setitem(sys.modules, "server.runtime", types.SimpleNamespace(load_runtime=load_runtime))
    monkeypatch.setitem(sys.modules, "server.catalogue", types.SimpleNamespace(load_catalogue=load_catalogue))
    app = create_app(Settings(embedded_workers=True))
    async with app.router.lifespan_context(app):
        assert loaded["engines"] is True
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1") as client:
            r = await client.post("/v1/videos", json={"task": "class_conditional", "class_label": 0},
                                  headers={"Prefer": "wait=10"})
            assert r.status_code == 200 and r.json()["status"] == "completed"
    # an API replica in front of Redis workers loads manifests only and runs no worker
    replica = create_app(Settings(embedded_workers=False))
    async with replica.router.lifespan_context(replica):
        assert loaded["engines"] is False
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=replica), base_url="http://127.0.0.1") as client:
            r = await client.post("/v1/videos", json={"task": "class_conditional", "class_label": 0},
                                  headers={"Prefer": "wait=0.3"})
            assert r.status_code == 202 and r.json()["status"] == "queued"


def test_serve_binds_before_the_app_starts(monkeypatch, tmp_path):
    """The flags themselves (`kinetoscope serve`): tests/test_cli_options.py."""
    args = {"port": 9000, "model_repository": tmp_path, "api_keys": ["a", "b"], "embedded_workers": False}
    assert Settings(**args).host == "127.0.0.1"
    ran = {}

    def run(server, sockets):
        ran.update(app=server.config.app, address=sockets[0].getsockname(), grace=server.config.timeout_graceful_shutdown)
        sockets[0].close()

    monkeypatch.setattr("uvicorn.Server.run", run)
    monkeypatch.setattr("server.api.logs.configure_logging", lambda level: None)
    import socket

    with socket.socket() as probe:  # a port that is free now
        probe.bind(("127.0.0.1", 0))
        free = probe.getsockname()[1]
    app_module.serve(Settings(**{**args, "port": free}))
    # the port is bound before the app (and its models) start
    assert ran["address"] == ("127.0.0.1", free) and ran["app"].title == "Kinetoscope"
    assert ran["grace"] == Settings().shutdown_seconds


def _refs(node):
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref":
                yield value
            else:
                yield from _refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from _refs(item)


async def test_docs_and_redoc_use_assets_the_server_serves(make_api):
    async with make_api() as api:
        for page, asset in (("/docs", "swagger-ui-bundle.js"), ("/redoc", "redoc.standalone.js")):
            html = (await api.client.get(page)).text
            assert f"/docs-static/{asset}" in html and "cdn.jsdelivr" not in html and "fonts.googleapis" not in html
            r = await api.client.get(f"/docs-static/{asset}")
            assert r.status_code == 200 and len(r.content) > 100_000
        assert (await api.client.get("/docs-static/swagger-ui.css")).status_code == 200


async def test_openapi_carries_the_servers_limits_and_auth_only_with_keys(make_api):
    async with make_api(max_num_frames=64, max_steps=20, max_job_seconds=600) as api:
        schema = (await api.client.get("/openapi.json")).json()
        props = schema["components"]["schemas"]["VideoCreateRequest"]["properties"]
        ints = lambda p: next(o for o in p.get("anyOf", [p]) if o.get("type") in ("integer", "number", "string"))  # noqa: E731
        assert ints(props["num_frames"])["maximum"] == 64 and ints(props["deadline_seconds"])["maximum"] == 600
        assert ints(props["class_label"])["maximum"] == 9
        assert ints(props["size"])["enum"] == ["32x32", "64x64", "128x128"]
        steps = schema["components"]["schemas"]["SamplerSpec"]["properties"]["steps"]
        assert ints(steps)["maximum"] == 20
        assert "securitySchemes" not in schema["components"]  # no keys: nothing to authorize
        assert all("security" not in op for path in schema["paths"].values() for op in path.values())
    async with make_api(api_keys=["k"]) as api:
        schema = (await api.client.get("/openapi.json")).json()
        assert "HTTPBearer" in schema["components"]["securitySchemes"]
