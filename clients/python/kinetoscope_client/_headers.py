"""Reading the timing hints a server puts in response headers."""
from __future__ import annotations

import email.utils
import time
from typing import Mapping

__all__ = ["parse_retry_after", "parse_poll_interval"]


def _seconds(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        return None
    return seconds if seconds >= 0 else None


def parse_retry_after(headers: Mapping[str, str]) -> float | None:
    """`Retry-After` in seconds (also accepts the HTTP-date form); None when absent or garbled."""
    value = headers.get("retry-after")
    seconds = _seconds(value)
    if seconds is not None or value is None:
        return seconds
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def parse_poll_interval(headers: Mapping[str, str]) -> float | None:
    """The poll interval a server suggests on GET /v1/videos/{id}: `X-Poll-Interval` (seconds)
    if given, else `Retry-After`."""
    seconds = _seconds(headers.get("x-poll-interval"))
    return seconds if seconds is not None else parse_retry_after(headers)
