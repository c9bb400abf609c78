"""A factorized token vocabulary end to end (issue #14 item 2): the LFQ tokenizer's bit groups,
the priors' per-factor embeddings, logits and loss, the ONNX export and the manifest's
`token_factors`, the samplers' per-factor draws, and a factorized family served through the
pipeline's batching queues.

The family is tiny (vocabulary 64 = 8 x 8, a (2, 4, 4) token grid) and random: the assertions
are about shapes, ids, parity and determinism, not quality. Only the two priors are exported
for real (~10 s); the tokenizer's networks are numpy stand-ins in the pipeline test.
"""
from __future__ import annotations

import asyncio
import json
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest

from server.decoding import current_guess
from server.manifest import Manifest, load_manifest
from server.samplers import (ar_init, ar_next_positions, ar_step, assemble_ids, factored_argmax, guided_logits,
                             log_softmax, maskgit_init, maskgit_step, sample_factored, split_ids, token_log_prob)

torch = pytest.importorskip("torch")
pytest.importorskip("onnx")

import export.onnx as exporter  # noqa: E402
from models.checkpoint import build, load_network, save_network  # noqa: E402
from models.priors import (ARPrior, MaskedPrior, PriorConfig, masked_prior_from_ar,  # noqa: E402
                           token_cross_entropy)
from models.tokenizer import TokenizerConfig, VideoTokenizer  # noqa: E402

FACTORS = (8, 8)
V = 64
TOKENIZER = TokenizerConfig(channels=(8, 16, 32), bits=6, mid_blocks=1, factors=(3, 3))  # stride 4
PRIOR = PriorConfig(vocab_size=V, num_classes=3, grid=(2, 4, 4), dim=16, layers=1, heads=2, factors=FACTORS)
N = PRIOR.num_tokens  # 32
W = sum(FACTORS)  # the logits' width


# -- tokenizer ---------------------------------------------------------------------------------

def test_tokenizer_factors_are_validated_and_give_the_sub_vocabularies():
    assert TOKENIZER.token_factors == FACTORS and TOKENIZER.vocab_size == V
    assert TokenizerConfig(bits=10).token_factors == () and TokenizerConfig(bits=10).bit_groups == (10,)
    with pytest.raises(ValueError, match="summing to bits"):
        TokenizerConfig(bits=6, factors=(3, 2))
    with pytest.raises(ValueError, match="positive"):
        TokenizerConfig(bits=6, factors=(6, 0))


def test_token_ids_round_trip_and_sub_tokens_are_the_bit_groups():
    lfq = VideoTokenizer(TOKENIZER).quantizer
    z = torch.randn(2, 6, 2, 3, 3)
    tokens = lfq.codes_to_tokens(z)
    assert torch.equal(lfq.tokens_to_codes(tokens), torch.where(z > 0, 1.0, -1.0))
    every = torch.arange(V).view(1, 4, 4, 4)
    assert torch.equal(lfq.codes_to_tokens(lfq.tokens_to_codes(every)), every)
    # The server's mixed-radix split of an id is the tokenizer's bit groups, low bits first.
    bits = (z > 0).long()
    low, high = split_ids(tokens.numpy(), FACTORS)
    assert np.array_equal(low, (bits[:, :3] * torch.tensor([1, 2, 4]).view(1, 3, 1, 1, 1)).sum(1).numpy())
    assert np.array_equal(high, (bits[:, 3:] * torch.tensor([1, 2, 4]).view(1, 3, 1, 1, 1)).sum(1).numpy())
    assert np.array_equal(assemble_ids([low, high], FACTORS), tokens.numpy())


def test_factorized_tokenizer_is_causal_and_encodes_a_single_image():
    torch.manual_seed(0)
    tok = VideoTokenizer(TOKENIZER).eval()
    video = torch.rand(1, 3, 8, 16, 16)
    changed = video.clone()
    changed[:, :, 4:] = torch.rand(1, 3, 4, 16, 16)
    with torch.no_grad():
        a, b = tok.encode(video), tok.encode(changed)
        image = tok.encode(video[:, :, :1])
    assert a.shape == (1, 2, 4, 4) and torch.equal(a[:, 0], b[:, 0])  # latent frame 0 sees frames 0..3 only
    assert image.shape == (1, 1, 4, 4) and int(image.max()) < V


