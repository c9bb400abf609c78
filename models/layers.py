"""Building blocks shared by the networks: causal 3D convolutions, per-frame normalization,
residual blocks, and a transformer block whose attention can run bidirectionally (masked
prior), causally, or causally with an explicit KV cache (autoregressive prior, ONNX-friendly).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class CausalConv3d(nn.Module):
    """3D convolution padded only on the past side in time (MAGVIT-v2), so output frame t never
    sees input frames after t, and a single frame is a valid input. The past is padded by
    replicating the first frame. Spatial padding is symmetric ("same")."""

    def __init__(self, cin: int, cout: int, kernel: tuple[int, int, int] = (3, 3, 3),
                 stride: tuple[int, int, int] = (1, 1, 1)):
        super().__init__()
        kt, kh, kw = kernel
        self.time_pad = kt - 1
        self.space_pad = (kw // 2, kw // 2, kh // 2, kh // 2)
        self.stride_t = stride[0]
        self.conv = nn.Conv3d(cin, cout, kernel, stride=stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: (B, C, T, H, W)
        x = F.pad(x, self.space_pad)  # zeros in space
        if self.time_pad:
            first = x[:, :, :1].expand(-1, -1, self.time_pad, -1, -1)
            x = torch.cat([first, x], dim=2)
        return self.conv(x)


class FrameNorm(nn.Module):
    """GroupNorm over (C, H, W) of each frame separately. A GroupNorm over time would leak the
    future into the past and break causality; the notes also say normalization keeps the
    quantizer from collapsing to a single code on this mostly-black data."""

    def __init__(self, channels: int, groups: int = 8):
        super().__init__()
        self.norm = nn.GroupNorm(min(groups, channels), channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, t, h, w = x.shape
        y = self.norm(x.transpose(1, 2).reshape(b * t, c, h, w))  # (B*T, C, H, W)
        return y.reshape(b, t, c, h, w).transpose(1, 2)


class ResBlock3d(nn.Module):
    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.norm1, self.conv1 = FrameNorm(cin), CausalConv3d(cin, cout)
        self.norm2, self.conv2 = FrameNorm(cout), CausalConv3d(cout, cout)
        self.skip = nn.Conv3d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))
        return self.skip(x) + h


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim {dim} must be divisible by heads {heads}")
        self.heads, self.head_dim = heads, dim // heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, causal: bool = False, past: tuple[torch.Tensor, torch.Tensor] | None = None
                ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        b, n, d = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)  # 3 x (B, H, n, Dh)
        if past is not None:
            k = torch.cat([past[0], k], dim=2)  # (B, H, P+n, Dh)
            v = torch.cat([past[1], v], dim=2)
        if past is not None:
            # Query i (absolute position P+i) may see keys 0..P+i. Built from shapes so that the
            # exported graph keeps P dynamic.
            total = k.shape[2]
            q_pos = torch.arange(n, device=x.device) + (total - n)
            allowed = torch.arange(total, device=x.device)[None, :] <= q_pos[:, None]  # (n, P+n)
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed)
        else:
            out = F.scaled_dot_product_attention(q, k, v, is_causal=causal)
        out = out.transpose(1, 2).reshape(b, n, d)  # (B, n, D)
        return self.proj(out), (k, v)


class TransformerBlock(nn.Module):
    """Pre-LayerNorm transformer block (GPT-2 / nanoGPT shape)."""

    def __init__(self, dim: int, heads: int, mlp_ratio: int = 4, dropout: float = 0.0):
        super().__init__()
        self.ln1, self.attn = nn.LayerNorm(dim), Attention(dim, heads)
        self.ln2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, mlp_ratio * dim), nn.GELU(approximate="tanh"),
                                 nn.Linear(mlp_ratio * dim, dim), nn.Dropout(dropout))

    def forward(self, x: torch.Tensor, causal: bool = False, past=None, modulation=None):
        """`modulation`: None, or (scale1, shift1, scale2, shift2), each (B, 1, D), applied to the
        two normalised inputs as h * (1 + scale) + shift (adaptive layer norm, conditioning that
        every position sees)."""
        h1, h2 = self.ln1, self.ln2
        if modulation is None:
            a, present = self.attn(h1(x), causal=causal, past=past)
            x = x + a
            return x + self.mlp(h2(x)), present
        s1, b1, s2, b2 = modulation
        a, present = self.attn(h1(x) * (1 + s1) + b1, causal=causal, past=past)
        x = x + a
        return x + self.mlp(h2(x) * (1 + s2) + b2), present


def init_weights(module: nn.Module) -> None:
    """GPT-2 style initialisation for linear and embedding layers."""
    for m in module.modules():
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Embedding):
            nn.init.normal_(m.weight, std=0.02)


def cosine_mask_ratio(u: torch.Tensor) -> torch.Tensor:
    """MaskGIT's cosine schedule: the share of unknown tokens still masked at progress u."""
    return torch.cos(u * math.pi / 2)
