"""A small server-sent events decoder (the text/event-stream format of the HTML standard),
fed one line at a time so the sync and async readers share it. httpx has no SSE support and
the format takes twenty lines, so no extra dependency."""
from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["ServerSentEvent", "SSEDecoder"]


@dataclass
class ServerSentEvent:
    event: str = "message"
    data: str = ""
    id: str | None = None
    retry: int | None = None


@dataclass
class SSEDecoder:
    _data: list[str] = field(default_factory=list)
    _event: str | None = None
    _id: str | None = None
    _retry: int | None = None

    def feed(self, line: str) -> ServerSentEvent | None:
        """Takes one line without its line ending; returns an event when a blank line ends one."""
        if not line:
            if not self._data and self._event is None:
                return None
            event = ServerSentEvent(self._event or "message", "\n".join(self._data), self._id, self._retry)
            self._data, self._event, self._retry = [], None, None  # the last id persists
            return event
        if line.startswith(":"):  # comment / keep-alive
            return None
        name, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id":
            self._id = value
        elif name == "retry" and value.isdigit():
            self._retry = int(value)
        return None
