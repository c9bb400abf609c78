"""Shapes, causality, the KV cache and input checks of every network, on tiny configurations."""
from __future__ import annotations

import pytest
import torch

from models.checkpoint import build, config_from_dict
from models.priors import ARPrior, MaskedPrior, PriorConfig
from models.super_resolution import SRConfig, SuperResolution
from models.tokenizer import TokenizerConfig, VideoTokenizer

TOKENIZER = TokenizerConfig(channels=(8, 16, 32), bits=6, mid_blocks=1)  # stride 4, vocabulary 64
PRIOR = PriorConfig(vocab_size=64, dim=32, layers=1, heads=2)  # grid (4, 8, 8)
SR = SRConfig(channels=8, blocks=1)


@pytest.fixture(scope="module")
def tokenizer() -> VideoTokenizer:
    torch.manual_seed(0)
    return VideoTokenizer(TOKENIZER).eval()


def prior_inputs(cfg: PriorConfig, batch: int = 2, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    n = cfg.num_tokens
    tokens = torch.randint(0, cfg.vocab_size + 1, (batch, n), generator=g)  # + [MASK]
    cond = torch.randint(0, cfg.vocab_size + 1, (batch, n), generator=g)  # + no condition
    state = torch.randint(0, 3, (batch, n), generator=g)
    class_id = torch.randint(0, cfg.num_classes + 1, (batch,), generator=g)  # + no class
    return tokens, cond, state, class_id


# -- tokenizer --------------------------------------------------------------------------------

def test_tokenizer_shapes(tokenizer):
    video = torch.rand(2, 3, 16, 32, 32)
    with torch.no_grad():
        tokens = tokenizer.encode(video)
        assert tokens.shape == (2, 4, 8, 8) and tokens.dtype == torch.int64
        assert tokens.min() >= 0 and tokens.max() < 64
        out = tokenizer.decode(tokens)
        assert out.shape == (2, 3, 16, 32, 32)
        recon, losses = tokenizer(video)
    assert recon.shape == video.shape
    assert {"loss", "mse", "commit", "entropy", "usage"} <= set(losses)
    assert torch.isfinite(losses["loss"])
    # Other sizes: H, W multiples of the stride, any T.
    with torch.no_grad():
        assert tokenizer.encode(torch.rand(1, 3, 8, 16, 24)).shape == (1, 2, 4, 6)
        assert tokenizer.decode(torch.zeros(1, 2, 4, 6, dtype=torch.long)).shape == (1, 3, 8, 16, 24)


def test_single_image_is_one_latent_frame_of_a_still_clip(tokenizer):
    image = torch.rand(1, 3, 1, 32, 32)
    with torch.no_grad():
        tokens = tokenizer.encode(image)
        assert tokens.shape == (1, 1, 8, 8)
        assert tokenizer.decode(tokens).shape == (1, 3, 4, 32, 32)
        still = tokenizer.encode(image.expand(-1, -1, 16, -1, -1).contiguous())
        recon, _ = tokenizer(image)
    assert recon.shape == image.shape
    # A still clip tokenizes to the image's tokens in every latent frame.
    for j in range(4):
        assert torch.equal(still[:, j], tokens[:, 0])


@pytest.mark.parametrize("t", [1, 4, 7, 8, 12, 15])
def test_tokenizer_is_causal(tokenizer, t):
    torch.manual_seed(t)
    video = torch.rand(1, 3, 16, 32, 32)
    changed = video.clone()
    changed[:, :, t:] = torch.rand(1, 3, 16 - t, 32, 32)
    with torch.no_grad():
        a, b = tokenizer.encode(video), tokenizer.encode(changed)
        za, zb = tokenizer.encoder(video), tokenizer.encoder(changed)
    earlier = [j for j in range(4) if 4 * j + 3 < t]  # latent frames whose frames all precede t
    for j in earlier:
        assert torch.equal(a[:, j], b[:, j]), f"latent frame {j} changed when frames >= {t} did"
    later = [j for j in range(4) if j not in earlier]
    assert all(not torch.allclose(za[:, :, j], zb[:, :, j]) for j in later)


def test_odd_length_clip_reconstructs_its_own_frames(tokenizer):
    # 5 frames -> 2 latent frames (the past is padded): the reconstruction of frame f must come
    # from the latent frame that saw frame f, so changing frame f changes reconstructed frame f.
    video = torch.rand(1, 3, 5, 32, 32, requires_grad=True)
    recon, _ = tokenizer(video)
    assert recon.shape == video.shape
    for f in range(5):
        (grad,) = torch.autograd.grad(recon[:, :, f].sum(), video, retain_graph=True)
        assert grad[:, :, f].abs().sum() > 0, f"reconstructed frame {f} ignores input frame {f}"
        if f == 0:  # the first latent frame holds frame 0 alone
            assert grad[:, :, 1:].abs().sum() == 0, "reconstructed frame 0 sees later frames"


def test_lfq_round_trip(tokenizer):
    lfq = tokenizer.quantizer
    tokens = torch.randint(0, 64, (2, 3, 4, 5))
    codes = lfq.tokens_to_codes(tokens)
    assert codes.shape == (2, 6, 3, 4, 5) and set(codes.unique().tolist()) <= {-1.0, 1.0}
    assert torch.equal(lfq.codes_to_tokens(codes), tokens)
    assert torch.equal(lfq.codes_to_tokens(lfq.tokens_to_codes(torch.arange(64).view(1, 4, 4, 4))),
                       torch.arange(64).view(1, 4, 4, 4))
    z = torch.randn(2, 6, 3, 4, 5)
    assert torch.equal(lfq.tokens_to_codes(lfq.codes_to_tokens(z)), torch.where(z > 0, 1.0, -1.0))


def test_tokenizer_rejects_bad_inputs(tokenizer):
    with pytest.raises(ValueError, match=r"\(B, 3, T, H, W\)"):
        tokenizer.encode(torch.rand(3, 16, 32, 32))  # no batch axis
    with pytest.raises(ValueError, match=r"\(B, 3, T, H, W\)"):
        tokenizer.encode(torch.rand(1, 4, 16, 32, 32))  # RGBA
    with pytest.raises(ValueError, match="multiples of 4"):
        tokenizer.encode(torch.rand(1, 3, 16, 30, 32))
    with pytest.raises(ValueError, match="multiples of 4"):
        tokenizer(torch.rand(1, 3, 16, 32, 34))
    with pytest.raises(ValueError, match=r"\(B, t, h, w\)"):
        tokenizer.decode(torch.zeros(4, 8, 8, dtype=torch.long))
    with pytest.raises(ValueError, match=r"\[0, 64\)"):
        tokenizer.decode(torch.full((1, 1, 8, 8), 64))
    with pytest.raises(ValueError, match=r"\[0, 64\)"):
        tokenizer.decode(torch.full((1, 1, 8, 8), -1))


# -- priors -----------------------------------------------------------------------------------

def test_masked_prior_logits():
    torch.manual_seed(0)
    prior = MaskedPrior(PRIOR).eval()
    with torch.no_grad():
        logits = prior(*prior_inputs(PRIOR, batch=3))
    assert logits.shape == (3, 256, 64)
    assert torch.isfinite(logits).all()
    # The prior is bidirectional: a later token changes the logits of an earlier position.
    tokens, cond, state, class_id = prior_inputs(PRIOR, batch=1)
    other = tokens.clone()
    other[0, -1] = (other[0, -1] + 1) % 64
    with torch.no_grad():
        assert not torch.allclose(prior(tokens, cond, state, class_id)[0, 0], prior(other, cond, state, class_id)[0, 0])
        # The class steers it.
        assert not torch.allclose(prior(tokens, cond, state, torch.tensor([3])),
                                  prior(tokens, cond, state, torch.tensor([10])))


def test_masked_prior_rejects_bad_inputs():
    prior = MaskedPrior(PRIOR).eval()
    tokens, cond, state, class_id = prior_inputs(PRIOR)
    with pytest.raises(ValueError, match="token ids"):
        prior(torch.full_like(tokens, 65), cond, state, class_id)  # 64 is [MASK]; 65 is nothing
    with pytest.raises(ValueError, match="token ids"):
        prior(torch.full_like(tokens, -1), cond, state, class_id)
    with pytest.raises(ValueError, match="class ids"):
        prior(tokens, cond, state, torch.tensor([11, 0]))
    with pytest.raises(ValueError, match="class_id must be"):
        prior(tokens, cond, state, torch.tensor([1]))
    with pytest.raises(ValueError, match="alike"):
        prior(tokens, cond[:, :-1], state, class_id)
    with pytest.raises(ValueError, match="alike"):
        prior(tokens[0], cond[0], state[0], class_id)
    with pytest.raises(ValueError, match="whole grid of 256"):
        prior(tokens[:, :100], cond[:, :100], state[:, :100], class_id)
    with pytest.raises(ValueError, match="condition token ids"):
        prior(tokens, torch.full_like(cond, 65), state, class_id)
    with pytest.raises(ValueError, match="token states"):
        prior(tokens, cond, torch.full_like(state, 3), class_id)


def test_ar_prior_kv_cache_matches_full_forward():
    torch.manual_seed(0)
    cfg = PriorConfig(vocab_size=64, dim=32, layers=2, heads=2)
    prior = ARPrior(cfg).eval()
    tokens, cond, state, class_id = prior_inputs(cfg)
    tokens = tokens.clamp_max(63)
    ids = prior.input_ids(tokens, class_id)
    assert ids.shape == (2, 256) and torch.equal(ids[:, 0], class_id + 64) and torch.equal(ids[:, 1:], tokens[:, :-1])
    with torch.no_grad():
        full, keys, values = prior(ids, cond, state)
        assert full.shape == (2, 256, 64)
        assert keys.shape == values.shape == (2, 2, 2, 256, 16)  # (L, B, H, N, Dh)
        # Prefill with an empty cache (as the exported graph does), then chunks, then one at a time.
        empty = torch.zeros(2, 2, 2, 0, 16)
        pieces = []
        logits, pk, pv = prior(ids[:, :10], cond[:, :10], state[:, :10], empty, empty)
        pieces.append(logits)
        logits, pk, pv = prior(ids[:, 10:15], cond[:, 10:15], state[:, 10:15], pk, pv)
        pieces.append(logits)
        for s in range(15, 256):
            logits, pk, pv = prior(ids[:, s:s + 1], cond[:, s:s + 1], state[:, s:s + 1], pk, pv)
            pieces.append(logits)
        assert pk.shape == keys.shape
    torch.testing.assert_close(torch.cat(pieces, dim=1), full, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(pk, keys, atol=1e-5, rtol=1e-5)


def test_ar_prior_is_causal_and_rejects_bad_inputs():
    prior = ARPrior(PRIOR).eval()
    tokens, cond, state, class_id = prior_inputs(PRIOR)
    tokens = tokens.clamp_max(63)
    ids = prior.input_ids(tokens, class_id)
    other = ids.clone()
    other[:, 100] = (other[:, 100] + 1) % 64
    with torch.no_grad():
        a, _, _ = prior(ids, cond, state)
        b, _, _ = prior(other, cond, state)
    torch.testing.assert_close(a[:, :100], b[:, :100])
    assert not torch.allclose(a[:, 100:], b[:, 100:])
    with pytest.raises(ValueError, match="alike"):
        prior(ids, cond[:, :5], state)
    weight = torch.ones_like(tokens, dtype=torch.bool)
    with pytest.raises(ValueError, match="token ids"):
        prior.loss(torch.full_like(tokens, 64), cond, state, class_id, weight)  # no [MASK] in AR targets
    with pytest.raises(ValueError, match="class ids"):
        prior.loss(tokens, cond, state, torch.tensor([0, 12]), weight)
    assert torch.isfinite(prior.loss(tokens, cond, state, class_id, weight))


# -- super-resolution -------------------------------------------------------------------------

def test_super_resolution_doubles_the_size():
    torch.manual_seed(0)
    sr = SuperResolution(SR).eval()
    video = torch.rand(2, 3, 4, 16, 12)
    with torch.no_grad():
        out = sr(video, torch.full((2,), 0.02))
    assert out.shape == (2, 3, 4, 32, 24)
    # A fresh stage (zero-initialised tail) is exactly the bilinear upsample of its input.
    up = torch.nn.functional.interpolate(video, scale_factor=(1, 2, 2), mode="trilinear", align_corners=False)
    torch.testing.assert_close(out, up)
    assert torch.isfinite(sr.loss(video, torch.rand(2, 3, 4, 32, 24), torch.Generator().manual_seed(0)))


def test_super_resolution_rejects_bad_inputs():
    sr = SuperResolution(SR)
    with pytest.raises(ValueError, match=r"\(B, 3, T, h, w\)"):
        sr(torch.rand(3, 4, 16, 16), torch.zeros(3))
    with pytest.raises(ValueError, match=r"\(B, 3, T, h, w\)"):
        sr(torch.rand(1, 1, 4, 16, 16), torch.zeros(1))
    with pytest.raises(ValueError, match=r"noise_level must be \(B,\)"):
        sr(torch.rand(2, 3, 4, 16, 16), torch.zeros(3))


# -- building networks by kind ----------------------------------------------------------------

def test_build_by_kind_and_errors():
    assert isinstance(build("tokenizer", {"channels": [8, 16, 32], "bits": 6, "mid_blocks": 1}), VideoTokenizer)
    assert isinstance(build("masked_prior", {"vocab_size": 64, "dim": 32, "layers": 1, "heads": 2}), MaskedPrior)
    assert isinstance(build("ar_prior", {"vocab_size": 64, "dim": 32, "layers": 1, "heads": 2}), ARPrior)
    assert isinstance(build("super_resolution", {"channels": 8, "blocks": 1}), SuperResolution)
    assert build("tokenizer", {"channels": [8, 16], "bits": 4}).cfg.channels == (8, 16)  # lists become tuples
    with pytest.raises(ValueError, match="unknown network kind 'vae'"):
        build("vae", {})
    with pytest.raises(ValueError, match=r"no fields \['depth'\]"):
        config_from_dict(PriorConfig, {"dim": 32, "depth": 3})
    with pytest.raises(ValueError, match="divisible by heads"):
        MaskedPrior(PriorConfig(vocab_size=64, dim=30, layers=1, heads=4))


def test_class_adaln_starts_as_the_prior_without_it_then_carries_the_class():
    """prior.class_adaln adds a zero-initialised class modulation of every block's layer norms:
    loading a prior trained without it gives the same logits (a fine-tune starts from the same
    function), and once the modulation is non-zero the class changes every position's logits."""
    from dataclasses import replace

    torch.manual_seed(0)
    plain = MaskedPrior(PRIOR).eval()
    adaln = MaskedPrior(replace(PRIOR, class_adaln=True)).eval()
    missing, unexpected = adaln.load_state_dict(plain.state_dict(), strict=False)
    assert not unexpected and missing and all(k.startswith("class_modulation.") for k in missing)
    inputs = prior_inputs(PRIOR, batch=2)
    with torch.no_grad():
        assert torch.equal(plain(*inputs), adaln(*inputs))
        for m in adaln.class_modulation:
            m.weight.normal_(std=0.05)
        tokens, cond, state, _ = inputs
        a = adaln(tokens[:1], cond[:1], state[:1], torch.tensor([1]))
        b = adaln(tokens[:1], cond[:1], state[:1], torch.tensor([2]))
    assert (a - b).abs().amax(-1).min() > 0  # every position moves with the class
