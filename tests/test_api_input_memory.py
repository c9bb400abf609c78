"""Large inputs at intake (issue #12 D5): the API checks an input video by decoding each frame
and keeping none (the worker decodes the frames it uses, once), and reads at most
max_concurrent_decodes inputs at a time. Before, the intake decoded and held the whole video
(twice over, list then stack) for every request at once: 4 concurrent uploads of a 24 KB GIF
took the API process to +1.9 GB (BENCHMARKS.md, "Large inputs")."""
from __future__ import annotations

import asyncio
import base64
import threading
import time

import numpy as np
import pytest

from server import video_decode as video  # the readers (server.video re-exports only the public names)


def _gif(frames: int = 6) -> bytes:
    import io

    from PIL import Image

    images = [Image.fromarray(np.full((32, 32, 3), 20 * i % 256, np.uint8)) for i in range(frames)]
    buf = io.BytesIO()
    images[0].save(buf, format="GIF", save_all=True, append_images=images[1:], duration=100)
    return buf.getvalue()


@pytest.fixture
def reads(monkeypatch):
    """Every call of the video readers (the decoders server/video_decode.py runs): (format, keep)."""
    calls: list[tuple[str, bool]] = []
    for name in ("_read_with_pillow", "_read_with_ffmpeg"):
        original = getattr(video, name)

        def counted(data, fmt, *args, keep, _original=original):
            calls.append((fmt, keep))
            return _original(data, fmt, *args, keep=keep)

        monkeypatch.setattr(video, name, counted)
    return calls


async def test_the_intake_reads_an_input_once_and_keeps_no_frame(make_api, reads, api_sample):
    mp4, _ = api_sample
    async with make_api() as api:
        r = await api.client.post("/v1/videos", json={"task": "frame_prediction", "condition_frames": 3,
                                                      "input_video": base64.b64encode(_gif()).decode()})
        assert r.status_code == 202, r.text
        assert reads == [("gif", False)]  # one pass, nothing held
        r = await api.client.post("/v1/videos", data={"task": "frame_interpolation"},
                                  files={"input_video": ("clip.mp4", mp4, "video/mp4")})
        assert r.status_code == 202, r.text
        assert reads == [("gif", False), ("mp4", False)]
        r = await api.client.post("/v1/videos", json={"task": "frame_prediction", "condition_frames": 7,
                                                      "input_video": base64.b64encode(_gif()).decode()})
        assert r.status_code == 422 and "6 frame" in r.json()["error"]["message"]  # the count is still known
        assert await api.queue.get_input((await api.client.get("/v1/videos")).json()["data"][0]["id"]) == mp4


async def test_at_most_max_concurrent_decodes_inputs_are_read_at_once(make_api, monkeypatch):
    lock, running, most = threading.Lock(), [0], [0]
    real = video.check_input

    def slow_check(data, settings):
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        time.sleep(0.15)
        with lock:
            running[0] -= 1
        return real(data, settings)

    import server.api.intake as intake

    monkeypatch.setattr(intake, "check_input", slow_check)
    body = {"task": "frame_prediction", "condition_frames": 3, "input_video": base64.b64encode(_gif()).decode()}
    async with make_api(max_concurrent_decodes=2) as api:
        answers = await asyncio.gather(*(api.client.post("/v1/videos", json=body) for _ in range(6)))
        assert [r.status_code for r in answers] == [202] * 6  # the others waited; none was refused or lost
        assert most[0] == 2
        assert len((await api.client.get("/v1/videos")).json()["data"]) == 6


async def test_tokenize_reads_its_input_through_the_same_slots(api_sample, reads):
    """The tokens endpoints need the frames (a full decode), under the same bound."""
    from conftest import demo_api

    mp4, _ = api_sample
    async with demo_api(max_concurrent_decodes=1) as client:
        r = await client.post("/v1/tokenize", json={"input_video": base64.b64encode(mp4).decode()})
        assert r.status_code == 200, r.text
        assert len(r.json()["tokens"]) == int(np.prod(r.json()["token_grid"]))
        assert reads == [("mp4", True)]
        r = await client.post("/v1/tokenize", json={"input_video": base64.b64encode(b"GIF89a-broken").decode()})
        assert r.status_code == 400 and r.json()["error"]["param"] == "input_video"


async def test_tokenize_decodes_one_window_and_holds_its_slot_until_the_encoder_is_done(make_api, reads, monkeypatch):
    """Review A3: the tokens endpoints decoded up to max_input_frames though they use one
    window, and gave their decode slot back while the frames waited for the encoder."""
    from conftest import FakeRuntime, make_api_manifest

    manifest = make_api_manifest()
    frames_read, running, most = [], [0], [0]
    real = video.decode_video

    def counted(data, **limits):
        frames_read.append(limits["max_frames"])
        return real(data, **limits)

    monkeypatch.setattr(video, "decode_video", counted)

    class SlowPipeline:
        def __init__(self):
            self.manifest = manifest

        async def tokenize(self, clip):
            running[0] += 1
            most[0] = max(most[0], running[0])
            await asyncio.sleep(0.05)
            running[0] -= 1
            assert len(clip) <= manifest.window_frames
            return np.zeros(manifest.token_grid, np.int64)

    runtime = FakeRuntime([manifest])
    runtime.pipelines = {manifest.model_id: SlowPipeline()}
    body = {"input_video": base64.b64encode(_gif(frames=20)).decode()}
    async with make_api(runtime=runtime, max_concurrent_decodes=1, max_input_frames=64) as api:
        answers = await asyncio.gather(*(api.client.post("/v1/tokenize", json=body) for _ in range(3)))
        assert [r.status_code for r in answers] == [200] * 3, answers[0].text
    assert frames_read == [manifest.window_frames] * 3  # not max_input_frames
    assert most[0] == 1  # one request's frames alive at a time
