"""Exact edits: inpainting or outpainting a completed job's own tokens ("edit": {"from": id})
regenerates only the tokens whose footprint meets the region; every other token, and so every
pixel the decoder makes from them where the region is not, stays exactly as it was."""
from __future__ import annotations

import asyncio
import json

import numpy as np
import pytest

from conftest import demo_api
from server import tasks as T

pytestmark = pytest.mark.slow


async def _job(c, body: dict) -> dict:
    job = (await c.post("/v1/videos", json=body, headers={"Prefer": "wait=60"})).json()
    assert job.get("status") == "completed", job
    return job


async def _tokens(c, job_id: str) -> np.ndarray:
    doc = json.loads((await c.get(f"/v1/videos/{job_id}/content?variant=tokens")).content)
    return np.asarray(doc["windows"][0]).reshape(doc["token_grid"])


def test_an_edit_keeps_every_token_outside_the_region_and_regenerates_inside():
    from server.output import decode_frames

    async def run():
        async with demo_api() as c:
            source = await _job(c, {"task": "class_conditional", "class_label": 4, "seed": 3, "sampler": "maskgit"})
            edit = await _job(c, {"task": "inpainting", "mask": "center", "seed": 9, "edit": {"from": source["id"]},
                                  "sampler": {"method": "maskgit", "steps": 6}})
            again = await _job(c, {"task": "inpainting", "mask": "center", "seed": 9, "edit": {"from": source["id"]},
                                   "sampler": {"method": "maskgit", "steps": 6}})
            out = {name: (await _tokens(c, job["id"]),
                          decode_frames((await c.get(f"/v1/videos/{job['id']}/content?variant=frames")).content))
                   for name, job in (("source", source), ("edit", edit), ("again", again))}
            return edit, out

    edit, out = asyncio.run(run())
    (src_tokens, src_frames), (new_tokens, new_frames), (again_tokens, _) = out["source"], out["edit"], out["again"]
    assert edit["request"]["edit_from"] and edit["num_frames"] == 16 and edit["size"] == "32x32"
    t, h, w = src_tokens.shape
    frames, height, width = src_frames.shape[:3]
    given = T.pixel_mask("inpainting", frames, height, width, preset="center")  # True: given (not in the hole)
    state = T.token_states(given, frames // t, height // h)
    kept = state == T.STATE_FULL
    assert kept.any() and (~kept).any()
    assert np.array_equal(new_tokens[kept], src_tokens[kept])  # exactly the source's tokens
    assert (new_tokens[~kept] != src_tokens[~kept]).any()  # the region was generated again
    assert np.array_equal(new_tokens, again_tokens)  # same seed, same edit
    assert np.array_equal(new_frames[given], src_frames[given])  # the given pixels are the source's
    assert not np.array_equal(new_frames[~given], src_frames[~given])


async def test_edits_that_cannot_be_made_are_refused(make_api):
    async with make_api(worker=True) as api:
        c = api.client
        done = await _job(c, {"task": "class_conditional", "class_label": 1})
        queued = (await c.post("/v1/videos", json={"task": "class_conditional", "class_label": 1})).json()
        api.runtime.hold.clear()  # later jobs stay unfinished
        held = (await c.post("/v1/videos", json={"task": "class_conditional", "class_label": 1})).json()
        for body, status, code, param in [
            ({"task": "class_conditional", "class_label": 1, "edit": {"from": done["id"]}}, 422, "invalid_value", "edit"),
            ({"task": "inpainting", "mask": "center", "edit": {"from": done["id"]}, "input_video": "AAAA"},
             422, "invalid_value", "edit"),
            ({"task": "inpainting", "mask": "center", "edit": {"from": "video_nope"}}, 404, "video_not_found", "edit.from"),
            ({"task": "inpainting", "mask": "center", "edit": {"from": held["id"]}}, 409, "video_not_ready", "edit.from"),
            ({"task": "inpainting", "mask": "center", "edit": {"from": done["id"]}, "num_frames": 8},
             422, "invalid_value", "num_frames"),
            ({"task": "inpainting", "edit": {"from": done["id"]}}, 422, "missing_field", "mask"),
            ({"task": "inpainting", "mask": "center", "edit": {"to": done["id"]}}, 422, "missing_field", "edit.from"),
            # the fake runtime's jobs keep no tokens: nothing to edit
            ({"task": "inpainting", "mask": "center", "edit": {"from": done["id"]}}, 404, "content_not_found", "edit.from"),
        ]:
            r = await c.post("/v1/videos", json=body)
            error = r.json()["error"]
            assert (r.status_code, error["code"], error["param"]) == (status, code, param), (body, r.text)
        api.runtime.hold.set()
        assert queued["id"]


def test_an_edit_of_an_extended_job_keeps_every_window_outside_the_box():
    box = [0.25, 0.25, 0.75, 0.75]

    async def run():
        async with demo_api() as c:
            source = await _job(c, {"task": "class_conditional", "class_label": 2, "seed": 5, "num_frames": 24,
                                    "sampler": {"method": "maskgit", "steps": 4}})
            edit = await _job(c, {"task": "inpainting", "mask": {"box": box}, "seed": 1, "edit": {"from": source["id"]},
                                  "sampler": {"method": "maskgit", "steps": 4}})
            docs = [json.loads((await c.get(f"/v1/videos/{job['id']}/content?variant=tokens")).content)
                    for job in (source, edit)]
            return edit, docs

    edit, (src, new) = asyncio.run(run())
    assert edit["num_frames"] == 24 and edit["size"] == "32x32" and edit["request"]["edit_from"]
    assert len(src["windows"]) == len(new["windows"]) >= 2  # several windows, as the source had
    grid = src["token_grid"]
    # every window is a whole one (16 frames); the box is the same in each of its frames
    given = T.pixel_mask("inpainting", 16, 32, 32, box=box)
    kept = T.token_states(given, 16 // grid[0], 32 // grid[1]) == T.STATE_FULL
    assert kept.any() and (~kept).any()
    changed = False
    for src_w, new_w in zip(src["windows"], new["windows"]):
        a, b = np.asarray(src_w).reshape(grid), np.asarray(new_w).reshape(grid)
        assert np.array_equal(b[kept], a[kept])  # wholly outside the box: the source's own tokens
        changed |= bool((b[~kept] != a[~kept]).any())
    assert changed  # the box was generated again
