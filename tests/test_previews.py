"""Previews, on the demo model through the API: a job with "previews": true streams one `preview`
event per MaskGIT step (autoregressive: every N tokens and at the window's end), whose last image is exactly the finished clip; asking for previews does
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
    # an autoregressive job keeps its map too: each drawn token's probability (nothing is given here)
    assert ar_conf.status_code == 200 and len(ar_conf.json()["windows"][0]) == t * h * w


def test_autoregressive_previews_every_n_tokens_end_as_the_job():
    """The autoregressive sampler previews every `ar_preview_every_tokens` sampled tokens and at
    the window's end: in order, `decided` rising to 1, the last grid the job's own tokens (its
    image the clip), and the same MP4 as without previews."""
    body = {"task": "class_conditional", "class_label": 2, "seed": 7, "sampler": "autoregressive"}

    async def run():
        from server.output import decode_frames

        out = []
        async with demo_api(ar_preview_every_tokens=100) as c:
            for b in ({**body, "previews": True}, body):
                job = (await c.post("/v1/videos", json=b, headers={"Prefer": "wait=120"})).json()
                assert job["status"] == "completed", job
                events = sse((await c.get(f"/v1/videos/{job['id']}/events")).text)
                video = (await c.get(f"/v1/videos/{job['id']}/content")).content
                tokens = (await c.get(f"/v1/videos/{job['id']}/content?variant=tokens")).json()
                frames = decode_frames((await c.get(f"/v1/videos/{job['id']}/content?variant=frames")).content)
                out.append((job, events, video, tokens, frames))
        return out

    (job, events, video, tokens, frames), (_, plain_events, plain_video, plain_tokens, _) = asyncio.run(run())
    t, h, w = tokens["token_grid"]
    n = t * h * w
    previews = [data for name, data in events if name == "preview"]
    assert len(previews) == -(-n // 100)  # nothing given: every token is drawn
    assert [p["step"] for p in previews] == [min(n, 100 * (i + 1)) for i in range(len(previews))]
    assert {p["steps"] for p in previews} == {n} and all(p["id"] == job["id"] for p in previews)
    decided = [p["decided"] for p in previews]
    assert decided == sorted(decided) and 0 < decided[0] < 1 and decided[-1] == 1.0
    maps = [np.frombuffer(base64.b64decode(p["confidence"]), np.uint8) for p in previews]
    assert maps[0][:100].any()  # the drawn tokens have their probability (8-bit, so a tiny one reads 0)
    assert maps[0][100:].max() == 0  # the undecided ones none
    strips = [png(p["image"]) for p in previews]
    assert np.array_equal(strips[-1], np.concatenate(list(frames), axis=1))  # the last guess is the clip
    assert not np.array_equal(strips[0], strips[-1])
    assert tokens["windows"] == plain_tokens["windows"] and video == plain_video  # previews change nothing
    assert not [name for name, _ in plain_events if name == "preview"]


def test_ar_guess_fills_what_is_not_decided_yet():
    """An autoregressive preview's grid: decided tokens as they are, a partly given position its
    condition token, any other the previous latent frame's token there (0 in the first frame);
    once every token is decided, exactly the tokens."""
    from server.decoding import ar_guess
    from server.samplers import UNKNOWN, ar_init

    grid = (3, 1, 2)
    fixed = np.array([0, 0, 0, 0, 0, 1], bool)
    state = ar_init(np.array([0, 0, 0, 0, 0, 9]), fixed, vocab_size=16, num_classes=2, seed=0)
    cond = np.array([11, 12, 13, 14, 15, 9])
    token_state = np.array([0, 0, 0, 1, 0, 2])
    state.tokens[:3] = [4, 5, 6]
    state.position = 3
    assert ar_guess(state, cond, token_state, grid).tolist() == [4, 5, 6, 14, 6, 9]
    fresh = ar_init(np.zeros(6), np.zeros(6, bool), vocab_size=16, num_classes=2, seed=0)
    assert ar_guess(fresh, cond, np.zeros(6), grid).tolist() == [0] * 6
    state.tokens[3:5] = [1, 2]
    assert UNKNOWN not in state.tokens and ar_guess(state, cond, token_state, grid).tolist() == state.tokens.tolist()
