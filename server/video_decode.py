"""Video into the server: an input video's bytes -> its frames (`decode_video`, what the worker
runs) or what it holds without keeping them (`check_video`, the API's intake). Frames are uint8
(T, H, W, 3) RGB. MP4 and WebM go through ffmpeg (server/ffmpeg.py), GIF and PNG through Pillow.

Choices a user would notice, all documented here and in the docstrings below:
- Input limits are checked before decoding: bytes first (413 `upload_too_large`), then the
  format by magic bytes (415 `unsupported_media_type`), then the frame size from the
  header (413 `video_too_large`). Frames beyond `max_frames` are not read: the first
  `max_frames` frames are kept and the rest ignored, as a long upload is usually meant as
  "this clip" and the model only looks at its leading frames anyway (`truncated` says so;
  frame interpolation, which needs the real last frame, refuses such an input).
- A file that is empty, corrupt or truncated so that ffmpeg reports an error is a 400
  `invalid_video`; we never serve frames from a half-decoded file.
- `check_video` raises what `decode_video` would, decoding every frame, but keeps none;
  `decode_video` holds the frames once, at their decoded size.
- Rotation metadata (phone videos) is applied, as players do.

Every function here blocks (ffmpeg runs as a subprocess, at most FFMPEG_TIMEOUT_S): call them
from a worker thread, not on the event loop.
"""
from __future__ import annotations

import contextlib
import io
import os
import re
import tempfile
from dataclasses import dataclass
from typing import Iterator

import numpy as np
from PIL import Image, ImageSequence

from server.errors import VideoError
from server.ffmpeg import ffmpeg_exe, first_error, run_ffmpeg

_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_EBML_MAGIC = b"\x1a\x45\xdf\xa3"  # WebM and Matroska
# The first box of an ISO-BMFF/QuickTime file: `ftyp` in MP4, older QuickTime may start otherwise.
_MP4_FIRST_BOXES = (b"ftyp", b"moov", b"mdat", b"wide", b"free")


@dataclass(frozen=True)
class DecodedVideo:
    frames: np.ndarray  # uint8 (T, H, W, 3) RGB
    fps: float | None  # the container's frame rate; None where the format has none (PNG)
    format: str = ""  # "mp4", "webm", "gif" or "png": what the magic bytes said
    truncated: bool = False  # the file holds more than max_frames frames (only the first were kept)


@dataclass(frozen=True)
class InputInfo:
    """What check_video learns of a video without keeping its frames."""
    num_frames: int  # how many frames decode_video would return (at most max_frames)
    width: int
    height: int
    fps: float | None
    format: str
    truncated: bool  # the file holds more than max_frames frames


def sniff_format(data: bytes) -> str | None:
    """"mp4", "webm", "gif" or "png" from the leading bytes; None for anything else."""
    if data[4:8] in _MP4_FIRST_BOXES:
        return "mp4"
    if data.startswith(_EBML_MAGIC):
        return "webm"
    if data.startswith((b"GIF87a", b"GIF89a")):
        return "gif"
    if data.startswith(_PNG_MAGIC):
        return "png"
    return None


def decode_input(data: bytes, settings, max_frames: int | None = None) -> DecodedVideo:
    """A request's input video under the server's limits (the `max_upload_bytes`,
    `max_input_frames`, `max_input_pixels` and `max_input_decoded_bytes` settings). `max_frames`:
    a caller that uses fewer frames (the tokens endpoints: one window) reads no more than that."""
    limits = _input_limits(settings)
    if max_frames is not None:
        limits["max_frames"] = min(max_frames, limits["max_frames"])
    return decode_video(data, **limits)


def check_input(data: bytes, settings) -> InputInfo:
    """decode_input's checks and errors without its frames: what the API runs at intake."""
    return check_video(data, **_input_limits(settings))


@contextlib.contextmanager
def blaming(param: str) -> Iterator[None]:
    """A VideoError raised inside names the request field `param` the video came in. VideoError
    is a KinetoscopeError: the API's handlers answer it as it is, with no re-wrapping."""
    try:
        yield
    except VideoError as exc:
        exc.param = exc.param or param
        raise


