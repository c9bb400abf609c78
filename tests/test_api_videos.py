"""The /v1/videos job endpoints: create, poll, list, stream, download, cancel, delete."""
from __future__ import annotations

import asyncio
import base64
import json
from server.jobs.base import JobResult

B64 = base64.b64encode


async def finish(queue, job_id: str, video: bytes, thumbnail: bytes) -> None:
    """Plays the worker's part for one job (claims the next job, which must be this one)."""
    job = await queue.claim("test-worker", timeout=1.0)
    assert job is not None and job.id == job_id
    await queue.complete(job_id, "test-worker", JobResult(video, thumbnail))


async def test_create_returns_202_job_object_with_normalized_request(make_api):
    async with make_api() as api:
        r = await api.client.post("/v1/videos", json={"task": "class_conditional", "class_label": 3})
        assert r.status_code == 202
        job = r.json()
        assert list(job) == ["id", "object", "model", "task", "status", "progress", "queue_position",
                             "created_at", "started_at", "completed_at", "expires_at", "error", "size",
                             "num_frames", "fps", "seed", "request", "metadata", "truncated", "webhook_status", "urls"]
        assert job["object"] == "video" and job["status"] == "queued" and job["queue_position"] == 0
        assert job["metadata"] == {} and job["truncated"] is None
        here = f"http://test/v1/videos/{job['id']}"
        assert job["urls"] == {"self": here, "content": f"{here}/content", "thumbnail": f"{here}/content?variant=thumbnail",
                               "events": f"{here}/events", "cancel": f"{here}/cancel"}
        assert job["model"] == "demo" and job["size"] == "32x32" and job["num_frames"] == 16 and job["fps"] == 8
        assert 0 <= job["seed"] < 2**31
        assert job["request"] == {
            "task": "class_conditional", "class_label": 3, "mask": None, "condition_frames": None,
            "num_frames": 16, "size": "32x32", "fps": 8, "seed": job["seed"],
            "sampler": {"method": "maskgit", "steps": 12, "temperature": 1.0, "choice_temperature": 4.5,
                        "guidance_scale": 0.0, "top_k": None},
            "priority": "normal", "deadline_seconds": 3600.0, "output_format": "mp4", "input_video_id": None, "has_input": False,
            "previews": False, "edit_from": None}
        assert r.headers["Location"] == f"/v1/videos/{job['id']}"
        assert r.headers["Retry-After"] == "1" and r.headers["X-Poll-Interval"] == "1"
        got = await api.client.get(f"/v1/videos/{job['id']}")
        assert got.status_code == 200 and got.json() == job
        assert got.headers["X-Poll-Interval"] == "1"


async def test_input_video_is_stored_for_the_worker_and_never_echoed(make_api, api_sample):
    mp4, _ = api_sample
    async with make_api() as api:
        r = await api.client.post("/v1/videos", json={
            "task": "frame_prediction", "input_video": B64(mp4).decode(), "condition_frames": 2,
            "num_frames": 32, "size": "64x64", "seed": 7, "priority": "high",
            "sampler": {"method": "autoregressive", "top_k": 50}})
        assert r.status_code == 202, r.text
        job = r.json()
        assert "input_video" not in job["request"] and job["request"]["has_input"] is True
        assert job["request"]["condition_frames"] == 2 and job["seed"] == 7 and job["size"] == "64x64"
        assert job["request"]["sampler"]["method"] == "autoregressive" and job["request"]["sampler"]["top_k"] == 50
        assert await api.queue.get_input(job["id"]) == mp4


async def test_multipart_upload_with_json_text_mask(make_api, api_sample):
    _, png = api_sample
    async with make_api() as api:
        r = await api.client.post("/v1/videos", files={"input_video": ("frame.png", png, "image/png")},
                                  data={"task": "outpainting", "mask": json.dumps({"box": [0.25, 0.25, 0.75, 0.75]}),
                                        "num_frames": "8", "sampler": json.dumps({"steps": 4}), "class_label": ""})
        assert r.status_code == 202, r.text
        req = r.json()["request"]
        assert req["mask"] == {"box": [0.25, 0.25, 0.75, 0.75]} and req["num_frames"] == 8
        assert req["sampler"]["steps"] == 4 and req["class_label"] is None
        assert await api.queue.get_input(r.json()["id"]) == png


