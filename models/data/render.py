"""Moving Digits rendered in batches with torch, on the training device.

`render_clip` in moving_digits.py is the spec written out one clip at a time in numpy: the
reference. Training renders thousands of clips a minute, and on a GPU a per-clip numpy loop (plus
the copy to the device) is what the step waits for, so this module draws a whole batch of scenes
with a handful of tensor operations. It gives exactly the reference's bytes (tested on every
scale): trajectories in float64 with the same bounces, the same half-to-even rounding of corners,
the sprite's round(255 * intensity * colour) in float64.
"""
from __future__ import annotations

import colorsys
from typing import Sequence

import numpy as np
import torch

from models.data.moving_digits import BASE, FRAMES, FREE, GLYPH, Scene, _digits


def trajectories(scenes: Sequence[Scene], frames: int = FRAMES, device: torch.device | str = "cpu") -> torch.Tensor:
    """Top-left corners (B, frames, 2) as (x, y), float64, base resolution: `trajectory` for a
    batch (one loop over frames, not over clips)."""
    pos = torch.tensor([[s.x0, s.y0] for s in scenes], dtype=torch.float64, device=device)  # (B, 2)
    vel = torch.tensor([[s.vx, s.vy] for s in scenes], dtype=torch.float64, device=device)
    out = torch.empty(len(scenes), frames, 2, dtype=torch.float64, device=device)
    for t in range(frames):
        out[:, t] = pos
        pos = pos + vel
        low = pos < 0  # elastic bounce off 0 ...
        pos, vel = torch.where(low, -pos, pos), torch.where(low, -vel, vel)
        high = pos > FREE  # ... and off L, in this order, as the spec says
        pos, vel = torch.where(high, 2 * FREE - pos, pos), torch.where(high, -vel, vel)
    return out


def sprites(scenes: Sequence[Scene], scale: int = 1, device: torch.device | str = "cpu") -> torch.Tensor:
    """Each scene's coloured glyph, uint8 (B, 16r, 16r, 3)."""
    images, _ = _digits()
    block = 2 * scale
    glyphs = torch.from_numpy(images[[s.glyph_index for s in scenes]]).to(device, torch.float64)  # (B, 8, 8)
    glyphs = glyphs.repeat_interleave(block, 1).repeat_interleave(block, 2)  # nearest-neighbour upscale
    colours = torch.tensor(np.array([colorsys.hsv_to_rgb(s.hue, 1.0, 1.0) for s in scenes]),
                           dtype=torch.float64, device=device)  # (B, 3)
    return torch.round(255.0 * glyphs[..., None] * colours[:, None, None, :]).to(torch.uint8)


def render_batch(scenes: Sequence[Scene], scale: int = 1, frames: int = FRAMES,
                 device: torch.device | str = "cpu") -> torch.Tensor:
    """The clips of `scenes` as uint8 (B, T, 32r, 32r, 3) on `device`, equal to stacking
    `render_clip(scene, scale)` for each scene."""
    b, side, size = len(scenes), BASE * scale, GLYPH * scale
    corners = torch.round(trajectories(scenes, frames, device) * scale).long()  # (B, T, 2): col, row
    sprite = sprites(scenes, scale, device)  # (B, S, S, 3)
    offsets = torch.arange(size, device=device)
    rows = (corners[..., 1, None] + offsets)[..., :, None].expand(b, frames, size, size)  # (B, T, S, S)
    cols = (corners[..., 0, None] + offsets)[..., None, :].expand(b, frames, size, size)
    bi = torch.arange(b, device=device)[:, None, None, None].expand_as(rows)
    ti = torch.arange(frames, device=device)[None, :, None, None].expand_as(rows)
    clips = torch.zeros(b, frames, side, side, 3, dtype=torch.uint8, device=device)
    clips[bi, ti, rows, cols] = sprite[:, None].expand(b, frames, size, size, 3)
    return clips
