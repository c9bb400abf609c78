"""HTTP Range requests (RFC 9110 section 14) for downloads: one byte range per request.

Multiple ranges and malformed headers are answered with the whole file (a server may ignore a
Range header it does not support); a well-formed range that misses the file is 416."""
from __future__ import annotations


class RangeNotSatisfiable(Exception):
    """The range starts at or beyond the end of the content."""


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """`bytes=a-b`, `bytes=a-` or `bytes=-n` -> inclusive (start, end); None = send it all."""
    if not header:
        return None
    unit, _, spec = header.partition("=")
    if unit.strip().lower() != "bytes" or "," in spec:
        return None
    first, dash, last = spec.strip().partition("-")
    if not dash or not (first.isdigit() or first == "") or not (last.isdigit() or last == ""):
        return None
    if first == "":  # suffix: the last n bytes
        if last == "":
            return None
        n = int(last)
        if n == 0 or size == 0:
            raise RangeNotSatisfiable
        return max(0, size - n), size - 1
    start = int(first)
    if last and int(last) < start:
        return None  # syntactically invalid: ignore
    if start >= size:
        raise RangeNotSatisfiable
    return start, min(int(last), size - 1) if last else size - 1