def _input_limits(settings) -> dict[str, int]:
    return dict(max_bytes=settings.max_upload_bytes, max_frames=settings.max_input_frames,
                max_pixels=settings.max_input_pixels, max_decoded_bytes=settings.max_input_decoded_bytes)


def decode_video(data: bytes, *, max_bytes: int, max_frames: int, max_pixels: int,
                 max_decoded_bytes: int | None = None) -> DecodedVideo:
    """Bytes of an MP4/MOV, WebM/Matroska, GIF or PNG/APNG -> its first `max_frames` RGB frames.

    Raises VideoError: 413 `upload_too_large` (more than `max_bytes`), 415
    `unsupported_media_type` (any other format), 400 `invalid_video` (empty, corrupt or
    truncated, or a GIF whose frames change size), 413 `video_too_large` (a frame of more than
    `max_pixels` pixels, or frames that decode to more than `max_decoded_bytes` together: a small
    file may hold a very large video).

    The frames are held once: decoded straight into one growing buffer that becomes the array
    (no list of frames stacked into a copy, no pipe output copied), so a video costs its decoded
    size, not twice that.
    """
    fmt, frames, fps = _read(data, True, max_bytes, max_frames, max_pixels, max_decoded_bytes)
    return DecodedVideo(frames=frames[:max_frames], fps=fps, format=fmt, truncated=len(frames) > max_frames)


def check_video(data: bytes, *, max_bytes: int, max_frames: int, max_pixels: int,
                max_decoded_bytes: int | None = None) -> InputInfo:
    """decode_video's checks and errors, every frame decoded (so a corrupt or truncated file is
    refused as decode_video would refuse it), but none kept: it holds one frame at a time, not the
    video (issue #12 D5: a 485 KB GIF decoded to gigabytes at intake). -> what the file holds."""
    fmt, (count, height, width), fps = _read(data, False, max_bytes, max_frames, max_pixels, max_decoded_bytes)
    return InputInfo(num_frames=min(count, max_frames), width=width, height=height, fps=fps, format=fmt,
                     truncated=count > max_frames)


def _read(data: bytes, keep: bool, max_bytes: int, max_frames: int, max_pixels: int,
          max_decoded_bytes: int | None) -> tuple:
    """What decode_video and check_video share: the checks before any decoding (`_admit`), then
    the format's reader, asked for one frame more than `max_frames` (it says whether the file is
    longer than the limit) -> (format, frames or (count, height, width), fps)."""
    fmt, budget = _admit(data, max_bytes, max_frames, max_decoded_bytes)
    read = _read_with_pillow if fmt in ("gif", "png") else _read_with_ffmpeg
    frames, fps = read(data, fmt, max_frames + 1, max_pixels, budget, keep=keep)
    return fmt, frames, fps


def _admit(data: bytes, max_bytes: int, max_frames: int, max_decoded_bytes: int | None) -> tuple[str, int]:
    """The checks before any decoding: size, then format -> (format, decoded-bytes budget)."""
    if len(data) > max_bytes:
        raise VideoError(413, "upload_too_large", f"the input video is {len(data)} bytes; the limit is {max_bytes}")
    if not data:
        raise VideoError(400, "invalid_video", "the input video is empty")
    if max_frames < 1:
        raise ValueError(f"max_frames must be at least 1; got {max_frames}")
    fmt = sniff_format(data)
    if fmt is None:
        raise VideoError(
            415, "unsupported_media_type",
            f"the input is not a supported video ({_describe(data)}); send MP4, MOV, WebM, GIF or PNG",
        )
    return fmt, max_decoded_bytes if max_decoded_bytes is not None else 1 << 62


def _describe(data: bytes) -> str:
    """A short guess at what an unsupported upload is, for the error message."""
    if data.startswith(b"\xff\xd8\xff"):
        return "it looks like a JPEG image"
    if data.startswith(b"RIFF") and data[8:12] == b"WEBP":
        return "it looks like a WebP image"
    if data.startswith(b"RIFF") and data[8:12] == b"AVI ":
        return "it looks like an AVI file"
    head = data[:64]
    if all(32 <= b < 127 or b in b"\t\r\n" for b in head):
        return "it looks like text"
    return f"unknown leading bytes {data[:8].hex()}"


