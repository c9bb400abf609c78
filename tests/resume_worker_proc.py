"""A worker process on the demo model for the resumable-decoding test:

    python tests/resume_worker_proc.py REDIS_URL PREFIX WORKER_ID STEP_DELAY_S

It runs the real runtime; STEP_DELAY_S > 0 makes each masked-prior call that much slower (only
the timing changes, so a test can kill it halfway through a job; the tokens do not)."""
from __future__ import annotations

import asyncio
import logging
import signal
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent / "model_repository"


async def main(url: str, prefix: str, worker_id: str, delay: float) -> None:
    from server.decoding import MaskGITStepper
    from server.jobs.redis import RedisQueue
    from server.runtime import load_runtime
    from server.settings import Settings
    from server.worker import run_worker

    if delay > 0:
        forward = MaskGITStepper.forward

        def slow(self, batch):
            time.sleep(delay)
            return forward(self, batch)

        MaskGITStepper.forward = slow
    runtime = load_runtime(Settings(model_repository=REPO, batching=False))
    queue = RedisQueue(url, prefix=prefix, lease_seconds=2.0)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    print("ready", flush=True)
    try:
        await run_worker(queue, runtime.generate, worker_id=worker_id, concurrency=1, heartbeat_seconds=0.5,
                         stop=stop, progress_push_seconds=0.05, resumable=True)
    finally:
        await queue.close()
        runtime.close()


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    url, prefix, worker_id, delay = sys.argv[1:5]
    asyncio.run(main(url, prefix, worker_id, float(delay)))
