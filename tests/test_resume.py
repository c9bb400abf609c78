"""Resumable decoding on the demo model: a run resumed from any checkpoint (mid-window, at a window
boundary, in a later window) makes exactly the frames, tokens and confidence of the uninterrupted
run; checkpoints survive their byte form; progress goes on from where it was."""
from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest

from server.api.validation import pipeline_request
from server.pipeline import RunLog
from server.resume import Checkpoint
from server.samplers import SamplerOptions

REPO = Path(__file__).resolve().parent.parent / "model_repository"

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def pipeline():
    from server.runtime import load_runtime
    from server.settings import Settings

    if not (REPO / "moving-digits" / "manifest.json").is_file():
        pytest.skip("no demo model: run `make model`")
    runtime = load_runtime(Settings(model_repository=REPO))
    yield runtime.pipelines[runtime.catalogue.default_model]
    runtime.close()


def _clip(pipeline):
    req = pipeline_request(pipeline.manifest, "class_conditional", 5, sampler=SamplerOptions(steps=4), class_label=2)
    return asyncio.run(pipeline.generate(req, None))


@pytest.mark.parametrize("task,frames,sampler", [
    ("class_conditional", 16, SamplerOptions(steps=12, guidance_scale=2.0)),
    ("frame_prediction", 24, SamplerOptions(steps=6)),  # two windows: the second extends the first
    ("frame_prediction", 24, SamplerOptions(method="autoregressive", temperature=0.5)),  # window boundaries only
])
def test_a_resumed_run_is_the_uninterrupted_run(pipeline, task, frames, sampler):
    m = pipeline.manifest
    fields = {"class_label": 3} if task == "class_conditional" else {"condition_frames": 4}
    req = pipeline_request(m, task, 21, sampler=sampler, num_frames=frames, **fields)
    source = None if task == "class_conditional" else _clip(pipeline)
    saved: list[bytes] = []
    log = RunLog()
    full = asyncio.run(pipeline.generate(req, source, log=log, on_checkpoint=lambda c: saved.append(c.to_bytes())))
    points = [Checkpoint.from_bytes(b) for b in saved]
    if sampler.method == "maskgit":
        assert len(points) == len(log.tokens) * (sampler.steps + 1)  # every step, and every window's end
    else:
        assert [p.window for p in points] == [1, 2] and all(p.state is None for p in points)
    chosen = [p for p in points if p.window < len(log.tokens)]  # resuming from the last one would redo nothing
    chosen = [chosen[len(chosen) // 2], chosen[-1]] + ([chosen[0]] if len(chosen) > 2 else [])
    for point in chosen:
        progress: list[float] = []
        resumed_log = RunLog()
        again = asyncio.run(pipeline.generate(req, source, progress.append, log=resumed_log, resume=point))
        assert np.array_equal(again, full), (point.window, point.step)
        assert all(np.array_equal(a, b) for a, b in zip(resumed_log.tokens, log.tokens))
        if sampler.method == "maskgit":
            assert all(np.array_equal(a, b) for a, b in zip(resumed_log.confidence, log.confidence))
        assert progress == sorted(progress) and progress[-1] == pytest.approx(1.0)
        total = len(log.tokens) * ((sampler.steps if sampler.method == "maskgit" else m.num_tokens) + 2)
        assert progress[0] > point.units / total - 1e-9  # it goes on from the checkpoint, not from zero


def test_a_job_whose_worker_is_killed_resumes_on_another_and_makes_the_same_bytes(redis_server, pipeline):
    """SIGKILL a (slowed) worker at step >= 6 of a 12-step job; another worker resumes it at that
    step, and its MP4 is the uninterrupted run's, byte for byte."""
    import os
    import signal
    import subprocess
    import sys

    from server.api.validation import validate_request
    from server.jobs.base import Job, new_job_id
    from server.jobs.redis import RedisQueue
    from server.runtime import Runtime
    from server.settings import Settings

    tests = Path(__file__).resolve().parent
    prefix = f"resume{os.getpid()}:"
    request = validate_request({"task": "class_conditional", "class_label": 6, "seed": 13,
                                "sampler": {"method": "maskgit", "steps": 12}}, pipeline.manifest, Settings())
    job = Job(id=new_job_id(), model=pipeline.manifest.model_id, request=request)

    def spawn(name: str, delay: float) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, str(tests / "resume_worker_proc.py"), redis_server.url, prefix, name,
                                 str(delay)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                cwd=tests.parent)

    async def run():
        q = RedisQueue(redis_server.url, prefix=prefix, lease_seconds=2.0)
        await q.submit(job)
        first = spawn("w-first", 0.4)
        progress, killed_at = [], None
        try:
            for _ in range(1200):  # until the first worker has checkpointed step 6
                data = await q.get_checkpoint(job.id)
                current = await q.get(job.id)
                progress.append(current.progress)
                if data and Checkpoint.from_bytes(data).step >= 6:
                    killed_at = Checkpoint.from_bytes(data).step
                    first.send_signal(signal.SIGKILL)
                    break
                await asyncio.sleep(0.05)
            first.wait(10)
            assert killed_at is not None, first.stderr.read()
            second = spawn("w-second", 0.0)
            try:
                for _ in range(1200):
                    current = await q.get(job.id)
                    progress.append(current.progress)
                    if current.terminal:
                        break
                    await asyncio.sleep(0.05)
            finally:
                second.send_signal(signal.SIGTERM)
                _, log = second.communicate(timeout=30)
            return killed_at, current, await q.get_content(job.id, "video"), progress, log
        finally:
            if first.poll() is None:
                first.kill()
            await q.close()

    killed_at, done, video, progress, log = asyncio.run(run())
    assert done.status == "completed" and done.attempts == 2 and done.lost_leases == 1, done
    resumed = [line for line in log.splitlines() if "job resumed" in line]
    assert resumed and int(resumed[0].split("step=")[1].split()[0]) >= killed_at >= 6, log
    assert progress == sorted(progress)  # progress never went back across the reclaim
    runtime = Runtime(Settings(model_repository=REPO), None, {pipeline.manifest.model_id: pipeline})
    uninterrupted = asyncio.run(runtime.generate(job, None, lambda f: None, lambda: False))
    assert video == uninterrupted.video
