"""The optional progress bar shown while waiting for a job (needs the `tqdm` extra)."""
from __future__ import annotations

import sys
from typing import IO, Any

from .types import Video

__all__ = ["ProgressBar"]


class ProgressBar:
    """A tqdm bar over a job's `progress` percent. It is a silent no-op unless asked for, tqdm
    is installed and `file` (default: stdout) is a terminal, so logs and pipes stay clean."""

    def __init__(self, enabled: bool, file: IO[str] | None = None) -> None:
        self._bar: Any = None
        if not enabled:
            return
        file = file if file is not None else sys.stdout
        isatty = getattr(file, "isatty", None)
        if not (callable(isatty) and isatty()):
            return
        try:
            from tqdm.auto import tqdm
        except ImportError:
            return
        self._bar = tqdm(total=100, unit="%", file=file, leave=True, dynamic_ncols=True)

    @property
    def active(self) -> bool:
        return self._bar is not None

    def update(self, video: Video) -> None:
        if self._bar is None:
            return
        self._bar.set_description(f"{video.id} {video.status}", refresh=False)
        if video.status == "queued" and video.queue_position is not None:
            self._bar.set_postfix(queue_position=video.queue_position, refresh=False)
        # progress is monotonic on the server; clamp anyway so a bar never runs backwards
        self._bar.update(max(0, min(100, video.progress) - self._bar.n))

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def __enter__(self) -> "ProgressBar":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
