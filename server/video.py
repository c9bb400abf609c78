"""Video in and out of the server, as numpy arrays (no torch): this module resizes and converts
frames, and names everything the rest of the server uses, from the modules that do the work:

- server/video_decode.py: input bytes -> frames (`decode_video`, `decode_input`) or what they hold
  without keeping them (`check_video`, `check_input`), under the input limits; VideoError.
- server/video_encode.py: frames -> MP4 (`encode_mp4`) and PNG (`encode_png`).
- server/ffmpeg.py: the one ffmpeg runner (exit status, stderr, a hard timeout) both use.

Frames are uint8 (T, H, W, 3) RGB unless a function says otherwise. The choices a user would
notice (codec settings, limits, error codes) are documented in those modules.
"""
from __future__ import annotations

import numpy as np
from PIL import Image

from server.errors import VideoError
from server.ffmpeg import FFMPEG_TIMEOUT_S
from server.video_decode import (DecodedVideo, InputInfo, blaming, check_input, check_video, decode_input,
                                 decode_video, sniff_format)
from server.video_encode import MP4_CRF, MP4_PRESET, check_frames, encode_mp4, encode_png

__all__ = ["FFMPEG_TIMEOUT_S", "MP4_CRF", "MP4_PRESET", "DecodedVideo", "InputInfo", "VideoError", "blaming",
           "check_frames", "check_input", "check_video", "decode_input", "decode_video", "encode_mp4", "encode_png",
           "fit_to_size", "frames_to_float", "frames_to_uint8", "sniff_format"]


# --- shape and range --------------------------------------------------------------------------------

def fit_to_size(frames: np.ndarray, height: int, width: int) -> np.ndarray:
    """Centre-crop uint8 (T, H, W, 3) frames to the aspect ratio of (height, width), then resize.

    Downscaling averages areas (Pillow's BOX filter, like OpenCV's INTER_AREA); upscaling is
    bilinear, since a box filter would only repeat pixels. Frames already of the target size
    are returned unchanged (the same array).
    """
    check_frames(frames)
    if height < 1 or width < 1:
        raise ValueError(f"target size must be positive; got {width}x{height}")
    t, in_h, in_w, _ = frames.shape
    if (in_h, in_w) == (height, width):
        return frames
    # Crop the larger side: keep in_h rows and in_h * width / height columns, or the transpose.
    if in_w * height > in_h * width:
        crop_h, crop_w = in_h, max(1, round(in_h * width / height))
    else:
        crop_h, crop_w = max(1, round(in_w * height / width)), in_w
    top, left = (in_h - crop_h) // 2, (in_w - crop_w) // 2
    cropped = frames[:, top:top + crop_h, left:left + crop_w]
    if (crop_h, crop_w) == (height, width):
        return np.ascontiguousarray(cropped)
    shrink = crop_h >= height and crop_w >= width
    resample = Image.Resampling.BOX if shrink else Image.Resampling.BILINEAR
    out = np.empty((t, height, width, 3), dtype=np.uint8)
    for i in range(t):
        out[i] = np.asarray(Image.fromarray(cropped[i]).resize((width, height), resample=resample))
    return out


def frames_to_float(frames: np.ndarray) -> np.ndarray:
    """uint8 video -> float32 in [0, 1], the pipelines' working range."""
    if frames.dtype != np.uint8:
        raise ValueError(f"expected uint8 frames; got {frames.dtype}")
    return frames.astype(np.float32) / np.float32(255.0)


def frames_to_uint8(video: np.ndarray) -> np.ndarray:
    """float video in [0, 1] -> uint8, rounded to nearest and clipped (NaN becomes 0)."""
    scaled = np.nan_to_num(np.asarray(video, dtype=np.float32), nan=0.0) * np.float32(255.0)
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)
