"""server/output.py: every output format decodes back to the frames; the frames variant is lossless."""
from __future__ import annotations

import numpy as np
import pytest

from server.output import decode_frames, encode_frames, encode_video
from server.video import decode_video


def clip() -> np.ndarray:
    rng = np.random.default_rng(0)
    frames = np.zeros((8, 32, 32, 3), np.uint8)
    for t in range(8):
        frames[t, 8:20, 2 + 2 * t:14 + 2 * t] = rng.integers(0, 256, 3, dtype=np.uint8)
    return frames


def test_frames_round_trip_exactly():
    frames = clip()
    assert np.array_equal(decode_frames(encode_frames(frames)), frames)


@pytest.mark.parametrize("fmt,magic", [("mp4", b"ftyp"), ("webm", b"\x1a\x45\xdf\xa3"), ("gif", b"GIF8")])
def test_each_format_decodes_to_the_clip(fmt, magic):
    frames = clip()
    data = encode_video(frames, 8, fmt)
    assert magic in data[:12]
    decoded = decode_video(data, max_bytes=1 << 24, max_frames=64, max_pixels=1 << 20)
    assert decoded.format == fmt and decoded.frames.shape == frames.shape
    mse = np.mean((decoded.frames.astype(float) - frames) ** 2)
    assert 10 * np.log10(255 ** 2 / max(mse, 1e-9)) > 20


def test_an_unknown_format_is_refused():
    with pytest.raises(ValueError, match="output_format"):
        encode_video(clip(), 8, "avi")
