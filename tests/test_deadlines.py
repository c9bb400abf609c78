"""Deadlines (`deadline_seconds` or `Cancel-After`): a job still queued at its deadline ends
`expired` and never reaches a worker; a running MaskGIT job completes with its best video so far,
marked `truncated`; an autoregressive one fails with deadline_exceeded; bad values are 422."""
from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest

from server.api.intake import parse_duration
from server.api.errors import APIError
from test_api_errors import assert_error

CG = {"task": "class_conditional", "class_label": 1}


async def test_a_queued_job_past_its_deadline_expires_without_running(make_api):
    async with make_api(worker=True, worker_concurrency=1) as api:
        c = api.client
        api.runtime.hold.clear()  # the one worker slot is busy with the first job
        busy = (await c.post("/v1/videos", json=CG)).json()
        late = (await c.post("/v1/videos", json={**CG, "deadline_seconds": 0.2})).json()
        by_header = (await c.post("/v1/videos", json=CG, headers={"Cancel-After": "200ms"})).json()
        assert by_header["request"]["deadline_seconds"] == pytest.approx(0.2)
        await asyncio.sleep(0.4)
        api.runtime.hold.set()
        for job in (late, by_header):
            done = (await c.get(f"/v1/videos/{job['id']}", headers={"Prefer": "wait=5"})).json()
            assert done["status"] == "expired", done
            assert_error(await c.get(f"/v1/videos/{job['id']}/content"), 409, "video_not_ready")
        assert (await c.get(f"/v1/videos/{busy['id']}", headers={"Prefer": "wait=5"})).json()["status"] == "completed"
        assert [j.id for j, _ in api.runtime.calls] == [busy["id"]]  # the expired ones never ran
        listed = (await c.get("/v1/videos", params={"status": "expired"})).json()["data"]
        assert {j["id"] for j in listed} == {late["id"], by_header["id"]}


@pytest.mark.parametrize("body,headers,param", [
    ({**CG, "deadline_seconds": 0}, {}, "deadline_seconds"),
    ({**CG, "deadline_seconds": -1}, {}, "deadline_seconds"),
    ({**CG, "deadline_seconds": 7200}, {}, "deadline_seconds"),  # above max_job_seconds
    (CG, {"Cancel-After": "soon"}, "Cancel-After"),
    (CG, {"Cancel-After": "0s"}, "Cancel-After"),
])
async def test_bad_deadlines_are_422(make_api, body, headers, param):
    async with make_api(max_job_seconds=3600) as api:
        assert_error(await api.client.post("/v1/videos", json=body, headers=headers), 422, "invalid_value", param)


def test_durations():
    assert parse_duration("30") == 30 and parse_duration("1.5m") == 90 and parse_duration("2h") == 7200
    assert parse_duration(" 500ms ") == pytest.approx(0.5)
    with pytest.raises(APIError):
        parse_duration("1e999")


# --- the real pipeline ------------------------------------------------------------------------

def _runtime():
    from pathlib import Path

    from server.runtime import load_runtime
    from server.settings import Settings

    repo = Path(__file__).resolve().parent.parent / "model_repository"
    if not (repo / "moving-digits" / "manifest.json").is_file():
        pytest.skip("no demo model: run `make model`")
    return load_runtime(Settings(model_repository=repo, batching=False))


@pytest.mark.slow
def test_a_running_maskgit_job_returns_its_best_video_at_the_deadline():
    from conftest import video_request

    from server.jobs.base import InputError, Job
    from server.output import decode_frames
    from server.samplers import SamplerOptions

    runtime = _runtime()
    try:
        def job(sampler: dict, deadline_in: float) -> Job:
            request = video_request(class_label=3, seed=4, sampler=SamplerOptions(**sampler))
            return Job(id="d", model=runtime.catalogue.default_model, request=request,
                       deadline_at=time.time() + deadline_in)

        full = job({"method": "maskgit", "steps": 64}, 600)
        result = asyncio.run(runtime.generate(full, None, lambda f: None, lambda: False))
        assert result.truncated is None
        cut = job({"method": "maskgit", "steps": 64}, 0.05)
        progress: list[float] = []
        result = asyncio.run(runtime.generate(cut, None, progress.append, lambda: False))
        truncated = result.truncated
        assert truncated is not None and 0 <= truncated["steps_done"] < 64 and truncated["steps"] == 64
        made = decode_frames(result.frames)
        assert made.shape == (16, 32, 32, 3) and made.max() > 0  # a whole video, every token decided
        assert progress[-1] == pytest.approx(1.0) and progress == sorted(progress)
        with pytest.raises(InputError) as info:
            asyncio.run(runtime.generate(job({"method": "autoregressive"}, 0.05), None, lambda f: None, lambda: False))
        assert info.value.code == "deadline_exceeded"
    finally:
        runtime.close()
