"""HTTP Range requests (RFC 9110 section 14) for downloads: one byte range per request.

Multiple ranges and malformed headers are answered with the whole file (a server may ignore a
Range header it does not support); a well-formed range that misses the file is 416."""
from __future__ import annotations


class RangeNotSatisfiable(Exception):
    """The range starts at or beyond the end of the content."""


_BIG = 10**18  # a range bound of more digits than this is "beyond any file"


def _bound(text: str) -> int:
    # ASCII digits only (str.isdigit also accepts superscripts, which int() refuses), and no
    # int() of thousands of digits (Python refuses those too).
    return int(text) if len(text) <= 18 else _BIG


def _digits(text: str) -> bool:
    return text == "" or (text.isascii() and text.isdigit())


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """`bytes=a-b`, `bytes=a-` or `bytes=-n` -> inclusive (start, end); None = send it all."""
    if not header:
        return None
    unit, _, spec = header.partition("=")
    if unit.strip().lower() != "bytes" or "," in spec:
        return None
    first, dash, last = spec.strip().partition("-")
    if not dash or not _digits(first) or not _digits(last):
        return None
    if first == "":  # suffix: the last n bytes
        if last == "":
            return None
        n = _bound(last)
        if n == 0 or size == 0:
            raise RangeNotSatisfiable
        return max(0, size - n), size - 1
    start = _bound(first)
    if last and _bound(last) < start:
        return None  # syntactically invalid: ignore
    if start >= size:
        raise RangeNotSatisfiable
    return start, min(_bound(last), size - 1) if last else size - 1
