"""The video tokenizer: a causal 3D-CNN autoencoder with lookup-free quantization (LFQ).

Why LFQ (MAGVIT-v2) over a learned VQ codebook: there is no codebook to collapse or to
re-seed, the code of a latent is just the signs of its channels (so encoding is an argmax-free
`> 0` that exports to ONNX as a comparison), and the entropy term keeps code usage high from
the first steps — the failure the team's notes saw on this mostly-black data.

Shapes (demo configuration): video (B, 3, 16, 32, 32) in [0, 1] -> latents (B, 10, 4, 8, 8)
-> tokens (B, 4, 8, 8) in [0, 1024). Time is causal: latent frame j depends only on frames
<= 4j + 3, and a single image (T = 1) encodes to one latent frame.

A factorized vocabulary (`TokenizerConfig.factors`, MAGVIT-v2 at 2^16..2^18 codes): the bits
are split into groups, low bits first, e.g. bits=18, factors=(9, 9). The token id is still the
integer of all its bits, so group k's sub-token is (id >> offset_k) & (2^b_k - 1) — the digits of
the id in the mixed radix (2^b_0, 2^b_1, ...), which is how the priors and the server split ids
(`token_factors`). Only the codebook-entropy term changes: it is computed per group (the entropy
of each group's batch-mean distribution over its 2^b_k codes, summed), because the one over all
2^bits codes costs O(2^bits * N) per step (17-28 s at 2^16+ on two cores). The sum equals the
full term when the groups are independent and bounds it from above otherwise (H(X, Y) <=
H(X) + H(Y)): it asks every group to use all its codes, not every combination to occur.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from models.layers import CausalConv3d, FrameNorm, ResBlock3d


@dataclass
class TokenizerConfig:
    channels: tuple[int, ...] = (32, 64, 128)  # per level; each level after the first halves T, H, W
    bits: int = 10  # LFQ bits per token: vocabulary 2**bits
    mid_blocks: int = 2  # residual blocks at the lowest resolution
    entropy_weight: float = 0.1
    entropy_temperature: float = 0.05
    commit_weight: float = 0.25
    # Bit-group sizes, low bits first, summing to `bits` (e.g. (9, 9) for 18 bits); () = one group
    # of all the bits (unfactorized). See the module docstring.
    factors: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        self.factors = tuple(int(b) for b in self.factors)
        if self.factors and (sum(self.factors) != self.bits or min(self.factors) < 1):
            raise ValueError(f"factors {self.factors} must be positive bit-group sizes summing to bits={self.bits}")

    @property
    def vocab_size(self) -> int:
        return 2 ** self.bits

    @property
    def bit_groups(self) -> tuple[int, ...]:
        """The bit-group sizes the codebook entropy is computed over: `factors`, or all the bits."""
        return self.factors or (self.bits,)

    @property
    def token_factors(self) -> tuple[int, ...]:
        """The sub-vocabulary sizes 2^b_k (what the priors' `PriorConfig.factors` and the manifest's
        `token_factors` hold); () when unfactorized."""
        return tuple(2 ** b for b in self.factors)

    @property
    def stride(self) -> int:
        return 2 ** (len(self.channels) - 1)


class Downsample(nn.Module):
    """Halves T, H and W. The past is padded so that T becomes even first: latent i then covers
    frames 2i and 2i+1 exactly (the last frames are never dropped), and T = 1 still works."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv = nn.Conv3d(cin, cout, 3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, T, H, W) -> (B, C', ceil(T/2), H/2, W/2)
        t = x.shape[2]
        past = 1 + t % 2  # one frame of kernel context, plus one to make T even
        x = F.pad(x, (1, 1, 1, 1))
        x = torch.cat([x[:, :, :1].expand(-1, -1, past, -1, -1), x], dim=2)
        return self.conv(x)


