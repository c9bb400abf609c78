"""Frames out of the server: MP4 (through ffmpeg, server/ffmpeg.py) and PNG (Pillow). Frames are
uint8 (T, H, W, 3) RGB. Other output formats (WebM, GIF, a zip of PNGs) are in server/output.py.

MP4 output is H.264 High, yuv420p, BT.709, `+faststart`, CRF 12 with `-preset fast`. CRF 12 is
near-transparent: a 32x32 clip is a few kilobytes either way, and at such sizes any visible
blocking ruins it, so we spend bits freely. Odd widths or heights (yuv420p needs even ones) are
padded by one edge-replicated row/column rather than rejected.

Every function here blocks (ffmpeg runs as a subprocess, at most FFMPEG_TIMEOUT_S): call them
from a worker thread, not on the event loop.
"""
from __future__ import annotations

import io
import os
import tempfile

import numpy as np
from PIL import Image

from server.ffmpeg import ffmpeg_exe, first_error, run_ffmpeg

MP4_CRF = 12  # x264 constant-rate factor: 0 = lossless, 23 = x264's default; see the docstring
MP4_PRESET = "fast"  # encode speed vs size; "fast" costs little at our frame sizes


def check_frames(frames: np.ndarray) -> None:
    """ValueError unless `frames` is a uint8 (T, H, W, 3) array with T, H, W > 0."""
    if not isinstance(frames, np.ndarray) or frames.dtype != np.uint8:
        raise ValueError(f"frames must be a uint8 numpy array; got {getattr(frames, 'dtype', type(frames))}")
    if frames.ndim != 4 or frames.shape[-1] != 3 or 0 in frames.shape:
        raise ValueError(f"frames must have shape (T, H, W, 3) with T, H, W > 0; got {frames.shape}")


def even_sides(frames: np.ndarray) -> np.ndarray:
    """Frames whose odd height or width get one edge-replicated row or column (yuv420p needs even sides)."""
    _, h, w, _ = frames.shape
    if h % 2 or w % 2:
        frames = np.pad(frames, ((0, 0), (0, h % 2), (0, w % 2), (0, 0)), mode="edge")
    return frames


def encode_mp4(frames: np.ndarray, fps: int) -> bytes:
    """uint8 (T, H, W, 3) RGB -> MP4 bytes (H.264, yuv420p, BT.709, moov before mdat).

    Odd heights or widths get one edge-replicated row or column so that yuv420p can hold them.
    """
    check_frames(frames)
    if int(fps) != fps or fps < 1:
        raise ValueError(f"fps must be a positive integer; got {fps}")
    frames = even_sides(frames)
    t, h, w, _ = frames.shape
    # +faststart rewrites the file to move the moov box to the front, which needs a seekable
    # output: ffmpeg writes to a temporary file rather than to a pipe. Not imageio-ffmpeg's
    # write_frames: it ignores ffmpeg's exit status (server/ffmpeg.py).
    with tempfile.TemporaryDirectory(prefix="kinetoscope-mp4-") as tmp:
        path = os.path.join(tmp, "out.mp4")
        cmd = [
            ffmpeg_exe(), "-nostdin", "-hide_banner", "-loglevel", "error", "-y",
            "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{w}x{h}", "-r", str(int(fps)), "-i", "pipe:0",
            "-an",
            # Convert with the BT.709 matrix and say so in the stream: browsers assume BT.709 for
            # untagged H.264, and ffmpeg's default RGB->YUV matrix is BT.601 (a visible tint).
            "-vf", "scale=out_color_matrix=bt709:out_range=tv,format=yuv420p",
            "-color_primaries", "bt709", "-color_trc", "bt709", "-colorspace", "bt709", "-color_range", "tv",
            "-c:v", "libx264", "-preset", MP4_PRESET, "-crf", str(MP4_CRF), "-pix_fmt", "yuv420p",
            # One encoder thread: x264's default (1.5 x the cores) writes other bytes on a machine
            # with another core count, and on clips this small it is slower, not faster (27-29
            # against 39-55 ms for a 32x32 16-frame clip on two busy cores; BENCHMARKS.md).
            "-threads", "1",
            "-movflags", "+faststart", path,
        ]
        run = run_ffmpeg(cmd, np.ascontiguousarray(frames).tobytes())
        if run.returncode != 0:
            raise RuntimeError(f"ffmpeg failed to encode {t} frames of {w}x{h}: {first_error(run.stderr)}")
        with open(path, "rb") as f:
            return f.read()


def encode_png(frame: np.ndarray) -> bytes:
    """uint8 (H, W, 3) RGB -> PNG bytes (the thumbnail of a video)."""
    if frame.ndim != 3:
        raise ValueError(f"a frame has shape (H, W, 3); got {frame.shape}")
    check_frames(frame[None])
    buf = io.BytesIO()
    Image.fromarray(frame, mode="RGB").save(buf, format="PNG")
    return buf.getvalue()
