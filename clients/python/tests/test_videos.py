"""The synchronous client's methods against the live server."""
from __future__ import annotations

import io
import json
import math
import time
import uuid

import httpx
import pytest
from live_servers import API_KEY, FAST, MEDIUM, SLOW

from kinetoscope_client import Client, JobFailedError, NotFoundError, Preview, SyncPage, Video, WaitTimeoutError

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def is_mp4(data: bytes) -> bool:
    return data[4:8] == b"ftyp"


@pytest.fixture(scope="module")
def source_video(server) -> tuple[str, bytes]:
    """A finished job and its MP4, input for the conditional tasks."""
    with Client(server.url, api_key=API_KEY) as c:
        video = c.videos.create_and_poll(**FAST, seed=1, timeout=120)
        return video.id, c.videos.download_content(video.id)


def get_times(times: list[float]) -> httpx.Client:
    """An httpx client that notes when it sends each GET (an httpx event hook)."""
    return httpx.Client(event_hooks={"request": [lambda r: times.append(time.monotonic()) if r.method == "GET" else None]})


def test_models_list_and_retrieve(client):
    models = client.models.list()
    assert models
    model = models[0]
    assert "class_conditional" in model.tasks and "frame_prediction" in model.tasks
    assert "32x32" in model.sizes
    assert model.window_frames == 16 and model.classes and model.backend
    assert client.models.retrieve(model.id).id == model.id


def test_create_then_poll_to_completion(client):
    video = client.videos.create(**FAST, seed=7)
    assert isinstance(video, Video) and video.object == "video"
    assert video.status in ("queued", "in_progress", "completed")
    assert (video.task, video.size, video.num_frames, video.seed) == ("class_conditional", "32x32", 16, 7)
    assert video.request["sampler"]["steps"] == 2

    done = client.videos.poll(video.id, timeout=60)
    assert done.status == "completed" and done.progress == 100 and done.error is None
    assert done.completed_at >= done.started_at >= done.created_at
    assert client.videos.retrieve(video.id).status == "completed"


def test_create_and_poll_follows_the_servers_poll_interval(server):
    # The test server suggests 0.2 s (X-Poll-Interval; Retry-After says 1): polls come ~0.2 s apart.
    gets: list[float] = []
    with get_times(gets) as http, Client(server.url, api_key=API_KEY, http_client=http) as c:
        video = c.videos.create_and_poll(**MEDIUM, timeout=120)
    assert video.status == "completed"
    gaps = [b - a for a, b in zip(gets, gets[1:])]
    assert gaps, "the job finished before the first poll; make it slower"
    assert all(0.15 <= g < 0.9 for g in gaps), gaps


def test_create_and_poll_with_an_explicit_interval(server):
    gets: list[float] = []
    with get_times(gets) as http, Client(server.url, api_key=API_KEY, http_client=http) as c:
        video = c.videos.create_and_poll(**MEDIUM, poll_interval=0.5)
    assert video.status == "completed"
    assert all(b - a >= 0.45 for a, b in zip(gets, gets[1:]))


def test_create_with_wait_returns_the_finished_job(client):
    video = client.videos.create(**FAST, wait=60)
    assert video.status == "completed"


def test_generate_returns_mp4_bytes_or_writes_output(client, tmp_path):
    data = client.videos.generate(**FAST, timeout=120)
    assert isinstance(data, bytes) and is_mp4(data)
    path = client.videos.generate(**FAST, output=tmp_path / "out.mp4", timeout=120)
    assert path == tmp_path / "out.mp4" and is_mp4(path.read_bytes())


def test_download_content_video_and_thumbnail(client, source_video, tmp_path):
    video_id, mp4 = source_video
    assert is_mp4(mp4)
    assert client.videos.download_content(video_id, variant="thumbnail")[:8] == PNG_MAGIC
    written = client.videos.download_content(video_id, path=tmp_path / "v.mp4")
    assert written.read_bytes() == mp4


def test_list_pages_newest_first_and_iterates_every_page(client):
    ids = [client.videos.create(**FAST, priority="low").id for _ in range(3)]
    newest_first = ids[::-1]

    page = client.videos.list(limit=1)
    assert isinstance(page, SyncPage) and len(page.data) == 1 and page.has_more
    assert page.data[0].id == newest_first[0]
    assert page.get_next_page().data[0].id == newest_first[1]

    walked = []
    for video in client.videos.list(limit=1):  # one request per job: auto-pagination via `after`
        walked.append(video.id)
        if len(walked) == 3:
            break
    assert walked == newest_first
    assert client.videos.list(after=newest_first[0], limit=2).data[0].id == newest_first[1]
    everything = [v.id for v in client.videos.list(limit=100)]
    assert everything[:3] == newest_first and len(everything) == len(set(everything))