def _check_pixels(width: int, height: int, max_pixels: int) -> None:
    if width * height > max_pixels:
        raise VideoError(
            413, "video_too_large",
            f"the input video is {width}x{height} ({width * height} pixels a frame); the limit is {max_pixels} pixels",
        )


def _over_budget(frames: int, width: int, height: int, budget: int) -> VideoError:
    return VideoError(413, "video_too_large", f"the input's first {frames} frames of {width}x{height} decode to more "
                      f"than {budget} bytes (max_input_decoded_bytes); send fewer or smaller frames")


def _frames_array(buf: bytearray, count: int, height: int, width: int) -> np.ndarray:
    """The first `count` frames of a buffer of packed RGB frames, as a writable array over the
    same memory (no copy)."""
    return np.frombuffer(buf, dtype=np.uint8, count=count * height * width * 3).reshape(count, height, width, 3)


@contextlib.contextmanager
def _pillow_errors(fmt: str) -> Iterator[None]:
    """Pillow's ways of saying a file is corrupt, truncated or too large -> VideoError."""
    try:
        yield
    except VideoError:
        raise
    except Image.DecompressionBombError as e:  # Pillow's own, far larger limit, hit before ours
        raise VideoError(413, "video_too_large", f"the {fmt.upper()} frames are too large: {e}") from None
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        # Pillow signals corrupt and truncated files with any of these.
        raise VideoError(400, "invalid_video", f"the {fmt.upper()} file could not be decoded: {e}") from None


def _read_with_pillow(data: bytes, fmt: str, max_frames: int, max_pixels: int, budget: int,
                      keep: bool) -> tuple:
    """GIF (all frames, composited) and PNG (one frame, or every frame of an APNG). `keep`:
    -> (frames, fps), the frames appended to one buffer as they are decoded; else -> ((count,
    height, width), fps), each frame decoded (checked) and dropped."""
    buf, durations_ms = bytearray(), []
    with _pillow_errors(fmt):
        image = Image.open(io.BytesIO(data))
        _check_pixels(image.width, image.height, max_pixels)  # from the header, before any pixel is decoded
        size = image.size
        for frame in ImageSequence.Iterator(image):
            if len(durations_ms) == max_frames:
                break
            # A later frame descriptor can grow a GIF's canvas: check every frame, not the header.
            _check_pixels(frame.width, frame.height, max_pixels)
            if frame.size != size:
                raise VideoError(400, "invalid_video", f"the {fmt.upper()} frames change size ({size[0]}x{size[1]} "
                                 f"then {frame.width}x{frame.height})")
            if (len(durations_ms) + 1) * frame.width * frame.height * 3 > budget:
                raise _over_budget(len(durations_ms) + 1, frame.width, frame.height, budget)
            frame.load()  # decodes the frame: a corrupt one fails here, kept or not
            if keep:
                buf += frame.convert("RGB").tobytes()  # alpha is dropped; palettes expanded
            durations_ms.append(frame.info.get("duration") or 0)
    if not durations_ms:
        raise VideoError(400, "invalid_video", f"the {fmt.upper()} file holds no frames")
    mean_ms = float(np.mean(durations_ms))
    fps = 1000.0 / mean_ms if mean_ms > 0 and len(durations_ms) > 1 else None
    shape = (len(durations_ms), size[1], size[0])
    return (_frames_array(buf, *shape) if keep else shape), fps


# The stream line of `ffmpeg -i`, e.g. "Stream #0:0(und): Video: h264 (High) (avc1 / 0x31637661),
# yuv420p(tv, bt709, progressive), 32x32 [SAR 1:1 DAR 1:1], 8 fps, 8 tbr, ...". The size is the
# first "<digits>x<digits>" after a space and before a comma, space or bracket (so not "0x3163...").
_VIDEO_LINE = re.compile(r"Stream #\d+:\d+.*?: Video: (.*)")
_SIZE = re.compile(r" (\d+)x(\d+)[ ,\[]")
_FPS = re.compile(r"([\d.]+) fps")
_ROTATION = re.compile(r"rotation of (-?[\d.]+) degrees")


