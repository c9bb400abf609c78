"""A worker process for the queue tests: run_worker over a RedisQueue with a slow fake generate.

    python tests/jobs_worker_proc.py REDIS_URL PREFIX WORKER_ID LEASE_S HEARTBEAT_S STEPS STEP_S

The fake makes its bytes from the job alone, so a job finished by any worker, after any number
of takeovers, has the same content (`expected_content`). It stands in for the model here only
because these tests are about the queue; the real pipeline is tested end to end elsewhere.
"""
from __future__ import annotations

import asyncio
import hashlib
import logging
import signal
import sys

from server.jobs.base import Job, JobCanceled, JobResult


def expected_content(job: Job) -> tuple[bytes, bytes]:
    digest = hashlib.sha256(f"{job.id}:{job.seed}".encode()).digest()
    return b"MP4 " + digest * 4, b"PNG " + digest


def slow_generate(steps: int, step_seconds: float, log: list[str] | None = None):
    """A generate that takes `steps` steps of `step_seconds`, honouring should_stop."""

    async def generate(job, input_video, on_progress, should_stop):
        for step in range(steps):
            if should_stop():
                raise JobCanceled()
            await asyncio.sleep(step_seconds)
            if log is not None:
                log.append(f"{job.id}:{step}")
            on_progress((step + 1) / steps)
        return JobResult(*expected_content(job))

    return generate


async def main(url: str, prefix: str, worker_id: str, lease: float, heartbeat: float,
               steps: int, step_seconds: float) -> None:
    from server.jobs.redis import RedisQueue
    from server.worker import run_worker

    queue = RedisQueue(url, prefix=prefix, lease_seconds=lease)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    print("ready", flush=True)
    try:
        await run_worker(queue, slow_generate(steps, step_seconds), worker_id=worker_id,
                         concurrency=2, heartbeat_seconds=heartbeat, stop=stop)
    finally:
        await queue.close()


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    url, prefix, worker_id, lease, heartbeat, steps, step_seconds = sys.argv[1:8]
    asyncio.run(main(url, prefix, worker_id, float(lease), float(heartbeat), int(steps),
                     float(step_seconds)))
