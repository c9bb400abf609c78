"""Previews, on the demo model through the API: a job with "previews": true streams one `preview`
event per MaskGIT step, whose last image is exactly the finished clip; asking for previews does
not change the video."""
from __future__ import annotations

import asyncio
import base64
import io
import json

import numpy as np
import pytest
from PIL import Image

from conftest import demo_api

pytestmark = pytest.mark.slow


def sse(text: str) -> list[tuple[str, dict]]:
    """(event name, data) per event of a text/event-stream body."""
    out = []
    for block in text.split("\n\n"):
        lines = [line for line in block.split("\n") if line and not line.startswith(":")]
        if not lines:
            continue
        name = next((line[7:] for line in lines if line.startswith("event: ")), "message")
        data = "\n".join(line[6:] for line in lines if line.startswith("data: "))
        out.append((name, json.loads(data)))
    return out


def png(data_url: str) -> np.ndarray:
    assert data_url.startswith("data:image/png;base64,")
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(data_url.split(",", 1)[1]))).convert("RGB"))


async def _run(bodies: list[dict]):
    from server.output import decode_frames

    results = []
    async with demo_api() as c:
        for body in bodies:
            job = (await c.post("/v1/videos", json=body, headers={"Prefer": "wait=60"})).json()
            assert job["status"] == "completed", job
            events = sse((await c.get(f"/v1/videos/{job['id']}/events")).text)  # replays, then ends
            video = (await c.get(f"/v1/videos/{job['id']}/content")).content
            frames = decode_frames((await c.get(f"/v1/videos/{job['id']}/content?variant=frames")).content)
            latest = await c.get(f"/v1/videos/{job['id']}/content?variant=preview")
            results.append((job, events, video, frames, latest))
    return results


def test_previews_show_every_step_and_end_as_the_video():
    body = {"task": "class_conditional", "class_label": 3, "seed": 11, "sampler": {"method": "maskgit", "steps": 4}}
    (job, events, video, frames, latest), (plain, plain_events, plain_video, _, no_preview) = asyncio.run(
        _run([{**body, "previews": True}, body]))
    previews = [data for name, data in events if name == "preview"]
    assert [p["step"] for p in previews] == [1, 2, 3, 4] and {p["steps"] for p in previews} == {4}
    assert all(p["id"] == job["id"] for p in previews)
    decided = [p["decided"] for p in previews]
    assert decided == sorted(decided) and 0 < decided[0] < 1 and decided[-1] == 1.0
    assert events[-1][0] == "message" and events[-1][1]["status"] == "completed"
    strips = [png(p["image"]) for p in previews]
    assert all(s.shape == (32, 16 * 32, 3) for s in strips)
    assert np.array_equal(strips[-1], np.concatenate(list(frames), axis=1))  # the last guess is the clip
    assert not np.array_equal(strips[0], strips[-1])  # and the first one is not yet
    assert latest.status_code == 200 and latest.headers["content-type"] == "image/png"
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(latest.content)).convert("RGB")), strips[-1])
    assert job["request"]["previews"] is True and plain["request"]["previews"] is False
    assert video == plain_video  # previews change nothing in the result
    assert not [name for name, _ in plain_events if name == "preview"]
    assert no_preview.status_code == 404


def test_the_confidence_map_is_the_samplers_and_previews_carry_it():
    body = {"task": "inpainting", "mask": "center", "seed": 4, "previews": True,
            "sampler": {"method": "maskgit", "steps": 3}}
    source = {"task": "class_conditional", "class_label": 1, "seed": 2, "sampler": "maskgit"}

    async def run():
        async with demo_api() as c:
            first = (await c.post("/v1/videos", json=source, headers={"Prefer": "wait=60"})).json()
            job = (await c.post("/v1/videos", json={**body, "input_video_id": first["id"]},
                                headers={"Prefer": "wait=60"})).json()
            events = sse((await c.get(f"/v1/videos/{job['id']}/events")).text)
            conf = (await c.get(f"/v1/videos/{job['id']}/content?variant=confidence")).json()
            ar = (await c.post("/v1/videos", json={**source, "sampler": "autoregressive"},
                               headers={"Prefer": "wait=60"})).json()
            ar_conf = await c.get(f"/v1/videos/{ar['id']}/content?variant=confidence")
            return events, conf, ar_conf

    events, conf, ar_conf = asyncio.run(run())
    t, h, w = conf["token_grid"]
    [final] = conf["windows"]
    assert len(final) == t * h * w and conf["scale"] == 255 and all(0 <= v <= 255 for v in final)
    grid = np.array(final).reshape(t, h, w)
    # inpainting the centre: the tokens wholly outside the hole are given (255); the hole's are drawn (< 255 somewhere)
    assert grid[:, 0, 0].min() == 255 and grid[:, h // 2, w // 2].min() < 255
    previews = [data for name, data in events if name == "preview"]
    maps = [np.frombuffer(base64.b64decode(p["confidence"]), np.uint8) for p in previews]
    assert [p["token_grid"] for p in previews] == [[t, h, w]] * 3
    assert np.array_equal(maps[-1], np.array(final, np.uint8))  # the last preview's map is the job's
    assert ar_conf.status_code == 404 and "autoregressive" in ar_conf.json()["error"]["message"]
