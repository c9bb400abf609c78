"""Reading a job's server-sent events (`videos.stream_events`, `stream_previews`), for both twins:
the events turned into jobs and previews across reconnections, and stream_previews' filter."""
from __future__ import annotations

import json
from typing import Optional, Union

from httpx_sse import ServerSentEvent

from .._exceptions import JobFailedError, KinetoscopeError
from ..types import Preview, Video


class _EventReader:
    """Turns one stream_events call's server-sent events into jobs and previews, across
    reconnections: a reopened stream replays the job's previews from the first one, so those
    already yielded are skipped."""

    def __init__(self, previews: bool) -> None:
        self.previews = previews
        self._yielded = 0  # previews handed out so far
        self._index = 0  # previews seen on the current connection

    def reopened(self) -> None:
        self._index = 0

    def read(self, event: Optional[ServerSentEvent]) -> Union[Video, Preview, None]:
        """The job or preview an event carries; None for events without one (keep-alives,
        unknown kinds, previews not asked for or already yielded). An `error` event raises."""
        if event is None or not event.data:
            return None
        try:
            payload = json.loads(event.data)
        except ValueError:
            return None
        if not isinstance(payload, dict):
            return None
        if event.event == "preview":
            self._index += 1
            if not self.previews or self._index <= self._yielded:
                return None
            self._yielded += 1
            return Preview.model_validate(payload)
        if "status" in payload and "id" in payload:
            return Video.model_validate(payload)
        if event.event == "error" or "error" in payload:
            error = payload.get("error", payload)
            message = error.get("message", event.data) if isinstance(error, dict) else str(error)
            raise KinetoscopeError(f"event stream error: {message}")
        return None


def _previews_only(item: Union[Video, Preview]) -> Optional[Preview]:
    """stream_previews' filter: a preview passes; a job that ended other than completed raises."""
    if isinstance(item, Preview):
        return item
    if item.is_terminal and item.status != "completed":
        raise JobFailedError(item)
    return None
