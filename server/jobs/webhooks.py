"""Webhook deliveries as job-store records: which deliveries a job change makes (`collect`), and
how a finished one is counted on its job. Both job stores write them with the job change that
made them; server/webhooks.py sends them."""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from typing import Any

from .base import Job
from .view import job_object

# The terminal statuses are the default events. `expired` (a deadline passed before the job ran) is
# terminal here too, so it is one of them, beside the spec's completed, failed and canceled.
TERMINAL_EVENTS = ("completed", "failed", "canceled", "expired")
EVENTS = ("started", "progress") + TERMINAL_EVENTS
DEFAULT_EVENTS = TERMINAL_EVENTS


@dataclass
class Delivery:
    id: str  # the webhook-id: "msg_" + job id + event, the same on every attempt
    job_id: str
    url: str
    event: str
    body: str  # the JSON payload, fixed when the event happened
    created_at: float
    attempts: int = 0
    last_error: str | None = None

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str | bytes) -> "Delivery":
        return cls(**json.loads(text))


def webhook_config(url: str, events: list[str] | None, base: str, progress_step: int) -> dict[str, Any]:
    """What a job keeps of its webhook (`Job.webhook`); `base`: the server's public URL, for the
    job object's `urls` in the bodies."""
    return {"url": url, "events": list(events or DEFAULT_EVENTS), "base": base, "progress_step": progress_step,
            "sent": [], "delivered": 0, "failed": 0, "last": None}


def collect(job: Job, now: float) -> list[Delivery]:
    """The deliveries this version of `job` adds (and records them in `job.webhook["sent"]`)."""
    hook = job.webhook
    if hook is None:
        return []
    wanted, sent = hook["events"], hook["sent"]
    names = []
    if "started" in wanted and job.started_at is not None and "started" not in sent:
        names.append("started")
    if "progress" in wanted and job.status == "in_progress" and job.progress > 0:
        step = hook["progress_step"]
        name = f"progress.{job.progress // step * step}"
        if job.progress >= step and name not in sent:
            names.append(name)
    if job.status in wanted and job.status in TERMINAL_EVENTS and job.status not in sent:
        names.append(job.status)
    out = []
    for name in names:
        sent.append(name)
        event = name.split(".")[0]
        body = json.dumps({"type": f"video.{event}",
                           "timestamp": datetime.fromtimestamp(now, timezone.utc).isoformat(timespec="milliseconds"),
                           "data": job_object(job, hook["base"])}, separators=(",", ":"))
        out.append(Delivery(id=f"msg_{job.id}_{name}", job_id=job.id, url=hook["url"], event=event, body=body,
                            created_at=now))
    return out


def record_outcome(job: Job, delivery: Delivery, delivered: bool, detail: str, now: float) -> None:
    """Counts a delivery's final outcome on the job (its `webhook_status`)."""
    hook = job.webhook
    if hook is None:
        return
    hook["delivered" if delivered else "failed"] += 1
    hook["last"] = {"event": delivery.event, "delivered": delivered, "attempts": delivery.attempts,
                    "detail": detail, "at": now}
