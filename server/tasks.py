"""The generation tasks of tasks.md as pure numpy: which pixels are given, how the condition
video is padded before tokenization, and which tokens the given pixels fix.

Training (models/), evaluation and serving all use these functions, so a task means the same
thing everywhere. Arrays are (T, H, W) for masks and (T, H, W, 3) float32 in [0, 1] for video.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from server.errors import InputError

LEADING_FRAME_TASKS = ("class_conditional_frame_prediction", "frame_prediction")  # the first k frames are given
FRAME_TASKS = LEADING_FRAME_TASKS + ("frame_interpolation",)
SPATIAL_TASKS = ("inpainting", "outpainting")
CLASS_TASKS = ("class_conditional", "class_conditional_frame_prediction")
ALL_TASKS = ("class_conditional",) + FRAME_TASKS + SPATIAL_TASKS
PRESETS = ("center", "vertical", "horizontal", "dynamic")

# Token states, an input of both priors: how much of a token's footprint is given.
STATE_NONE, STATE_PARTIAL, STATE_FULL = 0, 1, 2

Box = Sequence[float]  # [x0, y0, x1, y1], relative coordinates in [0, 1]


class TaskError(InputError, ValueError):
    """A task, preset, box or frame count that cannot be served; the message says why."""

    def __init__(self, message: str):
        super().__init__("invalid_request", message)


def _check_box(box: Box) -> tuple[float, float, float, float]:
    if len(box) != 4:
        raise TaskError(f"a box is [x0, y0, x1, y1]; got {len(box)} numbers")
    x0, y0, x1, y1 = (float(v) for v in box)
    if not all(0.0 <= v <= 1.0 for v in (x0, y0, x1, y1)):
        raise TaskError(f"box coordinates must lie in [0, 1]; got {list(box)}")
    if not (x0 < x1 and y0 < y1):
        raise TaskError(f"a box needs x0 < x1 and y0 < y1; got {list(box)}")
    return x0, y0, x1, y1


def _box_pixels(box: Box, height: int, width: int) -> tuple[int, int, int, int]:
    """Relative box -> pixel rows/cols [r0, r1) x [c0, c1), at least one pixel each way."""
    x0, y0, x1, y1 = _check_box(box)
    c0, c1 = int(round(x0 * width)), int(round(x1 * width))
    r0, r1 = int(round(y0 * height)), int(round(y1 * height))
    c1, r1 = max(c1, min(c0 + 1, width)), max(r1, min(r0 + 1, height))
    return min(r0, height - 1), r1, min(c0, width - 1), c1


def _region(preset: str, frames: int, height: int, width: int, hole: bool) -> np.ndarray:
    """The preset's rectangle per frame as a bool (T, H, W) array. For outpainting the
    rectangle is what is given; for inpainting (hole=True) it is what is generated."""
    region = np.zeros((frames, height, width), dtype=bool)
    qh, qw, hh, hw = height // 4, width // 4, height // 2, width // 2
    if preset == "center":
        region[:, qh:qh + hh, qw:qw + hw] = True
    elif preset == "vertical":
        region[:, :, qw:qw + hw] = True
    elif preset == "horizontal":
        region[:, qh:qh + hh, :] = True
    elif preset == "dynamic":
        # The left column moves from 0 to W/2 over the clip (linspace over T). Outpainting keeps a
        # full-height strip; inpainting's hole is an H/2 box, vertically centred (tasks.md).
        lefts = np.round(np.linspace(0, width - hw, frames)).astype(int)
        rows = slice(qh, qh + hh) if hole else slice(0, height)
        for t, left in enumerate(lefts):
            region[t, rows, left:left + hw] = True
    else:
        raise TaskError(f"unknown mask preset {preset!r}; choose one of {', '.join(PRESETS)}")
    return region


def pixel_mask(task: str, frames: int, height: int, width: int, *, preset: str | None = None,
               box: Box | Sequence[Box] | None = None, condition_frames: int | None = None) -> np.ndarray:
    """Which pixels the caller gives: bool (T, H, W), True = given, False = generated.

    `box` is one [x0, y0, x1, y1] or one per frame. Frame tasks need `condition_frames`
    (frame_interpolation ignores it: the first and the last frame are given)."""
    if frames < 1 or height < 1 or width < 1:
        raise TaskError(f"a clip needs at least one frame and pixel; got {frames}x{height}x{width}")
    given = np.zeros((frames, height, width), dtype=bool)
    if task == "class_conditional":
        return given
    if task in LEADING_FRAME_TASKS:
        if condition_frames is None or not 1 <= condition_frames < frames:
            raise TaskError(f"{task} needs 1 <= condition_frames < {frames}; got {condition_frames}")
        given[:condition_frames] = True
        return given
    if task == "frame_interpolation":
        if frames < 2:
            raise TaskError("frame_interpolation needs at least 2 frames")
        given[0] = given[-1] = True
        return given
    if task not in SPATIAL_TASKS:
        raise TaskError(f"unknown task {task!r}; choose one of {', '.join(ALL_TASKS)}")
    hole = task == "inpainting"
    if (preset is None) == (box is None):
        raise TaskError(f"{task} needs exactly one of a mask preset or a box")
    if preset is not None:
        region = _region(preset, frames, height, width, hole)
    else:
        boxes = list(box)  # type: ignore[arg-type]
        per_frame = len(boxes) > 0 and isinstance(boxes[0], (list, tuple, np.ndarray))
        if per_frame and len(boxes) != frames:
            raise TaskError(f"per-frame boxes: need one box per frame ({frames}); got {len(boxes)}")
        region = np.zeros((frames, height, width), dtype=bool)
        for t in range(frames):
            r0, r1, c0, c1 = _box_pixels(boxes[t] if per_frame else boxes, height, width)
            region[t, r0:r1, c0:c1] = True
    return ~region if hole else region


def pad_condition(video: np.ndarray, given: np.ndarray, task: str) -> np.ndarray:
    """The condition video that the tokenizer sees (MAGVIT's padding): frame tasks repeat the
    nearest given frame (frame_interpolation blends the two given frames linearly), outpainting
    replicates the given rectangle's edges, inpainting fills the hole with zeros."""
    if video.shape[:3] != given.shape:
        raise TaskError(f"video {video.shape[:3]} and mask {given.shape} disagree")
    out = np.zeros_like(video, dtype=np.float32)
    frames = video.shape[0]
    if task == "class_conditional":
        return out
    if task in LEADING_FRAME_TASKS:
        k = int(given[:, 0, 0].sum())
        out[:k] = video[:k]
        out[k:] = video[k - 1]
        return out
    if task == "frame_interpolation":
        w = np.linspace(0.0, 1.0, frames, dtype=np.float32)[:, None, None, None]
        return (1.0 - w) * video[0] + w * video[-1]
    if task == "inpainting":
        return np.where(given[..., None], video, 0.0).astype(np.float32)
    if task == "outpainting":
        for t in range(frames):
            rows = np.flatnonzero(given[t].any(axis=1))
            cols = np.flatnonzero(given[t].any(axis=0))
            if rows.size == 0:
                continue
            # Clamp every pixel's coordinates into the given rectangle: edge replication.
            ri = np.clip(np.arange(video.shape[1]), rows[0], rows[-1])
            ci = np.clip(np.arange(video.shape[2]), cols[0], cols[-1])
            out[t] = video[t][np.ix_(ri, ci)]
        return out
    raise TaskError(f"unknown task {task!r}")


def token_states(given: np.ndarray, temporal_stride: int, spatial_stride: int) -> np.ndarray:
    """Per token of the (t, h, w) grid: STATE_FULL when every pixel of its footprint is given,
    STATE_PARTIAL when some are, STATE_NONE otherwise. A clip of T frames has ceil(T / ts)
    latent frames (the causal tokenizer pads the past); missing frames count as not given."""
    frames, height, width = given.shape
    t = -(-frames // temporal_stride)
    padded = np.zeros((t * temporal_stride, height, width), dtype=bool)
    padded[t * temporal_stride - frames:] = given  # the padding is in the past, before frame 0
    # (t, ts, h, s, w, s) -> share of given pixels per token
    blocks = padded.reshape(t, temporal_stride, height // spatial_stride, spatial_stride,
                            width // spatial_stride, spatial_stride)
    share = blocks.mean(axis=(1, 3, 5))
    states = np.where(share >= 1.0, STATE_FULL, np.where(share > 0.0, STATE_PARTIAL, STATE_NONE))
    return states.astype(np.int64)
