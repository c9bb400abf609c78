"""Checking a Kinetoscope webhook delivery (Standard Webhooks signatures).

    from kinetoscope_client import verify_webhook, WebhookVerificationError

    event = verify_webhook(request_body, request_headers, secret="whsec_...")
    if event["type"] == "video.completed":
        video = event["data"]          # the job object, as GET /v1/videos/{id} returns it

A delivery may arrive more than once (retries keep its `webhook-id`): dedupe on it.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from typing import Any, Mapping, Optional, Union

__all__ = ["verify_webhook", "WebhookVerificationError"]


class WebhookVerificationError(Exception):
    """The delivery is not signed with this secret, is too old, or lacks its headers."""


def verify_webhook(payload: Union[bytes, str], headers: Mapping[str, str], secret: str, *,
                   tolerance: float = 300.0, now: Optional[float] = None) -> dict[str, Any]:
    """`payload`: the request body exactly as received; `headers`: the request's headers (any
    case). Returns the parsed event, or raises WebhookVerificationError. `tolerance`: seconds
    the `webhook-timestamp` may differ from now (replay protection)."""
    lower = {k.lower(): v for k, v in headers.items()}
    try:
        msg_id, timestamp, signatures = lower["webhook-id"], lower["webhook-timestamp"], lower["webhook-signature"]
    except KeyError as missing:
        raise WebhookVerificationError(f"missing header {missing.args[0]}") from None
    try:
        sent_at = int(timestamp)
    except ValueError:
        raise WebhookVerificationError("webhook-timestamp is not an integer") from None
    if abs((time.time() if now is None else now) - sent_at) > tolerance:
        raise WebhookVerificationError("webhook-timestamp is outside the tolerance")
    body = payload.encode() if isinstance(payload, str) else bytes(payload)
    try:
        key = base64.b64decode(secret.removeprefix("whsec_"), validate=True)
    except ValueError:
        raise WebhookVerificationError("the secret is not whsec_<base64>") from None
    expected = base64.b64encode(hmac.new(key, f"{msg_id}.{sent_at}.".encode() + body, hashlib.sha256).digest()).decode()
    # The header may hold several space-separated signatures (secret rotation): any v1 match will do.
    for candidate in signatures.split():
        version, _, value = candidate.partition(",")
        if version == "v1" and hmac.compare_digest(value, expected):
            return json.loads(body)
    raise WebhookVerificationError("no signature matches")
