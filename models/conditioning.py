"""Training batches for the priors: a mix of every task of tasks.md on real clips.

Each clip gets a task drawn from `TASK_MIX`; `server.tasks` (the same code the server runs)
says which pixels are given and pads the condition video; the frozen tokenizer turns the clip
into targets and the padded condition into condition tokens.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from server import tasks as T

# (task, preset or "box" or None, weight). Unconditional generation is class_conditional with
# the null class, drawn through CLASS_DROP below.
TASK_MIX: list[tuple[str, str | None, float]] = [
    ("class_conditional", None, 0.22),
    ("class_conditional_frame_prediction", None, 0.10),
    ("frame_prediction", None, 0.14),
    ("frame_interpolation", None, 0.08),
    ("outpainting", "center", 0.05), ("outpainting", "vertical", 0.04), ("outpainting", "horizontal", 0.04),
    ("outpainting", "dynamic", 0.04), ("outpainting", "box", 0.04),
    ("inpainting", "center", 0.06), ("inpainting", "dynamic", 0.05), ("inpainting", "vertical", 0.03),
    ("inpainting", "horizontal", 0.03), ("inpainting", "box", 0.08),
]
CONDITION_FRAMES = (1, 2, 3, 4, 4, 4, 5, 6, 8, 8, 12)  # k for frame prediction; the default (4) most often
CLASS_DROP = 0.1  # class tasks: share trained with the null class (unconditional, guidance)
CLASS_KEEP_OTHER = 0.3  # other tasks: share that also see the class label


@dataclass
class TaskSample:
    task: str
    given: np.ndarray  # bool (T, H, W)
    condition: np.ndarray  # float32 (T, H, W, 3), padded
    class_id: int


def sample_task(rng: np.random.Generator, clip: np.ndarray, label: int, null_class: int,
                class_conditional_share: float | None = None) -> TaskSample:
    """clip: float32 (T, H, W, 3) in [0, 1]. `class_conditional_share` overrides the share of
    class_conditional samples in TASK_MIX (the others keep their relative weights)."""
    frames, height, width, _ = clip.shape
    weights = np.array([w for _, _, w in TASK_MIX])
    if class_conditional_share is not None:
        cg = np.array([t == "class_conditional" for t, _, _ in TASK_MIX])
        weights = np.where(cg, class_conditional_share / cg.sum(), weights / weights[~cg].sum() * (1 - class_conditional_share))
    task, preset, _ = TASK_MIX[rng.choice(len(TASK_MIX), p=weights / weights.sum())]
    kwargs: dict = {}
    if task in ("class_conditional_frame_prediction", "frame_prediction"):
        kwargs["condition_frames"] = int(rng.choice(CONDITION_FRAMES))
    elif preset == "box":
        w, h = rng.uniform(0.25, 0.75, size=2)
        x0, y0 = rng.uniform(0, 1 - w), rng.uniform(0, 1 - h)
        kwargs["box"] = [x0, y0, x0 + w, y0 + h]
    elif preset is not None:
        kwargs["preset"] = preset
    given = T.pixel_mask(task, frames, height, width, **kwargs)
    condition = T.pad_condition(clip, given, task)
    keep = (1 - CLASS_DROP) if task in T.CLASS_TASKS else CLASS_KEEP_OTHER
    class_id = label if rng.random() < keep else null_class
    return TaskSample(task, given, condition, class_id)


@torch.no_grad()
def prior_batch(tokenizer, clips: torch.Tensor, labels: torch.Tensor, rng: np.random.Generator,
                null_class: int, null_cond: int, temporal_stride: int, spatial_stride: int,
                class_conditional_share: float | None = None) -> dict[str, torch.Tensor]:
    """clips: (B, 3, T, H, W) float on the training device -> targets, cond tokens, states,
    fixed positions and class ids, each (B, N) or (B,)."""
    b = clips.shape[0]
    np_clips = clips.permute(0, 2, 3, 4, 1).cpu().numpy()  # (B, T, H, W, 3)
    samples = [sample_task(rng, np_clips[i], int(labels[i]), null_class, class_conditional_share) for i in range(b)]
    cond_video = torch.from_numpy(np.stack([s.condition for s in samples])).permute(0, 4, 1, 2, 3).to(clips.device)
    targets = tokenizer.encode(clips).reshape(b, -1)
    cond = tokenizer.encode(cond_video).reshape(b, -1)
    states = torch.from_numpy(np.stack([T.token_states(s.given, temporal_stride, spatial_stride).reshape(-1)
                                        for s in samples])).to(clips.device)
    unconditioned = torch.tensor([s.task == "class_conditional" for s in samples], device=clips.device)
    cond = torch.where(unconditioned[:, None], torch.full_like(cond, null_cond), cond)
    fixed = states == T.STATE_FULL
    class_id = torch.tensor([s.class_id for s in samples], device=clips.device)
    return {"targets": targets, "cond": cond, "state": states, "fixed": fixed, "class_id": class_id,
            "class_only": unconditioned}


def mask_for_training(fixed: torch.Tensor, generator: torch.Generator | None = None,
                      min_ratio: torch.Tensor | float = 0.0) -> torch.Tensor:
    """MaskGIT training mask: per clip a ratio r = m + (1 - m) cos(pi/2 * u), u ~ U[0, 1), where
    m is `min_ratio` (a float, or a (B,) tensor per clip; 0 is MaskGIT's cosine schedule); at
    least one of the free (not fixed) positions is masked. Returns bool (B, N), True = masked."""
    b, n = fixed.shape
    u = torch.rand(b, 1, device=fixed.device, generator=generator)
    m = torch.as_tensor(min_ratio, dtype=u.dtype, device=fixed.device).reshape(-1, 1)
    ratio = m + (1 - m) * torch.cos(u * torch.pi / 2)
    scores = torch.rand(b, n, device=fixed.device, generator=generator)
    scores = torch.where(fixed, torch.full_like(scores, 2.0), scores)  # fixed positions rank last
    free = (~fixed).sum(1, keepdim=True)
    count = torch.clamp((ratio * free).ceil(), min=1).minimum(free)
    rank = scores.argsort(dim=1).argsort(dim=1)
    return rank < count