def test_codebook_entropy_is_summed_per_bit_group():
    torch.manual_seed(0)
    p1 = torch.rand(50, 6)

    def entropy(p):  # of the batch-mean distribution over all codes of these bits, by brute force
        b = p.shape[1]
        codes = ((torch.arange(2 ** b)[:, None] // 2 ** torch.arange(b)) % 2).float()
        probs = torch.where(codes[:, None].bool(), p[None], 1 - p[None]).prod(-1).mean(1)
        return -(probs * probs.log()).sum()

    factored = VideoTokenizer(TOKENIZER).quantizer.codebook_entropy(p1)
    torch.testing.assert_close(factored, entropy(p1[:, :3]) + entropy(p1[:, 3:]))
    whole = VideoTokenizer(TokenizerConfig(channels=(8, 16, 32), bits=6, mid_blocks=1)).quantizer.codebook_entropy(p1)
    torch.testing.assert_close(whole, entropy(p1))
    # An 18-bit vocabulary in groups of 9 trains: the loss of a step is finite and has gradients.
    big = VideoTokenizer(TokenizerConfig(channels=(8, 16, 32), bits=18, mid_blocks=1, factors=(9, 9)))
    _, losses = big(torch.rand(1, 3, 4, 16, 16))
    losses["loss"].backward()
    assert torch.isfinite(losses["entropy"]) and big.encoder.net[-1].weight.grad.abs().sum() > 0


# -- priors ------------------------------------------------------------------------------------

def prior_inputs(batch: int = 2, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    tokens = torch.randint(0, V + 1, (batch, N), generator=g)  # V = [MASK]
    cond = torch.randint(0, V + 1, (batch, N), generator=g)  # V = no condition token
    state = torch.randint(0, 3, (batch, N), generator=g)
    return tokens, cond, state, torch.arange(batch) % (PRIOR.num_classes + 1)


def test_prior_factors_must_multiply_to_the_vocabulary():
    with pytest.raises(ValueError, match="not the vocabulary size 64"):
        PriorConfig(vocab_size=64, factors=(8, 4))
    with pytest.raises(ValueError, match=">= 2"):
        PriorConfig(vocab_size=64, factors=(64, 1))
    assert PriorConfig(vocab_size=64).head_size == 64 and PRIOR.head_size == 16


def test_unfactorized_priors_keep_their_parameters():
    """The committed checkpoints load unchanged: same parameter names and shapes as always."""
    plain = PriorConfig(vocab_size=64, num_classes=3, grid=(2, 4, 4), dim=16, layers=1, heads=2)
    shapes = {k: tuple(v.shape) for k, v in MaskedPrior(plain).state_dict().items()}
    assert shapes["embed.token.weight"] == (65, 16) and shapes["embed.cond.weight"] == (65, 16)
    assert shapes["head.weight"] == (64, 16)
    assert tuple(ARPrior(plain).state_dict()["embed.token.weight"].shape) == (64 + 4, 16)
    demo = exporter.DEMO_CHECKPOINTS
    if (demo / "masked_prior.json").is_file():
        prior, _ = load_network(demo, "masked_prior")
        assert prior.cfg.factors == () and prior.head.out_features == prior.cfg.vocab_size


def test_factorized_priors_shapes_loss_and_special_ids():
    torch.manual_seed(0)
    prior = MaskedPrior(PRIOR).eval()
    # No V-row table anywhere: one table per factor, and a head of sum(factors) outputs.
    assert [t.num_embeddings for t in prior.embed.token.tables] == [8, 8] and prior.head.out_features == W
    tokens, cond, state, class_id = prior_inputs()
    logits = prior(tokens, cond, state, class_id)
    assert logits.shape == (2, N, W)
    # [MASK] and "no condition" are their own embeddings: they change the logits.
    masked = torch.full_like(tokens, V)
    assert not torch.allclose(prior(masked, cond, state, class_id), logits)
    assert not torch.allclose(prior(tokens, torch.full_like(cond, V), state, class_id), logits)
    # Loss = sum of the per-factor cross-entropies.
    targets = tokens.clamp(max=V - 1)
    want = (torch.nn.functional.cross_entropy(logits[..., :8].transpose(1, 2), targets % 8, reduction="none")
            + torch.nn.functional.cross_entropy(logits[..., 8:].transpose(1, 2), targets // 8, reduction="none"))
    torch.testing.assert_close(prior.token_loss(logits, targets), want)
    # The AR prior: class ids V + c still work, logits are per factor, the loss trains.
    ar = ARPrior(PRIOR)
    ids = ar.input_ids(targets, class_id)
    assert int(ids[:, 0].min()) >= V
    out, keys, _ = ar(ids, cond, state)
    assert out.shape == (2, N, W) and keys.shape[3] == N
    opt = torch.optim.Adam(ar.parameters(), lr=3e-2)
    losses = []
    for _ in range(10):
        loss = ar.loss(targets, cond, state, class_id, torch.ones_like(targets))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] * 0.7
    torch.testing.assert_close(losses[0] * 1.0, token_cross_entropy(PRIOR, out, targets).mean().item(), rtol=1e-4, atol=1e-4)


def test_masked_prior_from_a_factorized_ar_prior():
    torch.manual_seed(0)
    ar = ARPrior(PRIOR)
    prior = masked_prior_from_ar(ar)
    assert torch.equal(prior.class_embed.weight, ar.embed.token.special.weight)
    for mine, theirs in zip(prior.embed.token.tables, ar.embed.token.tables):
        assert torch.equal(mine.weight, theirs.weight)
    torch.testing.assert_close(prior.embed.token.special.weight[0],
                               sum(t.weight.mean(0) for t in ar.embed.token.tables))


# -- samplers on fake factorized logits ----------------------------------------------------------

def peaked(subs: list[np.ndarray], height: float = 40.0, seed: int = 0) -> np.ndarray:
    """Logits [..., W]: small noise, plus `height` at sub-token subs[k] in factor k's columns."""
    shape = subs[0].shape
    out = np.random.default_rng(seed).normal(size=(*shape, W))
    for k, sub in enumerate(subs):
        np.put_along_axis(out[..., 8 * k:8 * (k + 1)], sub[..., None], height, axis=-1)
    return out.astype(np.float32)


def test_peaked_sub_tokens_assemble_to_their_id_in_both_samplers():
    rng = np.random.default_rng(1)
    low, high = rng.integers(0, 8, N), rng.integers(0, 8, N)
    logits = peaked([low, high])
    state = maskgit_init(np.zeros(N, np.int64), np.zeros(N, bool), mask_id=V, steps=1, seed=3, factors=FACTORS)
    maskgit_step([state], logits[None])
    assert np.array_equal(state.tokens, low + 8 * high)
    assert np.all(state.confidence > 0.99)
    assert np.array_equal(factored_argmax(logits, FACTORS), low + 8 * high)
    ar = ar_init(np.zeros(N, np.int64), np.zeros(N, bool), vocab_size=V, num_classes=3, class_id=1, seed=3,
                 factors=FACTORS)
    while not ar.done:
        p = ar.position + ar_next_positions(ar) - 1  # the token this call samples
        ar_step([ar], logits[None, p])
    assert np.array_equal(ar.tokens, low + 8 * high)


def test_maskgit_confidence_is_the_sum_of_the_sub_token_log_probs():
    logits = np.random.default_rng(0).normal(size=(N, W)).astype(np.float32) * 2
    state = maskgit_init(np.zeros(N, np.int64), np.zeros(N, bool), mask_id=V, steps=1, seed=5, factors=FACTORS)
    maskgit_step([state], logits[None])
    want = token_log_prob(logits, state.tokens, FACTORS)
    np.testing.assert_allclose(state.confidence, np.exp(want), rtol=1e-6)
    # Independent factors: the sum is the log-probability under the V-way outer-sum logits.
    low, high = np.meshgrid(np.arange(8), np.arange(8), indexing="xy")
    wide = logits.astype(np.float64)
    joint = wide[:, low.reshape(-1)] + wide[:, 8 + high.reshape(-1)]  # [N, V], column = low + 8 high
    np.testing.assert_allclose(want, np.take_along_axis(log_softmax(joint), state.tokens[:, None], 1)[:, 0], atol=1e-9)


def test_guidance_temperature_and_top_k_apply_per_factor():
    rng = np.random.default_rng(2)
    cond, uncond = (rng.normal(size=(2, N, W)) * 2).astype(np.float32)
    guided = guided_logits(cond, uncond, 1.5)

    def run(logits, uncond_rows, g, seed, **kw):
        state = maskgit_init(np.zeros(N, np.int64), np.zeros(N, bool), mask_id=V, steps=3, guidance_scale=g,
                             seed=seed, factors=FACTORS, **kw)
        while not state.done:
            maskgit_step([state], logits[None], None if uncond_rows is None else [uncond_rows])
        return state.tokens

    # Guidance is cond + g (cond - uncond) on each factor's logits: the same as sampling the guided rows.
    assert np.array_equal(run(cond, uncond, 1.5, 7), run(guided, None, 0.0, 7))
    assert not np.array_equal(run(cond, uncond, 1.5, 7), run(cond, None, 0.0, 7))
    # top_k = 1 and temperature 0 are the per-factor argmax.
    argmax = factored_argmax(guided, FACTORS)
    assert np.array_equal(run(cond, uncond, 1.5, 8, temperature=0.0), argmax)
    assert np.array_equal(run(cond, uncond, 1.5, 9, top_k=1), argmax)
    # Each factor keeps its own top k: with k = 2 every sub-token is one of its factor's best two.
    low, high = split_ids(run(cond, None, 0.0, 10, top_k=2), FACTORS)
    best = [np.argsort(-cond[:, s], axis=-1)[:, :2] for s in (slice(0, 8), slice(8, 16))]
    assert all(np.any(best[k] == sub[:, None], axis=1).all() for k, sub in enumerate((low, high)))
    # Same seed, same tokens; another seed, other tokens.
    assert np.array_equal(run(cond, None, 0.0, 11), run(cond, None, 0.0, 11))
    assert not np.array_equal(run(cond, None, 0.0, 11), run(cond, None, 0.0, 12))


def test_ar_guidance_per_factor_and_determinism():
    rng = np.random.default_rng(3)
    cond, uncond = (rng.normal(size=(2, N, W)) * 2).astype(np.float32)

    def run(g, seed, uncond_rows=True, logits=cond):
        state = ar_init(np.zeros(N, np.int64), np.arange(N) % 5 == 0, vocab_size=V, num_classes=3, class_id=2,
                        guidance_scale=g, seed=seed, factors=FACTORS)
        while not state.done:
            p = state.position + ar_next_positions(state) - 1
            ar_step([state], logits[None, p], [uncond[p]] if uncond_rows else None)
        return state.tokens

    assert np.array_equal(run(1.5, 4), run(0.0, 4, uncond_rows=False, logits=guided_logits(cond, uncond, 1.5)))
    assert np.array_equal(run(0.0, 4), run(0.0, 4, uncond_rows=False))  # g = 0 reads no uncond rows
    assert not np.array_equal(run(0.0, 4), run(0.0, 5))
    assert np.all(run(0.0, 4)[::5] == 0)  # fixed tokens are kept


def test_previews_take_the_per_factor_argmax_and_widths_are_checked():
    logits = np.random.default_rng(4).normal(size=(N, W)).astype(np.float32)
    state = maskgit_init(np.zeros(N, np.int64), np.arange(N) < 4, mask_id=V, steps=4, seed=0, factors=FACTORS)
    guess = current_guess(state, logits, None)
    assert np.array_equal(guess[:4], np.zeros(4)) and np.array_equal(guess[4:], factored_argmax(logits[4:], FACTORS))
    with pytest.raises(ValueError, match="sum\\(token_factors\\) = 16"):
        maskgit_step([state], np.zeros((1, N, V + 1), np.float32))  # a V-way head for a factorized state
    with pytest.raises(ValueError, match="product"):
        maskgit_init(np.zeros(N, np.int64), np.zeros(N, bool), mask_id=V, seed=0, factors=(8, 4))
    with pytest.raises(ValueError, match="sum\\(token_factors\\)"):
        sample_factored(np.zeros((2, V)), FACTORS, 1.0, None, np.random.default_rng(0))


# -- export, manifest and serving ------------------------------------------------------------------

@pytest.fixture(scope="module")
def family(tmp_path_factory):
    """(checkpoints, repository, manifest): a factorized family exported by export_repository;
    the two priors for real, the encoder and decoder as placeholder files (`fake_export`), so
    that the pipeline below runs them as numpy stand-ins."""
    root = tmp_path_factory.mktemp("factorized")
    torch.manual_seed(0)
    save_network(root / "checkpoints", "tokenizer", "tokenizer", build("tokenizer", asdict(TOKENIZER)), meta={"fps": 8})
    save_network(root / "checkpoints", "masked_prior", "masked_prior", build("masked_prior", asdict(PRIOR)))
    save_network(root / "checkpoints", "ar_prior", "ar_prior", build("ar_prior", asdict(PRIOR)))
    real = exporter._export

    def fake_export(module, args, path, inputs, outputs, dynamic, torch_program=True):
        if path.stem in ("prior", "ar_prior"):
            real(module, args, path, inputs, outputs, dynamic, torch_program=False)
        else:
            path.write_bytes(b"placeholder " + path.stem.encode())

    mp = pytest.MonkeyPatch()
    mp.setattr(exporter, "_export", fake_export)
    try:
        manifest = exporter.export_repository(root / "checkpoints", root / "repo" / "fact", model_id="fact", check=False)
    finally:
        mp.undo()
    return root / "checkpoints", root / "repo" / "fact", manifest


def test_the_manifest_records_the_factorization(family):
    _, repo, manifest = family
    assert manifest.token_factors == FACTORS and manifest.vocab_size == V and manifest.mask_token_id == V
    on_disk = json.loads((repo / "manifest.json").read_text())
    assert all(on_disk[name]["token_factors"] == list(FACTORS) for name in ("encoder", "decoder", "prior", "ar_prior"))
    assert load_manifest(repo, verify=True) == manifest
    # The tokenizer and the priors must agree, and multiply to the vocabulary.
    with pytest.raises(ValueError, match="differently"):
        Manifest.model_validate({**on_disk, "encoder": {**on_disk["encoder"], "token_factors": [4, 16]}})
    no_decoder_factors = {k: v for k, v in on_disk["decoder"].items() if k != "token_factors"}
    with pytest.raises(ValueError, match="decoder none"):
        Manifest.model_validate({**on_disk, "decoder": no_decoder_factors})
    with pytest.raises(ValueError, match="not the vocabulary size 128"):
        Manifest.model_validate({**on_disk, "vocab_size": 128, "mask_token_id": 128, "null_cond_id": 128})
    plain = {**on_disk, **{name: {k: v for k, v in on_disk[name].items() if k != "token_factors"}
                           for name in ("encoder", "decoder", "prior", "ar_prior")}}
    assert Manifest.model_validate(plain).token_factors == ()


def test_export_refuses_a_tokenizer_and_prior_that_factorize_differently(tmp_path):
    tok = build("tokenizer", asdict(TokenizerConfig(channels=(8, 16, 32), bits=6, mid_blocks=1, factors=(2, 4))))
    with pytest.raises(ValueError, match="not one family"):
        exporter.token_factors(tok, build("masked_prior", asdict(PRIOR)))
    assert exporter.token_factors(build("tokenizer", asdict(TOKENIZER)), build("masked_prior", asdict(PRIOR))) == FACTORS


def test_onnx_priors_match_pytorch(family):
    import onnxruntime as ort

    checkpoints, repo, _ = family
    prior, _ = load_network(checkpoints, "masked_prior")
    tokens, cond, state, class_id = prior_inputs(batch=3, seed=1)
    with torch.no_grad():
        want = prior(tokens, cond, state, class_id).numpy()
    got = ort.InferenceSession(str(repo / "prior.onnx")).run(None, {
        "tokens": tokens.numpy(), "cond": cond.numpy(), "state": state.numpy(), "class_id": class_id.numpy()})[0]
    assert got.shape == (3, N, W)
    np.testing.assert_allclose(got, want, atol=exporter.FLOAT_TOLERANCE)
    # The AR prior: a prefill from an empty cache, then one position at a time, equals the full pass.
    ar, _ = load_network(checkpoints, "ar_prior")
    ids = ar.input_ids(tokens.clamp(max=V - 1), class_id)
    with torch.no_grad():
        full = ar(ids, cond, state)[0].numpy()
    sess = ort.InferenceSession(str(repo / "ar_prior.onnx"))
    spec = (ar.cfg.layers, 3, ar.cfg.heads, 0, ar.cfg.dim // ar.cfg.heads)
    empty = np.zeros(spec, np.float32)
    logits, k, v = sess.run(None, {"ids": ids[:, :5].numpy(), "cond": cond[:, :5].numpy(), "state": state[:, :5].numpy(),
                                   "past_key": empty, "past_value": empty})
    pieces = [logits]
    for i in range(5, N):
        logits, k, v = sess.run(None, {"ids": ids[:, i:i + 1].numpy(), "cond": cond[:, i:i + 1].numpy(),
                                       "state": state[:, i:i + 1].numpy(), "past_key": k, "past_value": v})
        pieces.append(logits)
    np.testing.assert_allclose(np.concatenate(pieces, axis=1), full, atol=exporter.FLOAT_TOLERANCE)


class StandInEncoder:
    """video (B, 3, T, H, W) -> tokens (B, t, h, w): the mean brightness of each token's footprint."""

    def run(self, feeds):
        video = feeds["video"]
        b, _, t, h, w = video.shape
        blocks = video.mean(1).reshape(b, t // 4, 4, h // 4, 4, w // 4, 4).mean((2, 4, 6))
        return {"tokens": np.clip(blocks * V, 0, V - 1).astype(np.int64)}


class StandInDecoder:
    """tokens (B, t, h, w) -> video (B, 3, 4t, 4h, 4w): each token's id / V as its footprint's grey."""

    def run(self, feeds):
        grey = feeds["tokens"].astype(np.float32) / V
        video = grey.repeat(4, 1).repeat(4, 2).repeat(4, 3)
        return {"video": np.repeat(video[:, None], 3, axis=1)}


def test_a_factorized_family_is_served_through_the_batching_queues(family):
    from conftest import video_request

    from server.engines.base import create_engine
    from server.pipeline import Pipeline, RunLog
    from server.request import Size
    from server.samplers import SamplerOptions
    from server.video import frames_to_float

    checkpoints, repo, manifest = family
    engines = {"encoder": StandInEncoder(), "decoder": StandInDecoder()}
    for name in ("prior", "ar_prior"):
        net = manifest.networks()[name]
        engines[name] = create_engine("onnxruntime", repo, name, net.file, threads=1)
        engines[name].set_names(net.inputs, net.outputs)
    pipeline = Pipeline(manifest, engines, max_batch_size=8)

    def request(task, seed, **sampler):
        return video_request(task=task, seed=seed, num_frames=8, size=Size(16, 16), sampler=SamplerOptions(**sampler),
                             class_label=1 if task == "class_conditional" else None,
                             condition_frames=4 if task == "frame_prediction" else None)

    clip = (np.random.default_rng(0).random((8, 16, 16, 3)) * 255).astype(np.uint8)
    previews = []
    cases = {
        "maskgit": (request("class_conditional", 1, steps=3, guidance_scale=1.0), None),
        "maskgit_prediction": (request("frame_prediction", 2, steps=2), clip),
        "autoregressive": (request("class_conditional", 3, method="autoregressive", guidance_scale=1.0), None),
    }

    async def run(names, with_previews=False):
        logs = {name: RunLog() for name in names}
        await asyncio.gather(*(pipeline.generate(cases[n][0], cases[n][1], log=logs[n],
                                                 on_preview=previews.append if with_previews and n == "maskgit" else None)
                               for n in names))
        return {name: log.tokens[0] for name, log in logs.items()}, logs

    together, logs = asyncio.run(run(list(cases), with_previews=True))
    for name, tokens in together.items():
        assert tokens.shape == tuple(manifest.token_grid) and 0 <= tokens.min() and tokens.max() < V, name
    confidence = logs["maskgit"].confidence[0]
    assert confidence.shape == tuple(manifest.token_grid) and np.all((confidence > 0) & (confidence <= 1))
    assert len(previews) == 3 and previews[-1].decided == 1.0
    # Fully given tokens of the prediction (latent frame 0) are the encoder's.
    given = StandInEncoder().run({"video": frames_to_float(clip).transpose(3, 0, 1, 2)[None]})["tokens"][0, 0]
    assert np.array_equal(together["maskgit_prediction"][0], given)
    # Batched with the others or alone, a request gets the same tokens (its own generators).
    alone, _ = asyncio.run(run(["maskgit"]))
    assert np.array_equal(alone["maskgit"], together["maskgit"])
    alone, _ = asyncio.run(run(["autoregressive"]))
    assert np.array_equal(alone["autoregressive"], together["autoregressive"])

    # POST /v1/score's exact log-likelihood: the sum of the sub-tokens' log-probabilities.
    tokens = together["autoregressive"]
    scores = asyncio.run(pipeline.score(tokens))
    ar, _ = load_network(checkpoints, "ar_prior")
    flat = torch.from_numpy(tokens.reshape(1, -1))
    with torch.no_grad():
        logits = ar(ar.input_ids(flat, torch.tensor([PRIOR.null_class])), torch.full_like(flat, V),
                    torch.zeros_like(flat))[0]
    want = -token_cross_entropy(PRIOR, logits, flat).numpy().reshape(manifest.token_grid)
    assert scores.shape == tuple(manifest.token_grid)
    np.testing.assert_allclose(scores, want, atol=1e-4)
