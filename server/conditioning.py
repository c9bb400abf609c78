"""From a request to the pixels each decoding window is given: pure numpy, no I/O.

A clip of `num_frames` frames is made window by window (the prior's window is 16 frames for the
demo model). The clip-level mask G says which pixels the caller gives; each window after the
first is also given its first `overlap` frames, taken from what was already generated: that is
autoregressive extension, frame prediction conditioned on the last frames made (W.A.L.T).

How a window's condition video is padded (the tasks.md rules, written once for any mask):
- frames with some given pixels: inpainting fills the hole with zeros, outpainting replicates
  the given rectangle's edges (server.tasks.pad_condition);
- frames with no given pixel: linear interpolation between the nearest fully given frames
  before and after (frame interpolation), else a copy of the nearest one (frame prediction).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from server import tasks as T


@dataclass(frozen=True)
class Window:
    start: int  # first clip frame of the window
    overlap: int  # leading frames already made (given to this window)
    length: int  # frames of the window inside the clip (< window only for clips shorter than it)


def plan_windows(num_frames: int, window: int, condition_frames: int) -> list[Window]:
    """Windows that cover the clip: each new one starts `condition_frames` before the end of the
    last; the final one is aligned to end on the clip's last frame (it may overlap more)."""
    if num_frames < 1:
        raise T.TaskError(f"num_frames must be >= 1; got {num_frames}")
    if not 1 <= condition_frames < window:
        raise T.TaskError(f"condition frames for extension must be in 1..{window - 1}")
    if num_frames <= window:
        return [Window(0, 0, num_frames)]
    windows, end = [Window(0, 0, window)], window
    while end < num_frames:
        start = min(end - condition_frames, num_frames - window)
        windows.append(Window(start, end - start, window))
        end = start + window
    return windows


def clip_condition(task: str, num_frames: int, height: int, width: int, video: np.ndarray | None, *,
                   preset: str | None = None, box=None, condition_frames: int | None = None
                   ) -> tuple[np.ndarray, np.ndarray]:
    """The clip-level given mask G (T, H, W) and given pixels V (T, H, W, 3) float32.

    `video` is the caller's input at this resolution (float32 (Ti, H, W, 3)). Frame tasks take
    its first k frames (frame_interpolation: its first and last frame); spatial tasks take frame
    t from input frame t, holding the last input frame when the input is shorter."""
    given = T.pixel_mask(task, num_frames, height, width, preset=preset, box=box, condition_frames=condition_frames)
    pixels = np.zeros((num_frames, height, width, 3), dtype=np.float32)
    if task == "class_conditional":
        return given, pixels
    if video is None or len(video) == 0:
        raise T.TaskError(f"{task} needs an input video")
    if task == "frame_interpolation":
        if len(video) < 2:
            raise T.TaskError("frame_interpolation needs an input with at least 2 frames (first and last)")
        pixels[0], pixels[-1] = video[0], video[-1]
    elif task in T.FRAME_TASKS:
        k = int(condition_frames or 0)
        if len(video) < k:
            raise T.TaskError(f"condition_frames is {k} but the input has only {len(video)} frames")
        pixels[:k] = video[:k]
    else:
        index = np.minimum(np.arange(num_frames), len(video) - 1)
        pixels[:] = video[index]
    return given, np.where(given[..., None], pixels, 0.0).astype(np.float32)


def window_condition(video: np.ndarray, given: np.ndarray, task: str) -> np.ndarray:
    """The padded condition video of one window (see the module docstring).
    video: (T, H, W, 3) float32 holding the given pixels; given: (T, H, W) bool."""
    cond = np.zeros_like(video, dtype=np.float32)
    if task in T.SPATIAL_TASKS:
        cond = T.pad_condition(video, given, task)
    full = given.all(axis=(1, 2))
    cond[full] = video[full]
    full_idx = np.flatnonzero(full)
    for t in np.flatnonzero(~given.any(axis=(1, 2))):
        before, after = full_idx[full_idx < t], full_idx[full_idx > t]
        if before.size and after.size:
            a, b = before[-1], after[0]
            w = (t - a) / (b - a)
            cond[t] = (1 - w) * video[a] + w * video[b]
        elif before.size:
            cond[t] = video[before[-1]]
        elif after.size:
            cond[t] = video[after[0]]
    return cond
