"""models/class_probe.py: the probes say "uses the class" of a prior trained where the class
decides the tokens, and "ignores it" of one that never saw a class."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from models.class_probe import class_probe, maskgit_class_accuracy, maskgit_samples
from models.priors import ARPrior, MaskedPrior, PriorConfig, masked_prior_from_ar

CFG = PriorConfig(vocab_size=16, num_classes=4, grid=(1, 2, 2), dim=32, layers=1, heads=2)


def toy_tokens(labels: torch.Tensor) -> torch.Tensor:
    """Class c -> tokens 4c .. 4c+3 in raster order: the class decides every token."""
    return labels[:, None] * 4 + torch.arange(4)[None]


def train_masked(prior: MaskedPrior, steps: int, use_class: bool) -> MaskedPrior:
    opt = torch.optim.AdamW(prior.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(0)
    cond = torch.full((32, 4), CFG.mask_id)
    state = torch.zeros(32, 4, dtype=torch.long)
    for _ in range(steps):
        labels = torch.randint(0, CFG.num_classes, (32,), generator=g)
        tokens = toy_tokens(labels)
        class_id = labels if use_class else torch.full_like(labels, CFG.null_class)
        masked = torch.rand(tokens.shape, generator=g) < torch.rand(32, 1, generator=g).clamp_min(0.25)
        masked[:, 0] = True  # at least one position to predict
        logits = prior(torch.where(masked, CFG.mask_id, tokens), cond, state, class_id)
        loss = (F.cross_entropy(logits.transpose(1, 2), tokens, reduction="none") * masked).sum() / masked.sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return prior.eval()


def test_a_prior_that_learned_the_class_shows_it_and_one_that_did_not_does_not():
    torch.manual_seed(0)
    labels = torch.arange(8) % CFG.num_classes
    tokens = toy_tokens(labels)
    follows = class_probe(train_masked(MaskedPrior(CFG), 80, use_class=True), tokens, labels)
    ignores = class_probe(train_masked(MaskedPrior(CFG), 80, use_class=False), tokens, labels)
    assert follows["kl_to_null"] > 0.5 and follows["ce_gap"] > 0.5 and follows["likelihood_accuracy"] == 1.0
    # (its class embeddings are untrained noise: a small KL, no information about the tokens)
    assert ignores["kl_to_null"] < 0.2 and ignores["ce_gap"] < 0.05 and ignores["likelihood_accuracy"] < 0.75


def test_maskgit_samples_follow_a_prior_that_follows_the_class():
    torch.manual_seed(0)
    prior = train_masked(MaskedPrior(CFG), 300, use_class=True)
    tokens = maskgit_samples(prior, [0, 1, 2, 3], steps=4, seed=5)  # one token per step
    assert (tokens == toy_tokens(torch.arange(4)).numpy()).all()
    # the accuracy helper: decode = identity, classify = the class whose tokens these are
    assert maskgit_class_accuracy(prior, lambda t: t, lambda clip: int(np.bincount(clip // 4).argmax()), samples=8,
                                  steps=4) == 1.0


def test_the_probe_reads_the_autoregressive_prior_and_its_masked_copy():
    torch.manual_seed(0)
    ar = ARPrior(CFG)
    labels = torch.arange(4)
    probe = class_probe(ar, toy_tokens(labels), labels)
    assert set(probe) == {"kl_to_null", "ce_gap", "likelihood_accuracy"} and probe["kl_to_null"] >= 0
    masked = masked_prior_from_ar(ar)
    # the shared parts are copied; the classes' AR input embeddings become the class token's
    ar_weights = ar.state_dict()
    for name, value in masked.state_dict().items():
        if name.startswith(("blocks.", "ln.", "head.", "embed.pos", "embed.cond", "embed.state")):
            assert torch.equal(value, ar_weights[name]), name
    assert torch.equal(masked.class_embed.weight, ar.embed.token.weight[CFG.vocab_size:])
    assert torch.equal(masked.embed.token.weight[:CFG.vocab_size], ar.embed.token.weight[:CFG.vocab_size])
    assert torch.equal(masked.head.weight, ar.head.weight)


def test_a_prior_with_class_adaln_learns_the_class():
    """The adaptive-layer-norm conditioning trains like the class token does (probe on the toy)."""
    from dataclasses import replace

    torch.manual_seed(0)
    cfg = replace(CFG, class_adaln=True)
    labels = torch.arange(8) % cfg.num_classes
    probe = class_probe(train_masked(MaskedPrior(cfg), 80, use_class=True), toy_tokens(labels), labels)
    assert probe["kl_to_null"] > 0.5 and probe["likelihood_accuracy"] == 1.0


def test_contrastive_alignment_teaches_a_class_blind_prior_the_class():
    """models/contrastive.py: a prior trained without its class (so it ignores it) learns to use
    it from contrastive alignment against a frozen copy of itself, with the class-conditional
    tokens' likelihood ratio as the only signal."""
    import copy
    from dataclasses import replace

    from models.contrastive import ContrastiveSettings, contrastive_loss

    torch.manual_seed(0)
    cfg = replace(CFG, class_adaln=True)
    prior = train_masked(MaskedPrior(cfg), 120, use_class=False).train()
    reference = copy.deepcopy(prior).eval().requires_grad_(False)
    labels = torch.arange(8) % cfg.num_classes
    before = class_probe(prior, toy_tokens(labels), labels)
    opt = torch.optim.AdamW(prior.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(1)
    settings = ContrastiveSettings(beta=0.5, negative_weight=2.0, min_ratio=0.5, null_share=0.1)
    for _ in range(60):
        batch = torch.randint(0, cfg.num_classes, (32,), generator=g)
        loss, gaps = contrastive_loss(prior, reference, toy_tokens(batch), batch, settings, generator=g)
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = class_probe(prior.eval(), toy_tokens(labels), labels)
    assert before["likelihood_accuracy"] < 0.75 and before["ce_gap"] < 0.05
    assert after["ce_gap"] > 0.5 and after["likelihood_accuracy"] == 1.0
    assert float(gaps["pos_gap"]) > float(gaps["neg_gap"])
