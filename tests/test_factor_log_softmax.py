"""Review R4: one per-factor log-softmax (models.priors.factor_log_softmax); the cross-entropy is
minus its gather over each factor's slice, and the class probe computes it once per class."""
from __future__ import annotations


import pytest
import torch
import torch.nn.functional as F

from models import class_probe as probe_module
from models.priors import MaskedPrior, PriorConfig, factor_log_softmax, sub_tokens, token_cross_entropy


@pytest.mark.parametrize("factors", [(), (8, 8), (4, 2, 8)])
def test_the_cross_entropy_is_each_factors_cross_entropy_summed(factors):
    cfg = PriorConfig(vocab_size=64, factors=factors, dim=32, layers=1, heads=2)
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 5, cfg.head_size, generator=g)
    targets = torch.randint(0, 64, (3, 5), generator=g)
    parts = logits.split(list(factors or (64,)), -1)
    subs = sub_tokens(targets, factors) if factors else [targets]
    want = sum(F.cross_entropy(p.reshape(-1, p.shape[-1]), s.reshape(-1), reduction="none") for p, s in zip(parts, subs))
    got = token_cross_entropy(cfg, logits, targets)
    assert torch.equal(got, want.reshape(targets.shape))
    log_p = factor_log_softmax(cfg, logits)
    assert log_p.shape == logits.shape
    assert torch.equal(token_cross_entropy(cfg, logits, targets, log_probs=log_p), got)
    for part in log_p.split(list(factors or (64,)), -1):  # each slice is a distribution
        torch.testing.assert_close(part.exp().sum(-1), torch.ones(3, 5))


def test_the_class_probe_takes_one_log_softmax_per_class(monkeypatch):
    cfg = PriorConfig(vocab_size=16, num_classes=4, grid=(1, 2, 2), dim=32, layers=1, heads=2)
    calls = []
    real = probe_module.factor_log_softmax
    monkeypatch.setattr(probe_module, "factor_log_softmax", lambda c, logits: calls.append(1) or real(c, logits))
    torch.manual_seed(0)
    labels = torch.arange(4)
    probe_module.class_probe(MaskedPrior(cfg).eval(), labels[:, None] * 4 + torch.arange(4)[None], labels)
    assert len(calls) == cfg.num_classes + 1  # the null class's, then one per class (not two)
