"""PSNR, region masks, baselines and class scores: pure numpy (and Pillow for resizing)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

import numpy as np
from PIL import Image

from server import tasks as T
from server.video import frames_to_uint8

MAX_PSNR = 100.0  # dB for a clip with zero error (mse floored at 1e-10)


def to_unit(video: np.ndarray) -> np.ndarray:
    """uint8 -> float64 in [0, 1]; float input is taken as already in [0, 1]."""
    video = np.asarray(video)
    if video.dtype == np.uint8:
        return video.astype(np.float64) / 255.0
    return video.astype(np.float64)


def psnr(pred: np.ndarray, target: np.ndarray, mask: np.ndarray | None = None) -> float:
    """PSNR in dB of one clip on [0, 1] values (uint8 input is divided by 255). `mask`, a bool
    array over the leading (T, H, W) axes, restricts the error to the pixels it marks. A zero
    error gives MAX_PSNR, not infinity; an empty mask gives NaN."""
    p, t = to_unit(pred), to_unit(target)
    if p.shape != t.shape:
        raise ValueError(f"shapes differ: {p.shape} vs {t.shape}")
    err = (p - t) ** 2
    if mask is not None:
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != err.shape[:mask.ndim]:
            raise ValueError(f"mask {mask.shape} does not match video {err.shape}")
        if not mask.any():
            return float("nan")
        err = err[mask]
    mse = max(float(err.mean()), 1e-10)
    return float(min(MAX_PSNR, 10.0 * np.log10(1.0 / mse)))


def mean_psnr(preds: Iterable[np.ndarray], targets: Iterable[np.ndarray],
              masks: Iterable[np.ndarray | None] | None = None) -> float:
    """Mean over clips of the per-clip PSNR."""
    preds, targets = list(preds), list(targets)
    masks = [None] * len(preds) if masks is None else list(masks)
    return float(np.mean([psnr(p, t, m) for p, t, m in zip(preds, targets, masks)]))


def generated_region(task: str, frames: int, height: int, width: int, **kw) -> np.ndarray:
    """The pixels a task generates (not given): bool (T, H, W), the complement of its mask."""
    return ~T.pixel_mask(task, frames, height, width, **kw)


def repeat_last(clip: np.ndarray, k: int) -> np.ndarray:
    """Frame-prediction baseline: frames k.. are copies of frame k-1."""
    out = np.array(clip, copy=True)
    out[k:] = clip[k - 1]
    return out


def black_fill(clip: np.ndarray, given: np.ndarray) -> np.ndarray:
    """Fill baseline: the given pixels, zeros everywhere else."""
    return np.where(given[..., None], clip, 0).astype(clip.dtype)


def edge_fill(clip: np.ndarray, given: np.ndarray) -> np.ndarray:
    """Outpainting baseline: the given rectangle's edges replicated outwards (MAGVIT's padding)."""
    filled = T.pad_condition(to_unit(clip).astype(np.float32), given, "outpainting")
    return frames_to_uint8(filled)


def bicubic(clip: np.ndarray, factor: int) -> np.ndarray:
    """uint8 (T, h, w, 3) -> uint8 (T, h*factor, w*factor, 3), bicubic (Pillow)."""
    t, h, w, _ = clip.shape
    return np.stack([np.asarray(Image.fromarray(f).resize((w * factor, h * factor), Image.Resampling.BICUBIC))
                     for f in clip])


def to_base(clip: np.ndarray, factor: int) -> np.ndarray:
    """uint8 (T, H, W, 3) -> uint8 (T, H/factor, W/factor, 3), box (area) downsampling: how the
    reader reads a super-resolved clip at the size it was trained for."""
    if factor == 1:
        return clip
    t, h, w, _ = clip.shape
    return np.stack([np.asarray(Image.fromarray(f).resize((w // factor, h // factor), Image.Resampling.BOX))
                     for f in clip])


def majority(labels: np.ndarray) -> int:
    """The most frequent label of a clip's frames (-1, no digit, counts as a label too)."""
    values, counts = np.unique(labels, return_counts=True)
    return int(values[np.argmax(counts)])


@dataclass
class ClassScores:
    clip_accuracy: float  # share of clips whose majority label is the target
    frame_agreement: float  # share of frames read as the target
    all_frames: float  # share of clips where every frame reads as the target


def class_scores(frame_labels: list[np.ndarray], targets: Iterable[int]) -> ClassScores:
    targets = list(targets)
    clip_ok = [majority(f) == t for f, t in zip(frame_labels, targets)]
    frames_ok = [float(np.mean(f == t)) for f, t in zip(frame_labels, targets)]
    every = [bool(np.all(f == t)) for f, t in zip(frame_labels, targets)]
    return ClassScores(float(np.mean(clip_ok)), float(np.mean(frames_ok)), float(np.mean(every)))
