"""Condition contrastive alignment for the masked prior: teach it that the class matters.

The shipped masked prior learned to predict tokens from each other and to ignore its class
(models/class_probe.py): plain cross-entropy barely rewards the class, since at the usual mask
ratios the visible tokens already say most of what the class would. Condition Contrastive
Alignment (Chen et al. 2024, "Toward Guidance-Free AR Visual Generation via Condition Contrastive
Alignment") fine-tunes a pretrained conditional model against a frozen copy of itself: the
likelihood of a clip under its own class must rise relative to the reference, and under another
class (the batch rolled by one, as the paper does) must fall. Its optimum is the reference
distribution sharpened the way classifier-free guidance sharpens it, so the class steers samples
without (or with less) guidance.

A masked prior has no exact likelihood: the log-probability of the masked tokens given the
visible ones, under one shared mask, stands in for it. Masks are drawn at high ratios
(`min_ratio`..1), where the class is what decides the glyph. Rows whose class is dropped to the
null class (`null_share`) count as positives under both labels, which keeps the unconditional
distribution (for guidance) where it was.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from models.priors import MaskedPrior
from server.tasks import STATE_NONE


@dataclass(frozen=True)
class ContrastiveSettings:
    beta: float = 0.05  # scale of the log-likelihood ratios inside the sigmoid
    negative_weight: float = 10.0  # the paper's lambda: weight of the wrong-class term
    min_ratio: float = 0.85  # masks cover min_ratio..1 of the positions
    null_share: float = 0.1  # rows trained as unconditional positives


def high_ratio_mask(b: int, n: int, min_ratio: float, device, generator: torch.Generator | None = None) -> torch.Tensor:
    """bool (B, N), True = masked: per row a ratio U[min_ratio, 1], at least one position."""
    ratio = min_ratio + (1 - min_ratio) * torch.rand(b, 1, device=device, generator=generator)
    rank = torch.rand(b, n, device=device, generator=generator).argsort(1).argsort(1)
    return rank < (ratio * n).ceil().clamp_min(1)


def masked_log_likelihood(prior: MaskedPrior, inputs, targets, masked, class_id) -> torch.Tensor:
    """Sum over masked positions of log p(target | visible tokens, class): (B,)."""
    cond = torch.full_like(targets, prior.cfg.mask_id)  # class-conditional generation: no condition
    state = torch.full_like(targets, STATE_NONE)
    ce = prior.token_loss(prior(inputs, cond, state, class_id), targets)
    return -(ce * masked).sum(1)


def contrastive_loss(prior: MaskedPrior, reference: MaskedPrior, targets: torch.Tensor, labels: torch.Tensor,
                     settings: ContrastiveSettings, generator: torch.Generator | None = None
                     ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """targets: (B, N) token grids of real clips; labels: (B,) their classes. Returns the loss and
    the log-likelihood gaps to the reference (positive: own class; negative: a wrong one)."""
    cfg = prior.cfg
    b, n = targets.shape
    masked = high_ratio_mask(b, n, settings.min_ratio, targets.device, generator)
    inputs = torch.where(masked, torch.full_like(targets, cfg.mask_id), targets)
    wrong = torch.roll(labels, -1)
    null = torch.rand(b, device=targets.device, generator=generator) < settings.null_share
    positive = torch.where(null, cfg.null_class, labels)
    negative = torch.where(null, cfg.null_class, wrong)
    rows = (torch.cat([inputs, inputs]), torch.cat([targets, targets]), torch.cat([masked, masked]),
            torch.cat([positive, negative]))
    own = masked_log_likelihood(prior, *rows)
    with torch.no_grad():
        ref = masked_log_likelihood(reference, *rows)
    gap = own - ref
    pos_gap, neg_gap = gap[:b], gap[b:]
    # A "negative" whose label is the true one (a null row, or a batch neighbour of the same
    # class) is a positive: push it up with weight 1, as the paper does.
    same = null | (wrong == labels)
    sign = torch.where(same, 1.0, -1.0)
    weight = torch.where(same, 1.0, settings.negative_weight)
    loss = -F.logsigmoid(settings.beta * pos_gap).mean() - (weight * F.logsigmoid(sign * settings.beta * neg_gap)).mean()
    loss = loss / max(settings.negative_weight, 1.0)
    return loss, {"pos_gap": pos_gap.mean().detach(), "neg_gap": neg_gap[~same].mean().detach() if (~same).any()
                  else torch.tensor(0.0)}
