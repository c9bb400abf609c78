"""Structured logs: one `key=value` line per event, carrying the request id (from a context
variable the middleware sets) and, where known, the job id (`extra={"job_id": ...}`)."""
from __future__ import annotations

import contextvars
import logging
import time

request_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)

_FIELDS = ("request_id", "job_id", "model", "task", "method", "path", "status", "duration_ms")


class ContextFilter(logging.Filter):
    """Adds the current request id to every record that does not name one."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "request_id", None) is None:
            record.request_id = request_id_var.get()
        return True


class KeyValueFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        parts = [f"ts={ts}.{int(record.msecs):03d}Z", f"level={record.levelname.lower()}",
                 f"logger={record.name}", f"msg={record.getMessage()!r}"]
        parts += [f"{k}={getattr(record, k)}" for k in _FIELDS if getattr(record, k, None) is not None]
        line = " ".join(parts)
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


def configure_logging(level: str = "info") -> None:
    """Sends every log record (ours, the worker's, the runtime's) to stderr as key=value lines.
    Called by `serve`, not by `create_app`, so tests and embedding apps keep their own logging."""
    handler = logging.StreamHandler()
    handler.setFormatter(KeyValueFormatter())
    handler.addFilter(ContextFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