def test_cancel_ends_the_job_and_poll_raises_job_failed(client):
    video = client.videos.create(**SLOW)
    canceled = client.videos.cancel(video.id)
    assert canceled.id == video.id and canceled.status in ("queued", "in_progress", "canceled")
    with pytest.raises(JobFailedError) as failed:
        client.videos.poll(video.id, timeout=60)
    assert failed.value.job.status == "canceled" and failed.value.job.id == video.id
    assert client.videos.cancel(video.id).status == "canceled"  # idempotent


def test_poll_timeout_raises_wait_timeout_with_the_job(client):
    video = client.videos.create(**SLOW)
    try:
        with pytest.raises(WaitTimeoutError) as timed_out:
            client.videos.poll(video.id, timeout=0.5)
        assert timed_out.value.job.id == video.id and not timed_out.value.job.is_terminal
    finally:
        client.videos.cancel(video.id)


def test_delete_removes_the_job(client):
    video = client.videos.create(**FAST, wait=60)
    deleted = client.videos.delete(video.id)
    assert deleted.id == video.id and deleted.deleted
    with pytest.raises(NotFoundError):
        client.videos.retrieve(video.id)


def test_stream_events_yields_each_change_until_terminal(client):
    video = client.videos.create(**{**FAST, "sampler": {"steps": 12}})
    events = list(client.videos.stream_events(video.id))
    assert events and all(e.id == video.id for e in events)
    assert events[-1].status == "completed" and events[-1].progress == 100
    progress = [e.progress for e in events]
    assert progress == sorted(progress)
    assert all(not e.is_terminal for e in events[:-1])


@pytest.mark.parametrize("kind", ["path", "bytes", "file"])
def test_input_video_upload(client, source_video, tmp_path, kind):
    _, mp4 = source_video
    path = tmp_path / "input.mp4"
    path.write_bytes(mp4)
    inputs = {"path": str(path), "bytes": mp4, "file": io.BytesIO(mp4)}
    video = client.videos.create_and_poll(task="frame_prediction", input_video=inputs[kind], condition_frames=4,
                                          size="32x32", sampler={"steps": 2}, timeout=120)
    assert video.status == "completed"
    assert video.request["has_input"] and video.request["condition_frames"] == 4


def test_mask_and_sampler_objects_travel_in_a_multipart_upload(client, source_video):
    _, mp4 = source_video
    video = client.videos.create_and_poll(task="inpainting", input_video=mp4, mask={"preset": "center"},
                                          sampler={"steps": 2, "temperature": 0.9}, size="32x32", timeout=120)
    assert video.request["mask"] == {"preset": "center"}
    assert video.request["sampler"]["temperature"] == 0.9


def test_json_upload_encoding_sends_base64(server, source_video):
    _, mp4 = source_video
    with Client(server.url, api_key=API_KEY, upload_encoding="json") as c:
        video = c.videos.create_and_poll(task="outpainting", input_video=mp4, mask={"box": [0.25, 0.25, 0.75, 0.75]},
                                         size="32x32", sampler={"steps": 2}, timeout=120)
    assert video.status == "completed" and video.request["mask"] == {"box": [0.25, 0.25, 0.75, 0.75]}


def test_chaining_with_input_video_id(client, source_video):
    source_id, _ = source_video
    video = client.videos.create_and_poll(task="frame_prediction", input_video_id=source_id, size="32x32",
                                          sampler={"steps": 2}, timeout=120)
    assert video.status == "completed" and video.request["input_video_id"] == source_id


def test_same_idempotency_key_returns_the_same_job(client):
    key = str(uuid.uuid4())
    first = client.videos.create(**FAST, idempotency_key=key)
    again = client.videos.create(**FAST, idempotency_key=key)
    assert again.id == first.id


def test_each_create_sends_its_own_idempotency_key(server):
    sent: list[httpx.Request] = []
    with httpx.Client(event_hooks={"request": [sent.append]}) as http, \
            Client(server.url, api_key=API_KEY, http_client=http) as c:
        a = c.videos.create(**FAST)
        b = c.videos.create(**FAST)
    keys = [r.headers["Idempotency-Key"] for r in sent if r.method == "POST"]
    assert len(keys) == 2 and keys[0] != keys[1] and all(uuid.UUID(k) for k in keys)
    assert a.id != b.id


def test_progress_bar_stays_off_when_stdout_is_not_a_terminal(client, capsys):
    video = client.videos.create_and_poll(**FAST, progress=True, timeout=120)
    assert video.status == "completed"
    assert capsys.readouterr().out == ""


def test_unknown_argument_is_refused_before_sending(client):
    with pytest.raises(TypeError, match="steps"):
        client.videos.create(task="class_conditional", steps=2)


