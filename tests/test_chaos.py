"""Chaos, bounded: 40 jobs (16 and 64 frames) on the demo model through a real API process and two
real worker processes over a private Redis (AOF, appendfsync always), while a random worker is
SIGKILLed 10 times and Redis is killed and restarted twice. Every job must end completed, once,
with a decodable MP4; while Redis is down the API answers 503 with Retry-After, never 500.
Prints the figures."""
from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from conftest import RedisServer
from live_server import free_port

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
JOBS = 40
KILLS = 10
REDIS_RESTARTS = 2


def _worker(url: str, name: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(ROOT / "tests" / "resume_worker_proc.py"), url, "kinetoscope:", name,
                             "0.05"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT)


def _api(url: str, port: int) -> subprocess.Popen:
    env = {**os.environ, "KINETOSCOPE_REDIS_URL": url, "KINETOSCOPE_LEASE_SECONDS": "2"}
    return subprocess.Popen([sys.executable, "-m", "cli", "serve", "--port", str(port), "--model-repository",
                             str(ROOT / "model_repository")], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, cwd=ROOT)


def _wait_ready(base: str, seconds: float = 120) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError("the API did not become ready")


def test_every_job_survives_worker_kills_and_redis_restarts(tmp_path):
    import shutil

    from server.video import decode_video

    if not (ROOT / "model_repository" / "moving-digits" / "manifest.json").is_file():
        pytest.skip("no demo model: run `make model`")
    binary = shutil.which("redis-server")
    if not binary:
        pytest.skip("redis-server not installed")
    redis = RedisServer(binary, free_port(), tmp_path)
    redis.start()
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    api = _api(redis.url, port)
    workers = [_worker(redis.url, f"w{i}") for i in range(2)]
    rng = random.Random(7)
    figures = {"kills": 0, "redis_restarts": 0, "503_while_down": 0, "5xx_other": 0}
    try:
        _wait_ready(base)
        ids = []
        with httpx.Client(base_url=base, timeout=30) as client:
            # 4 MaskGIT steps: the 40 jobs still take ~40 s of both workers' time, far past the ~15 s of
            # kills and restarts, so every event lands while jobs run (8 steps only made that ~60 s).
            for i in range(JOBS):
                body = {"task": "class_conditional", "class_label": i % 10, "seed": i, "num_frames": 16 if i % 2 else 64,
                        "sampler": {"method": "maskgit", "steps": 4}}
                r = client.post("/v1/videos", json=body)
                assert r.status_code == 202, r.text
                ids.append(r.json()["id"])
            events = ["kill"] * KILLS + ["redis"] * REDIS_RESTARTS
            rng.shuffle(events)
            for event in events:
                time.sleep(rng.uniform(0.5, 1.5))
                if event == "kill":
                    k = rng.randrange(len(workers))
                    workers[k].send_signal(signal.SIGKILL)
                    workers[k].wait(10)
                    workers[k] = _worker(redis.url, f"w{k}-{figures['kills']}")
                    figures["kills"] += 1
                else:
                    redis.kill()
                    for _ in range(3):  # the API refuses with 503 + Retry-After while Redis is down
                        r = client.post("/v1/videos", json={"task": "class_conditional", "class_label": 1})
                        if r.status_code == 503 and "retry-after" in r.headers:
                            figures["503_while_down"] += 1
                        elif r.status_code >= 500:
                            figures["5xx_other"] += 1
                    time.sleep(1.0)
                    redis.start()
                    figures["redis_restarts"] += 1
            deadline = time.monotonic() + 600
            pending = set(ids)
            jobs = {}
            while pending and time.monotonic() < deadline:
                for job_id in sorted(pending):
                    try:
                        r = client.get(f"/v1/videos/{job_id}")
                    except httpx.HTTPError:
                        continue
                    if r.status_code == 200 and r.json()["status"] in ("completed", "failed", "canceled", "expired"):
                        jobs[job_id] = r.json()
                        pending.discard(job_id)
                time.sleep(0.5)
            assert not pending, f"{len(pending)} jobs never finished"
            assert {j["status"] for j in jobs.values()} == {"completed"}, \
                {i: (j["status"], j["error"]) for i, j in jobs.items() if j["status"] != "completed"}
            for job_id, job in jobs.items():
                video = client.get(f"/v1/videos/{job_id}/content")
                assert video.status_code == 200
                frames = decode_video(video.content, max_bytes=1 << 24, max_frames=256, max_pixels=1 << 20).frames
                assert len(frames) == job["num_frames"]
        figures["jobs_completed"] = len(jobs)
        print("chaos figures:", figures)
        assert figures["503_while_down"] >= REDIS_RESTARTS and figures["5xx_other"] == 0
    finally:
        for process in [*workers, api]:
            if process.poll() is None:
                process.kill()
                process.wait(10)
        redis.kill()
