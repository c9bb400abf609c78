"""The job object of docs/api.md, built from a Job: what GET /v1/videos/{id} returns, what SSE
events carry and what a webhook delivers. Pure, so the API and the workers build the same one."""
from __future__ import annotations

from typing import Any

from .base import Job

# The job object's keys, in api.md's order; Job's bookkeeping (attempts, priority...) stays inside.
JOB_FIELDS = ("id", "object", "model", "task", "status", "progress", "queue_position", "created_at",
              "started_at", "completed_at", "expires_at", "error", "size", "num_frames", "fps", "seed",
              "request", "metadata", "truncated", "webhook_status", "urls")


def job_urls(base: str, job_id: str) -> dict[str, str]:
    job = f"{base}/v1/videos/{job_id}"
    return {"self": job, "content": f"{job}/content", "thumbnail": f"{job}/content?variant=thumbnail",
            "events": f"{job}/events", "cancel": f"{job}/cancel"}


def job_object(job: Job, base: str, queue_position: int | None = None) -> dict[str, Any]:
    """`base`: the server's public URL (for the absolute `urls`); `queue_position`: only while queued."""
    data = job.to_dict()
    data["object"] = "video"
    data["queue_position"] = queue_position if job.status == "queued" else None
    data["webhook_status"] = webhook_status(job)
    data["urls"] = job_urls(base, job.id)
    return {key: data.get(key) for key in JOB_FIELDS}


def webhook_status(job: Job) -> dict[str, Any] | None:
    """What the job object tells of its webhook: where, which events, and how deliveries went."""
    hook = job.webhook
    if hook is None:
        return None
    return {"url": hook["url"], "events": hook["events"], "enqueued": len(hook.get("sent", [])),
            "delivered": hook.get("delivered", 0), "failed": hook.get("failed", 0), "last": hook.get("last")}
