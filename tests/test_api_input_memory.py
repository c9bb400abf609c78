"""Large inputs at intake (issue #12 D5): the API checks an input video by decoding each frame
and keeping none (the worker decodes the frames it uses, once), and reads at most
max_concurrent_decodes inputs at a time. Before, the intake decoded and held the whole video
(twice over, list then stack) for every request at once: 4 concurrent uploads of a 24 KB GIF
took the API process to +1.9 GB (BENCHMARKS.md, "Large inputs")."""
from __future__ import annotations

import asyncio
import base64
import threading

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


def _overlap_probe(real, wait_s: float = 0.0):
    """`real` wrapped to count how many calls run at once (`most[0]`, the maximum), with no
    timing to hope for (Review A11: a 0.15 s sleep had to make two of six requests overlap).
    Without `wait_s` each call waits at a barrier of two for a second call beside it, so a bound
    of two is reached however the requests are scheduled; with `wait_s` each call waits that long
    for a second one, which a bound of one never lets in and anything looser would."""
    lock = threading.Condition()
    running, most = [0], [0]
    pair = threading.Barrier(2, timeout=30)

    def probe(data, settings, *args, **kwargs):
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
            lock.notify_all()
            if wait_s:
                lock.wait_for(lambda: running[0] > 1, timeout=wait_s)
        try:
            if not wait_s:
                pair.wait()
            return real(data, settings, *args, **kwargs)
        finally:
            with lock:
                running[0] -= 1

    return probe, most


async def test_at_most_max_concurrent_decodes_inputs_are_read_at_once(make_api, monkeypatch):
    import server.api.intake as intake

    probe, most = _overlap_probe(video.check_input)  # every check waits for a second one: two overlap
    monkeypatch.setattr(intake, "check_input", probe)
    body = {"task": "frame_prediction", "condition_frames": 3, "input_video": base64.b64encode(_gif()).decode()}
    async with make_api(max_concurrent_decodes=2) as api:
        answers = await asyncio.gather(*(api.client.post("/v1/videos", json=body) for _ in range(6)))
        assert [r.status_code for r in answers] == [202] * 6  # the others waited; none was refused or lost
        assert most[0] == 2  # two at once (the barrier), never three (the slots)
        assert len((await api.client.get("/v1/videos")).json()["data"]) == 6


async def test_tokenize_reads_its_input_through_the_same_slots(api_sample, reads, monkeypatch):
    """The tokens endpoints need the frames (a full decode), under the same bound: with one slot,
    three concurrent tokenize calls decode one at a time (Review A8: one request at a time could
    not tell a tokens path that bypassed the slots)."""
    import server.api.routes.tokens as tokens_route
    from conftest import demo_api

    probe, most = _overlap_probe(tokens_route.decode_input, wait_s=0.3)
    monkeypatch.setattr(tokens_route, "decode_input", probe)
    mp4, _ = api_sample
    async with demo_api(max_concurrent_decodes=1) as client:
        body = {"input_video": base64.b64encode(mp4).decode()}
        answers = await asyncio.gather(*(client.post("/v1/tokenize", json=body) for _ in range(3)))
        assert [r.status_code for r in answers] == [200] * 3, answers[0].text
        assert all(len(r.json()["tokens"]) == int(np.prod(r.json()["token_grid"])) for r in answers)
        assert most[0] == 1  # each waited 0.3 s for company that the slot never let in
        assert reads == [("mp4", True)] * 3
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