async def test_full_life_cycle_with_the_embedded_worker(make_api, api_sample):
    async with make_api(worker=True) as api:
        r = await api.client.post("/v1/videos", json={"task": "class_conditional", "class_label": 1},
                                  headers={"Prefer": "wait=10"})
        assert r.status_code == 200, r.text
        job = r.json()
        assert job["status"] == "completed" and job["progress"] == 100 and job["queue_position"] is None
        assert job["started_at"] >= job["created_at"] and job["completed_at"] >= job["started_at"]
        assert job["expires_at"] > job["completed_at"]
        assert r.headers["Preference-Applied"] == "wait=10" and "Retry-After" not in r.headers
        video = await api.client.get(f"/v1/videos/{job['id']}/content")
        assert video.status_code == 200 and video.headers["content-type"] == "video/mp4"
        assert video.headers["accept-ranges"] == "bytes" and video.content == api_sample[0]
        thumb = await api.client.get(f"/v1/videos/{job['id']}/content", params={"variant": "thumbnail"})
        assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/png"
        assert thumb.content.startswith(b"\x89PNG")
        # chaining: the finished video is the next job's input
        r2 = await api.client.post("/v1/videos", json={"task": "frame_prediction", "input_video_id": job["id"],
                                                       "condition_frames": 4}, headers={"Prefer": "wait=10"})
        assert r2.status_code == 200 and r2.json()["request"]["input_video_id"] == job["id"]
        assert api.runtime.calls[1][1] == video.content


async def test_prefer_wait_times_out_with_202(make_api):
    async with make_api() as api:  # no worker: the job cannot finish
        r = await api.client.post("/v1/videos", json={"task": "class_conditional", "class_label": 1},
                                  headers={"Prefer": "respond-async, wait=0.2"})
        assert r.status_code == 202 and r.json()["status"] == "queued"
        assert r.headers["Preference-Applied"] == "wait=0.2"
        got = await api.client.get(f"/v1/videos/{r.json()['id']}", headers={"Prefer": "wait=0.1"})
        assert got.status_code == 200 and got.json()["status"] == "queued"


async def test_prefer_wait_is_capped_by_max_wait_seconds(make_api):
    async with make_api(max_wait_seconds=0.1) as api:
        r = await api.client.post("/v1/videos", json={"task": "class_conditional", "class_label": 1},
                                  headers={"Prefer": "wait=3600"})
        assert r.status_code == 202 and r.headers["Preference-Applied"] == "wait=0.1"


async def test_idempotency_key_returns_the_same_job(make_api):
    async with make_api() as api:
        body = {"task": "class_conditional", "class_label": 2}
        first = await api.client.post("/v1/videos", json=body, headers={"Idempotency-Key": "abc"})
        again = await api.client.post("/v1/videos", json=body, headers={"Idempotency-Key": "abc"})
        other = await api.client.post("/v1/videos", json=body, headers={"Idempotency-Key": "xyz"})
        assert first.status_code == again.status_code == 202
        assert again.json()["id"] == first.json()["id"] and again.headers["Idempotent-Replayed"] == "true"
        assert "Idempotent-Replayed" not in first.headers
        assert other.json()["id"] != first.json()["id"]
        listed = (await api.client.get("/v1/videos")).json()
        assert len(listed["data"]) == 2


async def test_list_is_newest_first_and_paginates(make_api):
    async with make_api() as api:
        ids = []
        for label in range(5):
            r = await api.client.post("/v1/videos", json={"task": "class_conditional", "class_label": label})
            ids.append(r.json()["id"])
            await asyncio.sleep(0.002)  # ids are time-prefixed: keep them strictly ordered
        page = (await api.client.get("/v1/videos", params={"limit": 2})).json()
        assert page["object"] == "list" and page["has_more"] is True
        assert [j["id"] for j in page["data"]] == ids[::-1][:2]
        assert page["first_id"] == ids[4] and page["last_id"] == ids[3]
        rest = (await api.client.get("/v1/videos", params={"after": page["last_id"], "limit": 10})).json()
        assert [j["id"] for j in rest["data"]] == ids[::-1][2:] and rest["has_more"] is False
        empty = (await api.client.get("/v1/videos", params={"after": ids[0]})).json()
        assert empty == {"object": "list", "data": [], "has_more": False, "first_id": None, "last_id": None}
        # queue positions follow priority then arrival
        assert [j["queue_position"] for j in rest["data"]] == [2, 1, 0]