def test_tokens_round_trip_and_the_jobs_tokens(client, source_video):
    video_id, mp4 = source_video
    tokenized = client.tokens.tokenize(mp4)
    t, h, w = tokenized["token_grid"]
    assert len(tokenized["tokens"]) == t * h * w and all(0 <= x < tokenized["vocab_size"] for x in tokenized["tokens"])
    assert is_mp4(client.tokens.detokenize(tokenized["tokens"]))
    assert is_mp4(client.tokens.detokenize(tokenized["tokens"], size="64x64"))
    stored = client.videos.download_content(video_id, variant="tokens")
    doc = json.loads(stored)
    assert doc["token_grid"] == [t, h, w] and len(doc["windows"][0]) == t * h * w
    frames = client.videos.download_content(video_id, variant="frames")
    assert frames[:2] == b"PK"  # the lossless frames, a zip
    by_video, by_tokens = client.tokens.score(mp4), client.tokens.score(tokens=tokenized["tokens"])
    assert by_video == by_tokens  # the video's score is its tokens' score
    assert by_tokens["log_likelihood"] < 0 and len(by_tokens["per_latent_frame"]) == t
    assert by_tokens["bits_per_token"] == pytest.approx(-by_tokens["log_likelihood"] / (t * h * w) / math.log(2))
    with pytest.raises(ValueError, match="exactly one"):
        client.tokens.score()


# --- previews, the token variants and exact edits -------------------------------------------

MASKGIT = {**FAST, "sampler": {"method": "maskgit", "steps": 4}}  # 4 steps: 4 previews


def tokens_of(client, video_id: str) -> list[list[list[int]]]:
    """A job's first window of tokens (`variant=tokens`) as [t][h][w] lists."""
    doc = json.loads(client.videos.download_content(video_id, variant="tokens"))
    t, h, w = doc["token_grid"]
    flat = doc["windows"][0]
    return [[flat[(i * h + j) * w:(i * h + j + 1) * w] for j in range(h)] for i in range(t)]


def test_stream_previews_yields_each_step_and_the_variants_match(client):
    video = client.videos.create(**MASKGIT, seed=5, previews=True)
    previews = list(client.videos.stream_previews(video.id))
    assert [p.step for p in previews] == [1, 2, 3, 4] and {p.steps for p in previews} == {4}
    assert all(p.id == video.id for p in previews)
    decided = [p.decided for p in previews]
    assert decided == sorted(decided) and 0 < decided[0] < 1 and decided[-1] == 1.0
    assert all(p.image_type == "image/png" and p.image_bytes[:8] == PNG_MAGIC for p in previews)
    assert previews[0].image != previews[-1].image  # the clip took form step by step
    t, h, w = previews[-1].token_grid
    assert len(previews[-1].confidence) == t * h * w and len(previews[-1].confidence_map()) == t
    assert client.videos.retrieve(video.id).status == "completed"

    # The variants: the latest preview (PNG), the final confidence map and the tokens (JSON).
    assert client.videos.download_content(video.id, variant="preview") == previews[-1].image_bytes
    confidence = json.loads(client.videos.download_content(video.id, variant="confidence"))
    assert confidence["token_grid"] == [t, h, w] and confidence["windows"][0] == list(previews[-1].confidence)
    assert len(tokens_of(client, video.id)) == t

    # stream_events(previews=True): both kinds, each step's preview before the job event that follows it
    items = list(client.videos.stream_events(video.id, previews=True))
    assert [i.step for i in items if isinstance(i, Preview)] == [1, 2, 3, 4]
    assert isinstance(items[-1], Video) and items[-1].status == "completed"
    assert all(isinstance(i, Video) for i in client.videos.stream_events(video.id))  # not asked: no previews


def test_edit_keeps_every_token_outside_the_box(client):
    source = client.videos.create(**MASKGIT, seed=2, wait=60)
    # The right half of a 32x32 clip: token columns 4..7 of 8 (4-pixel tokens) are generated again.
    edited = client.videos.edit(source.id, mask=[0.5, 0.0, 1.0, 1.0], seed=9,
                                sampler={"method": "maskgit", "steps": 4}, wait=60)
    assert edited.status == "completed" and edited.task == "inpainting"
    assert edited.request["edit_from"] == source.id and edited.request["mask"] == {"box": [0.5, 0.0, 1.0, 1.0]}
    before, after = tokens_of(client, source.id), tokens_of(client, edited.id)
    w = len(before[0][0])
    kept = [(t, y, x) for t in range(len(before)) for y in range(len(before[0])) for x in range(w // 2)]
    assert all(after[t][y][x] == before[t][y][x] for t, y, x in kept)
    changed = [(t, y, x) for t in range(len(before)) for y in range(len(before[0])) for x in range(w // 2, w)]
    assert any(after[t][y][x] != before[t][y][x] for t, y, x in changed)
