"""Previews and exact edits through the Redis queue: an API process (`kinetoscope serve
--redis-url`, no models of its own) and a worker process (`kinetoscope worker --redis-url`) on a
private redis-server. Previews stream live, in step order, ending at 100% decided and at the
clip; an edit keeps every token outside its region exactly.

Skips when the demo model (`make model`) or redis-server is missing."""
from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import httpx
import numpy as np
import pytest
from httpx_sse import connect_sse

from live_server import free_port
from live_server import stop_process
from server import tasks as T

pytestmark = [pytest.mark.slow, pytest.mark.redis]

ROOT = Path(__file__).resolve().parent.parent
MODEL_DIR = ROOT / "model_repository"
REDIS_DB = 5  # the session's private redis-server; other Redis tests use 0, 2 and 3
START_TIMEOUT = 120


def _env() -> dict[str, str]:
    """Ours without any KINETOSCOPE_* of a developer's (a stray redis URL), plus short leases."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("KINETOSCOPE_")}
    env.update(PYTHONUNBUFFERED="1", KINETOSCOPE_JOB_STORE_DIR="", KINETOSCOPE_LEASE_SECONDS="2",
               KINETOSCOPE_HEARTBEAT_SECONDS="0.5")
    return env


def _spawn(args: list[str], log: Path) -> subprocess.Popen:
    with open(log, "wb") as out:
        return subprocess.Popen([sys.executable, "-m", "cli", *args, "--model-repository", str(MODEL_DIR)],
                                cwd=ROOT, env=_env(), stdout=out, stderr=subprocess.STDOUT)




def _wait_for(what: str, ready, procs: list[tuple[subprocess.Popen, Path]]) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while not ready():
        for proc, log in procs:
            if proc.poll() is not None:
                pytest.fail(f"{log.name} exited ({proc.returncode}) before {what}:\n{log.read_text()[-3000:]}")
        if time.monotonic() > deadline:
            pytest.fail(f"no {what} after {START_TIMEOUT} s")
        time.sleep(0.2)


@pytest.fixture(scope="module")
def api(redis_server, tmp_path_factory):
    """An httpx client on the API process; one worker process takes the jobs."""
    if not (MODEL_DIR / "moving-digits" / "manifest.json").is_file():
        pytest.skip("no demo model: run `make model`")
    logs = tmp_path_factory.mktemp("redis-previews")
    url = f"redis://127.0.0.1:{redis_server.port}/{REDIS_DB}"
    port = free_port()
    server = _spawn(["serve", "--redis-url", url, "--host", "127.0.0.1", "--port", str(port)], logs / "api.log")
    worker = _spawn(["worker", "--redis-url", url, "--concurrency", "4"], logs / "worker.log")
    procs = [(server, logs / "api.log"), (worker, logs / "worker.log")]
    client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=httpx.Timeout(120.0, connect=10.0))

    def api_ready() -> bool:
        try:
            return client.get("/readyz").status_code == 200
        except httpx.TransportError:
            return False

    try:
        _wait_for("a ready API", api_ready, procs)
        _wait_for("a started worker", lambda: "worker started" in (logs / "worker.log").read_text(), procs)
        assert "worker started" not in (logs / "api.log").read_text(), "an API with --redis-url runs no worker"
        yield client
    finally:
        client.close()
        stop_process(worker)
        stop_process(server)


def _create(api: httpx.Client, body: dict, wait: int | None = None) -> dict:
    r = api.post("/v1/videos", json=body, headers={"Prefer": f"wait={wait}"} if wait else {})
    assert r.status_code in (200, 202), r.text
    return r.json()


def _events(api: httpx.Client, job_id: str) -> list[tuple[str, dict]]:
    """(event name, data) of the job's event stream, read as it comes until the stream ends."""
    with connect_sse(api, "GET", f"/v1/videos/{job_id}/events") as source:
        return [(e.event, json.loads(e.data)) for e in source.iter_sse() if e.data]


def _frames(api: httpx.Client, job_id: str) -> np.ndarray:
    """The job's lossless frames (variant=frames, PNGs in a zip) as uint8 (T, H, W, 3)."""
    from PIL import Image

    with zipfile.ZipFile(io.BytesIO(api.get(f"/v1/videos/{job_id}/content?variant=frames").content)) as z:
        return np.stack([np.asarray(Image.open(io.BytesIO(z.read(n))).convert("RGB")) for n in sorted(z.namelist())])