async def test_range_requests(make_api, api_sample):
    mp4, png = api_sample
    async with make_api() as api:
        job_id = (await api.client.post("/v1/videos", json={"task": "class_conditional", "class_label": 0})).json()["id"]
        url = f"/v1/videos/{job_id}/content"
        early = await api.client.get(url)
        assert early.status_code == 409 and early.json()["error"]["code"] == "video_not_ready"
        await finish(api.queue, job_id, mp4, png)
        size = len(mp4)
        full = await api.client.get(url)
        assert full.status_code == 200 and full.content == mp4 and full.headers["content-length"] == str(size)
        part = await api.client.get(url, headers={"Range": "bytes=0-9"})
        assert part.status_code == 206 and part.content == mp4[:10]
        assert part.headers["content-range"] == f"bytes 0-9/{size}" and part.headers["content-length"] == "10"
        tail = await api.client.get(url, headers={"Range": "bytes=-5"})
        assert tail.status_code == 206 and tail.content == mp4[-5:]
        assert tail.headers["content-range"] == f"bytes {size - 5}-{size - 1}/{size}"
        open_end = await api.client.get(url, headers={"Range": f"bytes={size - 3}-"})
        assert open_end.status_code == 206 and open_end.content == mp4[-3:]
        past_end = await api.client.get(url, headers={"Range": f"bytes=10-{size + 100}"})
        assert past_end.status_code == 206 and past_end.content == mp4[10:]
        bad = await api.client.get(url, headers={"Range": f"bytes={size}-"})
        assert bad.status_code == 416 and bad.headers["content-range"] == f"bytes */{size}"
        assert bad.json()["error"]["code"] == "range_not_satisfiable"
        ignored = await api.client.get(url, headers={"Range": "bytes=0-1,5-6"})  # multi-range: whole file
        assert ignored.status_code == 200 and ignored.content == mp4
        head = await api.client.head(url)
        assert head.status_code == 200 and head.headers["content-length"] == str(size)
        thumb = await api.client.get(url, params={"variant": "thumbnail"}, headers={"Range": "bytes=0-7"})
        assert thumb.status_code == 206 and thumb.content == png[:8]
        wrong = await api.client.get(url, params={"variant": "poster"})
        assert wrong.status_code == 422 and wrong.json()["error"]["param"] == "variant"


async def test_events_stream_each_change_and_close_at_the_end(make_api):
    async with make_api(worker=True, runtime=None) as api:
        api.runtime.step_seconds = 0.3  # slow enough that the worker pushes progress in between
        job_id = (await api.client.post("/v1/videos", json={"task": "class_conditional", "class_label": 4})).json()["id"]
        r = await api.client.get(f"/v1/videos/{job_id}/events")
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        events = [json.loads(block[len("data: "):]) for block in r.text.split("\n\n") if block.startswith("data: ")]
        statuses = [e["status"] for e in events]
        assert statuses[-1] == "completed" and "in_progress" in statuses
        progress = [e["progress"] for e in events]
        assert progress == sorted(progress) and progress[-1] == 100 and len(set(progress)) > 2
        assert all(e["id"] == job_id and e["object"] == "video" for e in events)


async def test_cancel_queued_and_running_jobs_idempotently(make_api):
    async with make_api(worker=True) as api:
        api.runtime.hold.clear()  # jobs block inside generate until canceled
        running = (await api.client.post("/v1/videos", json={"task": "class_conditional", "class_label": 0})).json()
        for _ in range(200):
            if (await api.client.get(f"/v1/videos/{running['id']}")).json()["status"] == "in_progress":
                break
            await asyncio.sleep(0.01)
        r = await api.client.post(f"/v1/videos/{running['id']}/cancel")
        assert r.status_code == 200 and r.json()["status"] in ("in_progress", "canceled")
        final = await api.client.get(f"/v1/videos/{running['id']}", headers={"Prefer": "wait=5"})
        assert final.json()["status"] == "canceled"
        again = await api.client.post(f"/v1/videos/{running['id']}/cancel")
        assert again.status_code == 200 and again.json()["status"] == "canceled"
        content = await api.client.get(f"/v1/videos/{running['id']}/content")
        assert content.status_code == 409


async def test_cancel_queued_job_and_delete(make_api):
    async with make_api() as api:
        job_id = (await api.client.post("/v1/videos", json={"task": "class_conditional", "class_label": 0})).json()["id"]
        r = await api.client.post(f"/v1/videos/{job_id}/cancel")
        assert r.status_code == 200 and r.json()["status"] == "canceled" and "Retry-After" not in r.headers
        d = await api.client.delete(f"/v1/videos/{job_id}")
        assert d.status_code == 200 and d.json() == {"id": job_id, "object": "video.deleted", "deleted": True}
        for method, path in [("GET", ""), ("GET", "/content"), ("GET", "/events"), ("POST", "/cancel"), ("DELETE", "")]:
            gone = await api.client.request(method, f"/v1/videos/{job_id}{path}")
            assert gone.status_code == 404, (method, path)
            assert gone.json()["error"]["code"] == "video_not_found"


async def test_queue_full_is_429_with_retry_after_and_idempotent_repeat_still_works(make_api):
    async with make_api(max_queue_length=2, retry_after_seconds=7) as api:
        body = {"task": "class_conditional", "class_label": 0}
        first = await api.client.post("/v1/videos", json=body, headers={"Idempotency-Key": "k1"})
        await api.client.post("/v1/videos", json=body)
        full = await api.client.post("/v1/videos", json=body)
        assert full.status_code == 429 and full.headers["Retry-After"] == "7"
        assert full.json()["error"]["type"] == "rate_limit_error" and full.json()["error"]["code"] == "queue_full"
        repeat = await api.client.post("/v1/videos", json=body, headers={"Idempotency-Key": "k1"})
        assert repeat.status_code == 202 and repeat.json()["id"] == first.json()["id"]
