"""Webhooks: a job tells a URL when it starts, progresses and ends (docs/api.md, "Webhooks").

How a delivery is born, kept and sent:
1. A create request names `webhook` and `webhook_events`; the job keeps them in `Job.webhook`.
2. Every time a job store writes a job, it first calls `collect(job)`, which compares the job's
   state with the events already recorded in `Job.webhook["sent"]` and returns the new
   deliveries (their bodies are the job object at that moment). The store writes them in the
   same transaction as the job (Redis: MULTI; the embedded queue: in process), so a job change
   and its delivery are never apart, and a delivery id is fixed once (job id + event).
3. A delivery loop (`run_deliveries`, in every API process and every worker) takes due deliveries
   from the store under a lease, POSTs them, and reports: delivered, retry at a later time
   (exponential backoff, for at most `webhook_retry_seconds`), or given up. A process that dies
   mid-delivery leaves the lease to lapse; another process sends it again, with the same
   `webhook-id` (at least once; receivers dedupe on it).

Signing follows the Standard Webhooks spec: `webhook-id`, `webhook-timestamp` (Unix seconds) and
`webhook-signature: v1,<base64 HMAC-SHA256 of "id.timestamp.body">`, keyed with the base64 part
of the `whsec_...` secret (settings.webhook_secret). Outbound safety: no redirects followed, a
timeout, the answer's body never read, and no delivery to loopback, link-local or private
addresses unless settings.webhook_allow_private_addresses (checked when the request is made and
again before each attempt, against every address the host resolves to).
"""
from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import ipaddress
import logging
import socket
import time
from typing import Protocol
from urllib.parse import urlsplit

from server.errors import KinetoscopeError
from server.jobs.webhooks import Delivery

log = logging.getLogger("kinetoscope.webhooks")

MAX_URL_CHARS = 2048


class WebhookRefused(KinetoscopeError):
    """A webhook URL this server will not deliver to."""

    status, code = 422, "invalid_webhook"


# --- signing ---------------------------------------------------------------------------------------

def _key(secret: str) -> bytes:
    return base64.b64decode(secret.removeprefix("whsec_"))