def _png(data: bytes) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def _tokens(api: httpx.Client, job_id: str) -> np.ndarray:
    doc = api.get(f"/v1/videos/{job_id}/content?variant=tokens").json()
    return np.asarray(doc["windows"][0]).reshape(doc["token_grid"])


def test_previews_stream_live_in_step_order_and_end_at_the_clip(api):
    import base64

    job = _create(api, {"task": "class_conditional", "class_label": 8, "seed": 21, "previews": True,
                        "sampler": {"method": "maskgit", "steps": 12}})
    events = _events(api, job["id"])  # opened while the job is queued or running
    previews = [data for name, data in events if name == "preview"]
    assert [p["step"] for p in previews] == list(range(1, 13)) and {p["steps"] for p in previews} == {12}
    decided = [p["decided"] for p in previews]
    assert decided == sorted(decided) and 0 < decided[0] < 1 and decided[-1] == 1.0
    names = [name for name, _ in events]
    assert names[-1] == "message" and events[-1][1]["status"] == "completed"  # every preview before the end
    # (Previews stream live: on a quiet machine they interleave with the job's in-progress events.
    # Under load the API may see several changes at once, so that order is not asserted.)
    # The last preview is the clip, and the latest (variant=preview) is that one.
    last = _png(base64.b64decode(previews[-1]["image"].split(",", 1)[1]))
    assert np.array_equal(last, np.concatenate(list(_frames(api, job["id"])), axis=1))
    latest = api.get(f"/v1/videos/{job['id']}/content?variant=preview")
    assert latest.headers["x-preview-step"] == "12" and np.array_equal(_png(latest.content), last)
    confidence = api.get(f"/v1/videos/{job['id']}/content?variant=confidence").json()
    assert list(base64.b64decode(previews[-1]["confidence"])) == confidence["windows"][0]
    # A finished job's stream replays the same previews, in the same order.
    assert [d for n, d in _events(api, job["id"]) if n == "preview"] == previews


def test_previews_of_a_two_window_clip_count_the_steps_of_both(api):
    job = _create(api, {"task": "class_conditional", "class_label": 2, "seed": 5, "num_frames": 24, "previews": True,
                        "sampler": {"method": "maskgit", "steps": 4}})
    previews = [data for name, data in _events(api, job["id"]) if name == "preview"]
    assert [p["step"] for p in previews] == list(range(1, 9)) and {p["steps"] for p in previews} == {8}
    assert previews[-1]["decided"] == 1.0


def test_an_edit_through_redis_keeps_every_token_outside_the_region(api):
    source = _create(api, {"task": "class_conditional", "class_label": 4, "seed": 3, "sampler": "maskgit"}, wait=60)
    box = [0.3, 0.1, 0.8, 0.6]  # not on token edges: the tokens it cuts through are generated too
    body = {"task": "inpainting", "mask": {"box": box}, "seed": 9, "edit": {"from": source["id"]}, "previews": True,
            "sampler": {"method": "maskgit", "steps": 6}}
    edit = _create(api, body, wait=60)
    assert edit["status"] == "completed", edit
    assert edit["request"]["edit_from"] == source["id"] and edit["num_frames"] == source["num_frames"]
    before, after = _tokens(api, source["id"]), _tokens(api, edit["id"])
    t, h, w = before.shape
    src_frames, new_frames = _frames(api, source["id"]), _frames(api, edit["id"])
    frames, height, width = src_frames.shape[:3]
    given = T.pixel_mask("inpainting", frames, height, width, box=box)
    kept = T.token_states(given, frames // t, height // h) == T.STATE_FULL
    assert kept.any() and (~kept).any()
    assert np.array_equal(after[kept], before[kept])  # exactly the source's tokens
    assert (after[~kept] != before[~kept]).any()  # the region was generated again
    assert np.array_equal(new_frames[given], src_frames[given])  # and so the pixels outside it
    previews = [d for n, d in _events(api, edit["id"]) if n == "preview"]
    assert [p["step"] for p in previews] == list(range(1, 7)) and previews[-1]["decided"] == 1.0
