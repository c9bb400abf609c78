"""Job queues: `open_queue(settings)` picks Redis when `settings.redis_url` is set, else the
embedded in-process queue. Both implement `base.JobQueue`."""
from __future__ import annotations

from typing import Callable

from .base import (PRIORITIES, STATUSES, TERMINAL, InputError, Job, JobCanceled, JobQueue,
                   QueueFull, new_job_id)
from .memory import MemoryQueue

__all__ = ["open_queue", "Job", "JobQueue", "QueueFull", "JobCanceled", "InputError",
           "MemoryQueue", "new_job_id", "PRIORITIES", "STATUSES", "TERMINAL"]


def open_queue(settings, on_event: Callable[[str], None] | None = None) -> JobQueue:
    """The queue the settings ask for. `on_event(name)` is called in this process with
    "reclaimed", "retried", "dead" or "expired" (see `JobQueue.counters` for totals across processes)."""
    if settings.redis_url:
        from .redis import RedisQueue  # only Redis deployments import redis-py

        return RedisQueue.from_settings(settings, on_event=on_event)
    return MemoryQueue.from_settings(settings, on_event=on_event)
