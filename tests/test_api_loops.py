"""Review A14: the app's per-loop state is made in its lifespan. `decode_slots` was an
asyncio.Semaphore made in create_app: it bound to the first loop that waited on it, and an app
served from a second loop (a test reusing an app, a TestClient per loop) failed under contention
with "bound to a different event loop"."""
from __future__ import annotations

import asyncio
import base64
import time

import httpx


def test_an_app_serves_contended_inputs_from_one_loop_then_another(monkeypatch, api_sample):
    import server.api.intake as intake
    from conftest import FakeRuntime
    from server.api.app import create_app
    from server.settings import Settings

    real = intake.check_input

    def slow_check(data, settings):
        time.sleep(0.05)  # the requests overlap: they wait for the one slot
        return real(data, settings)

    monkeypatch.setattr(intake, "check_input", slow_check)
    mp4, _ = api_sample
    settings = Settings(embedded_workers=False, redis_url=None, allowed_hosts=["test"], job_store_dir="",
                        max_concurrent_decodes=1)
    app = create_app(settings, runtime=FakeRuntime())
    body = {"task": "frame_prediction", "condition_frames": 3, "input_video": base64.b64encode(mp4).decode()}

    async def serve() -> list[int]:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
                answers = await asyncio.gather(*(client.post("/v1/videos", json=body) for _ in range(3)))
        app.state.queue = None  # the lifespan made it on this loop; the next one makes its own
        return [r.status_code for r in answers]

    assert asyncio.run(serve()) == [202] * 3
    assert asyncio.run(serve()) == [202] * 3