class Upsample(nn.Module):
    """Doubles T (depth-to-space in time: latent i -> frames 2i, 2i+1) and H, W (nearest)."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.time = CausalConv3d(cin, 2 * cout)
        self.conv = CausalConv3d(cout, cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, t, h, w = x.shape
        y = self.time(x)  # (B, 2C, T, H, W)
        y = y.reshape(b, 2, -1, t, h, w).permute(0, 2, 3, 1, 4, 5).reshape(b, -1, 2 * t, h, w)  # (B, C, 2T, H, W)
        y = F.interpolate(y, scale_factor=(1, 2, 2), mode="nearest")
        return self.conv(y)


class Encoder(nn.Module):
    def __init__(self, cfg: TokenizerConfig):
        super().__init__()
        ch = cfg.channels
        layers: list[nn.Module] = [CausalConv3d(3, ch[0]), ResBlock3d(ch[0], ch[0])]
        for cin, cout in zip(ch[:-1], ch[1:]):
            layers += [Downsample(cin, cout), ResBlock3d(cout, cout)]
        layers += [ResBlock3d(ch[-1], ch[-1]) for _ in range(cfg.mid_blocks)]
        layers += [FrameNorm(ch[-1]), nn.SiLU(), nn.Conv3d(ch[-1], cfg.bits, 1)]
        self.net = nn.Sequential(*layers)

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        return self.net(video * 2.0 - 1.0)  # [0, 1] -> [-1, 1]


class Decoder(nn.Module):
    def __init__(self, cfg: TokenizerConfig):
        super().__init__()
        ch = cfg.channels[::-1]
        layers: list[nn.Module] = [CausalConv3d(cfg.bits, ch[0])]
        layers += [ResBlock3d(ch[0], ch[0]) for _ in range(cfg.mid_blocks)]
        for cin, cout in zip(ch[:-1], ch[1:]):
            layers += [Upsample(cin, cout), ResBlock3d(cout, cout)]
        layers += [FrameNorm(ch[-1]), nn.SiLU(), CausalConv3d(ch[-1], 3)]
        self.net = nn.Sequential(*layers)

    def forward(self, codes: torch.Tensor) -> torch.Tensor:
        return (self.net(codes) + 1.0) / 2.0  # [-1, 1] -> [0, 1], not clamped (the caller clips)


class LFQ(nn.Module):
    """Lookup-free quantization: each latent channel becomes a bit (its sign); a token is the
    integer those bits spell. The entropy loss (MAGVIT-v2) asks each latent to be confident
    (low per-token entropy) while the batch uses the whole vocabulary (high codebook entropy)."""

    def __init__(self, cfg: TokenizerConfig):
        super().__init__()
        self.cfg = cfg
        self.register_buffer("powers", 2 ** torch.arange(cfg.bits), persistent=False)

    def codes_to_tokens(self, codes: torch.Tensor) -> torch.Tensor:  # (B, bits, t, h, w) -> (B, t, h, w)
        bits = (codes > 0).long()
        return (bits * self.powers.view(1, -1, 1, 1, 1)).sum(dim=1)

    def tokens_to_codes(self, tokens: torch.Tensor) -> torch.Tensor:  # (B, t, h, w) -> (B, bits, t, h, w) in {-1, 1}
        bits = (tokens.unsqueeze(1) // self.powers.view(1, -1, 1, 1, 1)) % 2
        return bits.float() * 2.0 - 1.0

    def codebook_entropy(self, p1: torch.Tensor) -> torch.Tensor:
        """Entropy of the batch-mean code distribution, summed over the bit groups. p1: (N, bits),
        each latent's p(bit = +1). Unfactorized this is the one group of all 2**bits codes."""
        total, offset = p1.new_zeros(()), 0
        for b in self.cfg.bit_groups:
            p = p1[:, offset:offset + b]  # (N, b)
            powers = 2 ** torch.arange(b, device=p1.device)
            codes = ((torch.arange(2 ** b, device=p1.device)[:, None] // powers) % 2).float()  # (2^b, b)
            logp = codes @ torch.log(p.clamp_min(1e-6)).T + (1 - codes) @ torch.log((1 - p).clamp_min(1e-6)).T  # (2^b, N)
            mean_p = logp.exp().mean(dim=1)
            total = total - (mean_p * torch.log(mean_p.clamp_min(1e-12))).sum()
            offset += b
        return total

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        q = torch.where(z > 0, torch.ones_like(z), -torch.ones_like(z))
        q_st = z + (q - z).detach()  # straight-through estimator
        commit = F.mse_loss(z, q.detach())
        # p(bit = +1) = sigmoid(4 z / tau): the softmax over the two codes of -||z - c||^2 / tau.
        logit = 4.0 * z.float() / self.cfg.entropy_temperature
        p1 = torch.sigmoid(logit).movedim(1, -1).reshape(-1, self.cfg.bits)  # (N, bits)
        per_token = F.binary_cross_entropy_with_logits(logit, torch.sigmoid(logit), reduction="none").sum(1).mean()
        entropy = per_token - self.codebook_entropy(p1)
        tokens = self.codes_to_tokens(q)
        usage = torch.unique(tokens).numel() / 2 ** self.cfg.bits
        return q_st, tokens, {"commit": commit, "entropy": entropy, "usage": torch.tensor(usage)}


class VideoTokenizer(nn.Module):
    def __init__(self, cfg: TokenizerConfig):
        super().__init__()
        self.cfg = cfg
        self.encoder, self.decoder, self.quantizer = Encoder(cfg), Decoder(cfg), LFQ(cfg)

    @staticmethod
    def check_video(video: torch.Tensor, stride: int) -> None:
        if video.ndim != 5 or video.shape[1] != 3:
            raise ValueError(f"video must be (B, 3, T, H, W); got {tuple(video.shape)}")
        if video.shape[3] % stride or video.shape[4] % stride:
            raise ValueError(f"H and W must be multiples of {stride}; got {tuple(video.shape[3:])}")

    def encode(self, video: torch.Tensor) -> torch.Tensor:
        """(B, 3, T, H, W) in [0, 1] -> tokens (B, ceil(T/s), H/s, W/s) int64."""
        self.check_video(video, self.cfg.stride)
        return self.quantizer.codes_to_tokens(self.encoder(video))

    def decode(self, tokens: torch.Tensor) -> torch.Tensor:
        """tokens (B, t, h, w) -> video (B, 3, s*t, s*h, s*w) in about [0, 1]. A clip of T frames
        encoded to t = ceil(T/s) latent frames is the last T of the decoded frames."""
        if tokens.ndim != 4:
            raise ValueError(f"tokens must be (B, t, h, w); got {tuple(tokens.shape)}")
        if tokens.min() < 0 or tokens.max() >= self.cfg.vocab_size:
            raise ValueError(f"tokens must lie in [0, {self.cfg.vocab_size})")
        return self.decoder(self.quantizer.tokens_to_codes(tokens))

    def forward(self, video: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Reconstruction and losses for training."""
        self.check_video(video, self.cfg.stride)
        q, tokens, aux = self.quantizer(self.encoder(video))
        # The encoder pads the past up to a multiple of the stride, so the input's frames are the
        # last T of the s*t decoded ones.
        recon = self.decoder(q)[:, :, q.shape[2] * self.cfg.stride - video.shape[2]:]
        mse = F.mse_loss(recon, video)
        loss = mse + 0.1 * F.l1_loss(recon, video) + self.cfg.commit_weight * aux["commit"] \
            + self.cfg.entropy_weight * aux["entropy"]
        return recon, {"loss": loss, "mse": mse, **aux}


class EncoderExport(nn.Module):
    """ONNX view: video (B, 3, T, H, W) float in [0, 1] -> tokens (B, t, h, w) int64."""

    def __init__(self, tok: VideoTokenizer):
        super().__init__()
        self.tok = tok

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        return self.tok.quantizer.codes_to_tokens(self.tok.encoder(video))


class DecoderExport(nn.Module):
    """ONNX view: tokens (B, t, h, w) int64 -> video (B, 3, T, H, W) float, about [0, 1]."""

    def __init__(self, tok: VideoTokenizer):
        super().__init__()
        self.tok = tok

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.tok.decoder(self.tok.quantizer.tokens_to_codes(tokens))
