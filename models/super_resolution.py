"""Learned x2 video super-resolution stages (32 -> 64, 64 -> 128 for the demo model).

Why pixel space with noise-conditioning augmentation (cascaded diffusion / W.A.L.T) rather than
a token-space transformer (Muse): it needs no second tokenizer at each resolution, costs one
network call per stage instead of a decoding loop, and the low-resolution input it refines is
exactly what the base model produced. During training the low-resolution input gets Gaussian
noise of a random level, and the level is an input; at serving a small fixed level makes the
stage robust to the base model's own artefacts.

The network works at the low resolution (cheap on a CPU) and emits the x2 residual through a
pixel shuffle, added to a bilinear upsample of its input.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class SRConfig:
    channels: int = 48
    blocks: int = 4
    max_noise: float = 0.1  # training noise levels ~ U[0, max_noise]
    serve_noise: float = 0.02  # the level used when serving (written into the manifest)


class FactorizedBlock(nn.Module):
    """Residual block of a spatial (1, 3, 3) and a temporal (3, 1, 1) convolution: most of a full
    3x3x3 convolution's reach at a third of its cost."""

    def __init__(self, c: int):
        super().__init__()
        self.spatial = nn.Conv3d(c, c, (1, 3, 3), padding=(0, 1, 1))
        self.temporal = nn.Conv3d(c, c, (3, 1, 1), padding=(1, 0, 0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.temporal(F.silu(self.spatial(F.silu(x))))


class SuperResolution(nn.Module):
    def __init__(self, cfg: SRConfig):
        super().__init__()
        self.cfg = cfg
        c = cfg.channels
        self.head = nn.Conv3d(4, c, 3, padding=1)  # RGB + noise-level map
        self.body = nn.Sequential(*[FactorizedBlock(c) for _ in range(cfg.blocks)])
        self.tail = nn.Conv3d(c, 3 * 4, 3, padding=1)  # 3 channels x (2x2 sub-pixels)
        nn.init.zeros_(self.tail.weight)
        nn.init.zeros_(self.tail.bias)

    def forward(self, video: torch.Tensor, noise_level: torch.Tensor) -> torch.Tensor:
        """video (B, 3, T, h, w) in [0, 1], noise_level (B,) -> (B, 3, T, 2h, 2w)."""
        if video.ndim != 5 or video.shape[1] != 3:
            raise ValueError(f"video must be (B, 3, T, h, w); got {tuple(video.shape)}")
        if noise_level.shape != video.shape[:1]:
            raise ValueError(f"noise_level must be (B,); got {tuple(noise_level.shape)}")
        b, _, t, h, w = video.shape
        level = noise_level.view(b, 1, 1, 1, 1).expand(b, 1, t, h, w)
        x = self.body(self.head(torch.cat([video * 2 - 1, level], dim=1)))
        res = self.tail(x)  # (B, 12, T, h, w)
        res = res.reshape(b, 3, 2, 2, t, h, w).permute(0, 1, 4, 5, 2, 6, 3).reshape(b, 3, t, 2 * h, 2 * w)
        up = F.interpolate(video, scale_factor=(1, 2, 2), mode="trilinear", align_corners=False)
        return up + res

    def loss(self, low: torch.Tensor, high: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Noise-conditioning augmentation: corrupt the input with a random level, tell the net the level."""
        b = low.shape[0]
        level = torch.rand(b, device=low.device, generator=generator) * self.cfg.max_noise
        noisy = low + torch.randn(low.shape, device=low.device, generator=generator) * level.view(b, 1, 1, 1, 1)
        pred = self(noisy, level)
        return F.mse_loss(pred, high) + 0.1 * F.l1_loss(pred, high)
