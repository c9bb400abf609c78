"""The forms a job's result is delivered in: the video in the request's `output_format`, a PNG
thumbnail, and the frames the model made, lossless.

Why a lossless form: H.264 and VP9 at yuv420p halve the colour resolution, which visibly blurs a
32x32 colour clip (a crisp clip round-trips at ~25-29 dB); `variant=frames` returns exactly the
uint8 frames the pipeline produced, as PNG files in a zip (every tool opens it, and numpy reads
it back with Pillow). GIF is lossless in space but holds 256 colours per frame.
"""
from __future__ import annotations

import io
import os
import tempfile
import zipfile

import numpy as np
from PIL import Image

from server.ffmpeg import ffmpeg_exe, first_error, run_ffmpeg
from server.video_encode import check_frames, encode_mp4, encode_png, even_sides

OUTPUT_FORMATS = {"mp4": "video/mp4", "webm": "video/webm", "gif": "image/gif"}  # output_format -> MIME type
FRAMES_MEDIA_TYPE = "application/zip"
WEBM_CRF = 20  # VP9 constant quality (lower is better; 0-63)


def encode_webm(frames: np.ndarray, fps: int) -> bytes:
    """uint8 (T, H, W, 3) -> WebM (VP9, yuv420p, constant quality)."""
    check_frames(frames)
    frames = even_sides(frames)  # yuv420p needs even sides
    t, h, w, _ = frames.shape
    with tempfile.TemporaryDirectory(prefix="kinetoscope-webm-") as tmp:
        path = os.path.join(tmp, "out.webm")
        cmd = [ffmpeg_exe(), "-nostdin", "-hide_banner", "-loglevel", "error", "-y",
               "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{w}x{h}", "-r", str(int(fps)), "-i", "pipe:0", "-an",
               "-c:v", "libvpx-vp9", "-crf", str(WEBM_CRF), "-b:v", "0", "-pix_fmt", "yuv420p", path]
        run = run_ffmpeg(cmd, np.ascontiguousarray(frames).tobytes())
        if run.returncode != 0:
            raise RuntimeError(f"ffmpeg failed to encode {t} frames of {w}x{h} as WebM: {first_error(run.stderr)}")
        with open(path, "rb") as f:
            return f.read()


def encode_gif(frames: np.ndarray, fps: int) -> bytes:
    """uint8 (T, H, W, 3) -> an animated GIF that loops (Pillow; frame time rounded to 10 ms)."""
    check_frames(frames)
    images = [Image.fromarray(f, mode="RGB") for f in frames]
    buf = io.BytesIO()
    images[0].save(buf, format="GIF", save_all=True, append_images=images[1:], loop=0,
                   duration=max(20, round(1000 / fps, -1)), optimize=False)
    return buf.getvalue()


def encode_video(frames: np.ndarray, fps: int, output_format: str) -> bytes:
    encoders = {"mp4": encode_mp4, "webm": encode_webm, "gif": encode_gif}
    if output_format not in encoders:
        raise ValueError(f"output_format must be one of {', '.join(encoders)}; got {output_format!r}")
    return encoders[output_format](frames, fps)


def encode_frames(frames: np.ndarray) -> bytes:
    """uint8 (T, H, W, 3) -> a zip of frame_0000.png, frame_0001.png, ... (lossless)."""
    check_frames(frames)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_STORED) as archive:  # PNG is compressed already
        for i, frame in enumerate(frames):
            archive.writestr(f"frame_{i:04d}.png", encode_png(frame))
    return buf.getvalue()


def decode_frames(data: bytes) -> np.ndarray:
    """The inverse of encode_frames: uint8 (T, H, W, 3)."""
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        names = sorted(n for n in archive.namelist() if n.endswith(".png"))
        return np.stack([np.asarray(Image.open(io.BytesIO(archive.read(n))).convert("RGB")) for n in names])