def sign(secret: str, msg_id: str, timestamp: int, body: str | bytes) -> str:
    """The `webhook-signature` header value: `v1,<base64 HMAC-SHA256 of "id.timestamp.body">`."""
    payload = body.encode() if isinstance(body, str) else body
    digest = hmac.new(_key(secret), f"{msg_id}.{timestamp}.".encode() + payload, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def check_secret(secret: str) -> None:
    try:
        if not secret.startswith("whsec_") or not _key(secret):
            raise ValueError
    except ValueError:
        raise ValueError("webhook_secret must be whsec_ followed by base64 (for example whsec_ + "
                         "base64 of 24 random bytes)") from None


# --- where deliveries may go -----------------------------------------------------------------------

def _forbidden(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%")[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return (ip.is_loopback or ip.is_link_local or ip.is_private or ip.is_multicast or ip.is_reserved
            or ip.is_unspecified)


def check_url(url: str, allow_private: bool) -> None:
    """WebhookRefused unless `url` is http(s), not too long, and (unless `allow_private`) every
    address its host resolves to is public. Resolves the host: call it off the event loop."""
    if len(url) > MAX_URL_CHARS:
        raise WebhookRefused(f"webhook is longer than {MAX_URL_CHARS} characters", param="webhook")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise WebhookRefused("webhook must be an http:// or https:// URL with a host", param="webhook")
    if parts.username or parts.password:
        raise WebhookRefused("webhook must not carry credentials in the URL", param="webhook")
    if allow_private:
        return
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
        addresses = {info[4][0] for info in socket.getaddrinfo(parts.hostname, port, type=socket.SOCK_STREAM)}
    except (socket.gaierror, UnicodeError, ValueError) as exc:
        raise WebhookRefused(f"webhook host {parts.hostname!r} does not resolve ({exc})", param="webhook") from None
    bad = sorted(a for a in addresses if _forbidden(a))
    if bad:
        raise WebhookRefused(f"webhook host {parts.hostname!r} resolves to a loopback, link-local or private "
                             f"address ({bad[0]}); this server delivers only to public addresses", param="webhook")


# --- sending ---------------------------------------------------------------------------------------

class Outbox(Protocol):
    """What a job store offers the delivery loop (both queues implement it)."""

    async def webhooks_due(self, limit: int, lease_seconds: float) -> list[Delivery]:
        """Up to `limit` deliveries whose time has come, leased for `lease_seconds`, each with
        the attempt about to be made already counted in `attempts` (stored, so a sender killed
        mid-attempt still has it counted)."""
        ...

    async def webhook_retry(self, delivery: Delivery, at: float) -> None: ...

    async def webhook_finished(self, delivery: Delivery, delivered: bool, detail: str) -> None:
        """Removes the delivery and counts its outcome on its job."""
        ...


def backoff(attempts: int, base: float, cap: float = 300.0) -> float:
    """Seconds before attempt `attempts + 1`: base, 2 base, 4 base ... at most `cap`."""
    return min(cap, base * 2 ** max(0, attempts - 1))


async def deliver_once(client, delivery: Delivery, settings) -> tuple[bool, str]:
    """One attempt -> (delivered, detail). Never raises for the receiver's faults."""
    try:
        await asyncio.to_thread(check_url, delivery.url, settings.webhook_allow_private_addresses)
    except WebhookRefused as exc:
        return False, exc.message
    timestamp = int(time.time())
    headers = {"content-type": "application/json", "user-agent": "kinetoscope-webhooks/1",
               "webhook-id": delivery.id, "webhook-timestamp": str(timestamp),
               "webhook-signature": sign(settings.webhook_secret, delivery.id, timestamp, delivery.body)}
    try:
        async with client.stream("POST", delivery.url, content=delivery.body.encode(), headers=headers) as response:
            status = response.status_code  # the body is never read: a receiver cannot make us hold much
    except Exception as exc:  # noqa: BLE001 - a timeout, a refused connection...: retried
        return False, f"{type(exc).__name__}: {exc}"[:200]
    return 200 <= status < 300, f"HTTP {status}"


async def run_deliveries(outbox: Outbox, settings, stop: asyncio.Event) -> None:
    """Sends due deliveries until `stop` is set (one loop per process; several processes share
    one Redis outbox through the leases)."""
    import httpx

    from server import metrics

    timeout = settings.webhook_timeout_seconds
    async with httpx.AsyncClient(follow_redirects=False, timeout=timeout, trust_env=False) as client:
        while not stop.is_set():
            try:
                due = await outbox.webhooks_due(settings.webhook_batch, lease_seconds=timeout + 30)
            except Exception as exc:  # noqa: BLE001 - the store is down: try again shortly
                log.warning("webhook outbox unavailable error=%r", exc)
                due = []
            if due:
                await asyncio.gather(*(_attempt(client, outbox, d, settings, metrics) for d in due))
                continue
            try:
                await asyncio.wait_for(stop.wait(), settings.webhook_poll_seconds)
            except asyncio.TimeoutError:
                pass


async def _attempt(client, outbox: Outbox, delivery: Delivery, settings, metrics) -> None:
    delivered, detail = await deliver_once(client, delivery, settings)
    delivery.last_error = None if delivered else detail
    try:
        if delivered:
            await outbox.webhook_finished(delivery, True, detail)
            metrics.webhook_deliveries_total.labels(outcome="delivered").inc()
            log.info("webhook delivered id=%s job_id=%s attempts=%d", delivery.id, delivery.job_id, delivery.attempts)
        elif time.time() - delivery.created_at + backoff(delivery.attempts, settings.webhook_backoff_seconds) \
                > settings.webhook_retry_seconds:
            await outbox.webhook_finished(delivery, False, detail)
            metrics.webhook_deliveries_total.labels(outcome="failed").inc()
            log.warning("webhook given up id=%s job_id=%s attempts=%d last=%s", delivery.id, delivery.job_id,
                        delivery.attempts, detail)
        else:
            await outbox.webhook_retry(delivery, time.time() + backoff(delivery.attempts, settings.webhook_backoff_seconds))
            metrics.webhook_deliveries_total.labels(outcome="retried").inc()
            log.info("webhook retry id=%s job_id=%s attempts=%d last=%s", delivery.id, delivery.job_id,
                     delivery.attempts, detail)
    except Exception as exc:  # noqa: BLE001 - the store hiccuped: the lease lapses, it is sent again
        log.warning("webhook outcome not recorded id=%s error=%r", delivery.id, exc)