def _read_with_ffmpeg(data: bytes, fmt: str, max_frames: int, max_pixels: int, budget: int,
                      keep: bool) -> tuple:
    """MP4/MOV and WebM/Matroska: probe the first video stream's size, then decode its frames.
    `keep`: -> (frames, fps), raw RGB read from ffmpeg's output into one buffer; else ->
    ((count, height, width), fps): every frame is decoded as for keeping, then scaled to one
    pixel, so ffmpeg's output is 3 bytes a frame and nothing large reaches this process.

    The bytes go to a temporary file, not a pipe: an MP4 whose moov box is at the end needs a
    seekable input. Not imageio-ffmpeg's read_frames: it cannot tell a truncated file from a
    short one (server/ffmpeg.py); `-xerror` and the exit status here can.
    """
    suffix = ".mp4" if fmt == "mp4" else ".webm"
    with tempfile.TemporaryDirectory(prefix="kinetoscope-in-") as tmp:
        path = os.path.join(tmp, "input" + suffix)
        with open(path, "wb") as f:
            f.write(data)
        width, height, fps = _probe(path)
        _check_pixels(width, height, max_pixels)
        affordable = budget // (width * height * 3)  # frames the budget holds
        if affordable < 1:
            raise _over_budget(1, width, height, budget)
        cmd = [
            ffmpeg_exe(), "-nostdin", "-hide_banner", "-loglevel", "error",
            "-xerror",  # stop at the first demux/decode error: a truncated file is an error, not a shorter clip
            "-i", path, "-map", "0:v:0", "-an", "-sn", "-dn",
            # One frame past the budget tells a video that exceeds it from one that just fits.
            "-frames:v", str(min(max_frames, affordable + 1)), "-fps_mode", "passthrough",
            *([] if keep else ["-vf", "scale=1:1"]),
            "-f", "rawvideo", "-pix_fmt", "rgb24", "pipe:1",
        ]
        run = run_ffmpeg(cmd, output=True)
    out = run.output
    if run.returncode != 0:
        raise VideoError(
            400, "invalid_video",
            f"the {fmt.upper()} file could not be decoded (corrupt or truncated?): {first_error(run.stderr)}",
        )
    count = len(out) // (width * height * 3 if keep else 3)
    if count == 0:
        raise VideoError(400, "invalid_video", f"the {fmt.upper()} file holds no decodable frames")
    if count > affordable:
        raise _over_budget(count, width, height, budget)
    return (_frames_array(out, count, height, width) if keep else (count, height, width)), fps


def _probe(path: str) -> tuple[int, int, float | None]:
    """(width, height, fps) of the first video stream, as ffmpeg will output it (rotation applied)."""
    # `ffmpeg -i FILE` with no output prints the stream info and exits 1; that is the probe.
    run = run_ffmpeg([ffmpeg_exe(), "-nostdin", "-hide_banner", "-i", path])
    stderr = run.stderr.decode("utf-8", "replace")
    match = _VIDEO_LINE.search(stderr)
    size = _SIZE.search(match.group(1) + " ") if match else None
    if size is None:
        reason = "no video stream" if "Input #0" in stderr else first_error(run.stderr)
        raise VideoError(400, "invalid_video", f"the file could not be read as a video: {reason}")
    width, height = int(size.group(1)), int(size.group(2))
    if width == 0 or height == 0:
        raise VideoError(400, "invalid_video", f"the video stream has no size ({width}x{height})")
    rotation = _ROTATION.search(stderr)
    if rotation and round(float(rotation.group(1))) % 180 == 90:  # ffmpeg autorotates on decode
        width, height = height, width
    fps = _FPS.search(match.group(1))
    return width, height, float(fps.group(1)) if fps else None
