"""Turning the `input_video` argument (a path, bytes or a binary file) into bytes, a file name
and a media type for the upload."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, NamedTuple

__all__ = ["InputVideo", "read_input_video"]

_SUFFIX_TYPES = {
    ".mp4": "video/mp4",
    ".m4v": "video/mp4",
    ".webm": "video/webm",
    ".gif": "image/gif",
    ".png": "image/png",
}
_TYPE_SUFFIXES = {"video/mp4": ".mp4", "video/webm": ".webm", "image/gif": ".gif", "image/png": ".png"}


class InputVideo(NamedTuple):
    filename: str
    content: bytes
    content_type: str


def sniff_media_type(content: bytes) -> str:
    """The container by its magic bytes; the server checks again, this only labels the part."""
    if content[4:8] == b"ftyp":
        return "video/mp4"
    if content[:4] == b"\x1a\x45\xdf\xa3":
        return "video/webm"
    if content[:4] == b"GIF8":
        return "image/gif"
    if content[:8] == b"\x89PNG\r\n\x1a\n":
        return "image/png"
    return "application/octet-stream"


def read_input_video(value: Any) -> InputVideo:
    """Reads the whole input at once: uploads are capped at a few MiB by the server, and bytes
    in hand let a retry resend the same body."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        content, name = bytes(value), None
    elif isinstance(value, (str, os.PathLike)):
        path = Path(value)
        content, name = path.read_bytes(), path.name
    elif hasattr(value, "read"):
        content = value.read()
        if isinstance(content, str):
            raise TypeError("input_video file must be opened in binary mode ('rb')")
        raw_name = getattr(value, "name", None)
        name = os.path.basename(raw_name) if isinstance(raw_name, str) else None
    else:
        raise TypeError(f"input_video must be a path, bytes or a binary file, not {type(value).__name__}")
    media_type = sniff_media_type(content)
    if media_type == "application/octet-stream" and name:
        media_type = _SUFFIX_TYPES.get(Path(name).suffix.lower(), media_type)
    if not name:
        name = "input_video" + _TYPE_SUFFIXES.get(media_type, "")
    return InputVideo(name, content, media_type)
