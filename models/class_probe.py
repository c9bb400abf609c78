"""Does a prior use the class? Probes logged while training and used by the model card.

A masked prior can learn to predict every token from the others and ignore the class token: its
loss barely moves, yet MaskGIT samples show random digits. Three measures say whether it uses the
class, from the cheapest to the one that matters:
- `kl_to_null`: KL(p(x | c) || p(x | null class)) per position, nats; zero when the class changes
  nothing. Necessary, not sufficient (it rises when the class only shifts every logit a little).
- `ce_gap`: cross-entropy of the true tokens with a wrong class minus with the true class,
  nats per token: how much the class tells about *these* tokens.
- `likelihood_accuracy`: the prior as a classifier, argmax_c log p(x | c) over clips.
And, for a masked prior, `maskgit_class_accuracy`: the share of MaskGIT samples that a digit
reader reads as the class asked for -- the signal that class-conditional generation works.

The masked prior is probed on class-conditional inputs (no condition tokens) with a fixed share
of positions masked (`mask_ratio`, 1.0 = every position); the autoregressive prior teacher-forced.
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch

from models.priors import ARPrior, MaskedPrior, factor_log_softmax, token_cross_entropy
from server.samplers import maskgit_init, maskgit_step
from server.tasks import STATE_NONE


def _logits(prior, tokens: torch.Tensor, class_id: torch.Tensor, masked: torch.Tensor) -> torch.Tensor:
    """(B, N, V) logits of the class-conditional task for each position."""
    cfg = prior.cfg
    cond = torch.full_like(tokens, cfg.mask_id)  # no condition token anywhere
    state = torch.full_like(tokens, STATE_NONE)
    if isinstance(prior, MaskedPrior):
        inputs = torch.where(masked, torch.full_like(tokens, cfg.mask_id), tokens)
        return prior(inputs, cond, state, class_id)
    if isinstance(prior, ARPrior):
        return prior(prior.input_ids(tokens, class_id), cond, state)[0]
    raise TypeError(f"not a prior: {type(prior).__name__}")


@torch.no_grad()
def class_probe(prior, tokens: torch.Tensor, labels: torch.Tensor, mask_ratio: float = 1.0,
                seed: int = 0) -> dict[str, float]:
    """tokens: (B, N) int64 token grids of real clips; labels: (B,) their classes."""
    cfg = prior.cfg
    b, n = tokens.shape
    g = torch.Generator(device="cpu").manual_seed(seed)
    if isinstance(prior, MaskedPrior):  # the same positions masked for every class
        scores = torch.rand(b, n, generator=g).to(tokens.device)
        masked = scores.argsort(1).argsort(1) < max(1, round(mask_ratio * n))
    else:
        masked = torch.ones_like(tokens, dtype=torch.bool)  # teacher forcing scores every token
    null = torch.full((b,), cfg.null_class, device=tokens.device)
    # Log-probabilities per factor's slice for a factorized prior: the KL below then sums each
    # factor's KL (that of independent sub-tokens).
    log_null = factor_log_softmax(cfg, _logits(prior, tokens, null, masked).float())  # (B, N, head size)
    weight = masked.float()
    nll = torch.empty(cfg.num_classes, b, device=tokens.device)  # per class, per clip: mean CE
    kl_true = torch.zeros(b, device=tokens.device)
    for c in range(cfg.num_classes):
        logits = _logits(prior, tokens, torch.full_like(null, c), masked).float()
        log_c = factor_log_softmax(cfg, logits)
        ce = token_cross_entropy(cfg, logits, tokens, log_probs=log_c)  # (B, N), from the same log-softmax
        nll[c] = (ce * weight).sum(1) / weight.sum(1)
        is_true = labels == c
        if is_true.any():
            kl = (log_c.exp() * (log_c - log_null)).sum(-1)  # (B, N)
            kl_true = torch.where(is_true, (kl * weight).sum(1) / weight.sum(1), kl_true)
    true_ce = nll.gather(0, labels[None])[0]
    wrong_ce = (nll.sum(0) - true_ce) / (cfg.num_classes - 1)
    return {"kl_to_null": float(kl_true.mean()), "ce_gap": float((wrong_ce - true_ce).mean()),
            "likelihood_accuracy": float((nll.argmin(0) == labels).float().mean())}


@torch.no_grad()
def maskgit_samples(prior: MaskedPrior, labels: list[int], *, steps: int = 12, guidance_scale: float = 0.0,
                    seed: int = 0) -> np.ndarray:
    """Class-conditional MaskGIT samples with the server's own sampler: (B, N) token ids."""
    cfg = prior.cfg
    device = next(prior.parameters()).device
    n = cfg.num_tokens
    states = [maskgit_init(np.zeros(n, np.int64), np.zeros(n, bool), mask_id=cfg.mask_id, steps=steps,
                           guidance_scale=guidance_scale, seed=seed + i) for i in range(len(labels))]
    classes = torch.tensor(labels, device=device)
    null = torch.full_like(classes, cfg.null_class)
    cond = torch.full((len(labels), n), cfg.mask_id, device=device)
    state = torch.full_like(cond, STATE_NONE)
    for _ in range(steps):
        tokens = torch.from_numpy(np.stack([s.tokens for s in states])).to(device)
        logits = prior(tokens, cond, state, classes).float().cpu().numpy()
        uncond = prior(tokens, cond, state, null).float().cpu().numpy() if guidance_scale else None
        maskgit_step(states, logits, uncond)
    return np.stack([s.tokens for s in states])


def maskgit_class_accuracy(prior: MaskedPrior, decode: Callable[[np.ndarray], np.ndarray],
                           classify: Callable[[np.ndarray], int], samples: int = 20, steps: int = 12,
                           guidance_scale: float = 0.0, seed: int = 0) -> float:
    """Share of MaskGIT samples (classes 0, 1, ... in turn) that `classify` reads as the class.
    `decode`: (B, N) tokens -> uint8 (B, T, H, W, 3); `classify`: one clip -> its class."""
    labels = [i % prior.cfg.num_classes for i in range(samples)]
    videos = decode(maskgit_samples(prior, labels, steps=steps, guidance_scale=guidance_scale, seed=seed))
    return float(np.mean([classify(video) == label for video, label in zip(videos, labels)]))
