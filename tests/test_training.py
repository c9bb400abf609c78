"""Training: losses fall on a fixed batch, checkpoints round-trip, `train()` writes its files and
resumes, batches are deterministic, overrides are typed, and the masked-token training batches
keep their promises. Tiny configurations only; nothing here reads the shipped checkpoints."""
from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

from models.checkpoint import load_network, save_network
from models.conditioning import mask_for_training, prior_batch
from models.data.moving_digits import MovingDigits, render_clip
from models.priors import ARPrior, MaskedPrior, PriorConfig
from models.super_resolution import SRConfig, SuperResolution
from models.tokenizer import TokenizerConfig, VideoTokenizer
from models.train import Batches, TrainConfig, apply_overrides, clips_to_tensor, step_loss, train
from server import tasks as T

TOKENIZER = TokenizerConfig(channels=(8, 16, 32), bits=6, mid_blocks=1)
PRIOR = PriorConfig(vocab_size=64, dim=32, layers=1, heads=2)
SR = SRConfig(channels=8, blocks=1)


@pytest.fixture(scope="module")
def tokenizer() -> VideoTokenizer:
    torch.manual_seed(0)
    return VideoTokenizer(TOKENIZER).eval()


@pytest.fixture(scope="module")
def clips():
    video, labels = MovingDigits("train", seed=0).batch(0, 4)
    return clips_to_tensor(video, torch.device("cpu")), torch.from_numpy(labels)


def make_prior_batch(tokenizer, clips, labels, seed=0):
    return prior_batch(tokenizer, clips, labels, np.random.default_rng(seed), PRIOR.null_class, PRIOR.mask_id, 4, 4)


def fit(model, loss_fn, steps=25, lr=3e-3) -> tuple[float, float]:
    """Loss before and after `steps` AdamW steps on the same batch."""
    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    with torch.no_grad():
        before = float(loss_fn())
    for _ in range(steps):
        opt.zero_grad()
        loss_fn().backward()
        opt.step()
    with torch.no_grad():
        after = float(loss_fn())
    return before, after


# -- losses fall ------------------------------------------------------------------------------

def test_tokenizer_loss_falls(clips):
    torch.manual_seed(0)
    model = VideoTokenizer(TOKENIZER).train()
    video = clips[0][:2]
    before, after = fit(model, lambda: model(video)[1]["loss"], steps=25, lr=3e-3)
    assert after < 0.8 * before, (before, after)
    with torch.no_grad():
        assert model(video)[1]["mse"] < 0.05  # the reconstruction is already close to the dark clip


def test_masked_prior_loss_falls(tokenizer, clips):
    batch = make_prior_batch(tokenizer, *clips)
    torch.manual_seed(0)
    model = MaskedPrior(PRIOR).train()

    def loss():
        torch.manual_seed(1)  # the same training mask every time
        return step_loss(model, batch)

    before, after = fit(model, loss, steps=25)
    assert after < 0.8 * before, (before, after)


def test_ar_prior_loss_falls(tokenizer, clips):
    batch = make_prior_batch(tokenizer, *clips)
    torch.manual_seed(0)
    model = ARPrior(PRIOR).train()
    before, after = fit(model, lambda: step_loss(model, batch), steps=25)
    assert after < 0.8 * before, (before, after)


def test_super_resolution_loss_falls():
    scenes = [MovingDigits("train", seed=0).scene(i) for i in range(2)]
    cpu = torch.device("cpu")
    low = clips_to_tensor(np.stack([render_clip(s, 1)[:4] for s in scenes]), cpu)
    high = clips_to_tensor(np.stack([render_clip(s, 2)[:4] for s in scenes]), cpu)
    torch.manual_seed(0)
    model = SuperResolution(SR).train()
    # A fresh stage is bilinear upsampling; a few steps already beat it on this batch.
    before, after = fit(model, lambda: model.loss(low, high, torch.Generator().manual_seed(0)), steps=100)
    assert after < 0.85 * before, (before, after)


# -- checkpoints ------------------------------------------------------------------------------

def _networks():
    torch.manual_seed(0)
    video = torch.rand(1, 3, 8, 16, 16)
    tokens, cond, state = (torch.randint(0, 64, (1, 256)) for _ in range(3))
    state = state % 3
    cls = torch.tensor([4])
    return [
        ("tokenizer", VideoTokenizer(TOKENIZER), lambda m: m.decoder(m.encoder(video))),
        ("masked_prior", MaskedPrior(PRIOR), lambda m: m(tokens, cond, state, cls)),
        ("ar_prior", ARPrior(PRIOR), lambda m: m(tokens, cond, state)[0]),
        ("super_resolution", SuperResolution(SR), lambda m: m(video, torch.tensor([0.02]))),
    ]


@pytest.mark.parametrize("index", range(4))
def test_checkpoint_round_trip(tmp_path, index):
    kind, module, run = _networks()[index]
    for p in module.parameters():  # SR's tail starts at zero: give every weight a value
        torch.nn.init.normal_(p, std=0.05) if p.ndim > 1 else None
    module.eval()
    with torch.no_grad():
        want = run(module)
    save_network(tmp_path / "full", "net", kind, module, meta={"steps": 7}, half=False)
    loaded, info = load_network(tmp_path / "full", "net")
    assert type(loaded) is type(module) and not loaded.training
    assert info["kind"] == kind and info["meta"] == {"steps": 7} and loaded.cfg == module.cfg
    with torch.no_grad():
        assert torch.equal(run(loaded), want)
    # fp16 storage (the shipped format): close, and the file is about half the size.
    save_network(tmp_path / "half", "net", kind, module)
    half, _ = load_network(tmp_path / "half", "net")
    assert next(half.parameters()).dtype == torch.float32
    with torch.no_grad():
        torch.testing.assert_close(run(half), want, atol=2e-2, rtol=2e-2)
    full_size = (tmp_path / "full" / "net.safetensors").stat().st_size
    assert (tmp_path / "half" / "net.safetensors").stat().st_size < 0.6 * full_size


def test_load_missing_checkpoint(tmp_path):
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        load_network(tmp_path, "tokenizer")


# -- train() ----------------------------------------------------------------------------------

def tiny_train_config(tmp_path, stage: str, steps: int, **kw) -> TrainConfig:
    return TrainConfig(stage=stage, run_dir=str(tmp_path / f"run_{stage}"), steps=steps, batch_size=2,
                       warmup=1, device="cpu", save_every=1000, eval_every=1000,
                       tokenizer=TokenizerConfig(channels=(8, 16, 32), bits=6, mid_blocks=1),
                       prior=PriorConfig(dim=32, layers=1, heads=2), sr=SRConfig(channels=8, blocks=1), **kw)


def read_log(run) -> list[dict]:
    return [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]


def test_train_writes_files_and_resumes(tmp_path):
    messages: list[str] = []
    run = train(tiny_train_config(tmp_path, "tokenizer", 2), log=messages.append)
    for name in ("state.pt", "tokenizer.safetensors", "tokenizer.json", "config.json", "log.jsonl"):
        assert (run / name).is_file(), name
    state = torch.load(run / "state.pt", weights_only=False)
    assert state["step"] == 2
    first, info = load_network(run, "tokenizer")
    assert info["meta"]["steps"] == 2 and first.cfg.channels == (8, 16, 32)
    assert [line["step"] for line in read_log(run)] == [2]
    assert "psnr" in read_log(run)[0] and not any("resuming" in m for m in messages)

    messages.clear()
    train(tiny_train_config(tmp_path, "tokenizer", 4), publish=str(tmp_path / "published"), log=messages.append)
    assert any("resuming tokenizer at step 2" in m for m in messages), messages
    assert torch.load(run / "state.pt", weights_only=False)["step"] == 4
    assert [line["step"] for line in read_log(run)] == [2, 4]
    second, info = load_network(tmp_path / "published", "tokenizer")
    assert info["meta"]["steps"] == 4
    assert any(not torch.equal(a, b) for a, b in zip(first.state_dict().values(), second.state_dict().values()))


def test_a_resumed_run_matches_an_uninterrupted_one(tmp_path):
    """Masked-prior training draws its masks from torch's RNG: its state travels with the run, so
    2 steps + resume to 4 give the same weights as 4 steps in one go (constant learning rate, so
    that the schedule does not depend on the step total)."""
    torch.manual_seed(0)
    save_network(tmp_path / "tok", "tokenizer", "tokenizer", VideoTokenizer(TOKENIZER))

    def cfg(where, steps):
        return tiny_train_config(tmp_path / where, "prior", steps, tokenizer_dir=str(tmp_path / "tok"),
                                 min_lr_ratio=1.0)

    straight = train(cfg("straight", 4), log=lambda _: None)
    train(cfg("resumed", 2), log=lambda _: None)
    resumed = train(cfg("resumed", 4), log=lambda _: None)
    a, _ = load_network(straight, "masked_prior")
    b, _ = load_network(resumed, "masked_prior")
    for (name, x), y in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(x, y), name


def test_freeze_encoder_trains_the_decoder_only(tmp_path):
    torch.manual_seed(0)
    save_network(tmp_path / "tok", "tokenizer", "tokenizer", VideoTokenizer(TOKENIZER))
    with pytest.raises(ValueError, match="init_from"):
        train(tiny_train_config(tmp_path, "tokenizer", 1, freeze_encoder=True), log=lambda _: None)
    run = train(tiny_train_config(tmp_path, "tokenizer", 3, freeze_encoder=True, init_from=str(tmp_path / "tok")),
                log=lambda _: None)
    before, _ = load_network(tmp_path / "tok", "tokenizer")
    after, _ = load_network(run, "tokenizer")
    for name, x in before.encoder.state_dict().items():
        assert torch.equal(x, after.encoder.state_dict()[name]), name  # token ids stay the same
    assert any(not torch.equal(x, after.decoder.state_dict()[k]) for k, x in before.decoder.state_dict().items())
    # Resuming a full run's folder as a decoder-only run (other trainable parameters) is refused
    # with a clear message; the default folders keep the two apart.
    full = train(tiny_train_config(tmp_path / "full", "tokenizer", 1), log=lambda _: None)
    with pytest.raises(ValueError, match="trained other parameters.*--run-dir"):
        train(dataclasses.replace(tiny_train_config(tmp_path, "tokenizer", 2, freeze_encoder=True,
                                                    init_from=str(tmp_path / "tok")), run_dir=str(full)),
              log=lambda _: None)
    assert TrainConfig(freeze_encoder=True).default_run_dir == "runs/tokenizer_decoder"
    assert TrainConfig().default_run_dir == "runs/tokenizer"
    with pytest.raises(ValueError, match="tokenizer stage only"):
        train(tiny_train_config(tmp_path, "prior", 1, freeze_encoder=True), log=lambda _: None)


def test_train_is_deterministic_for_a_seed(tmp_path):
    a = read_log(train(tiny_train_config(tmp_path / "a", "tokenizer", 2), log=lambda _: None))
    b = read_log(train(tiny_train_config(tmp_path / "b", "tokenizer", 2), log=lambda _: None))
    drop = ("seconds",)
    assert [{k: v for k, v in x.items() if k not in drop} for x in a] == \
        [{k: v for k, v in x.items() if k not in drop} for x in b]


@pytest.mark.parametrize("stage,name", [("prior", "masked_prior"), ("ar", "ar_prior"), ("sr", "sr_64")])
def test_train_other_stages(tmp_path, stage, name):
    torch.manual_seed(0)
    save_network(tmp_path / "tok", "tokenizer", "tokenizer", VideoTokenizer(TOKENIZER))
    cfg = tiny_train_config(tmp_path, stage, 2, tokenizer_dir=str(tmp_path / "tok"))
    run = train(cfg, log=lambda _: None)
    assert (run / "state.pt").is_file() and (run / f"{name}.safetensors").is_file()
    net, info = load_network(run, name)
    assert info["meta"]["steps"] == 2
    if stage != "sr":
        assert net.cfg.vocab_size == 64  # taken from the tokenizer
        logged = read_log(run)[-1]
        assert {"val_loss", "kl_to_null", "ce_gap", "likelihood_accuracy"} <= set(logged)  # the class probe
        if stage == "prior":  # and the MaskGIT samples read by the digit reader
            assert 0.0 <= logged["maskgit_class_accuracy"] <= 1.0
    else:
        assert {"psnr", "bicubic_psnr"} <= set(read_log(run)[-1])


def test_a_masked_prior_can_start_from_an_ar_prior(tmp_path):
    from models.priors import ARPrior

    torch.manual_seed(0)
    save_network(tmp_path / "tok", "tokenizer", "tokenizer", VideoTokenizer(TOKENIZER))
    cfg = tiny_train_config(tmp_path, "prior", 1, tokenizer_dir=str(tmp_path / "tok"), probe_samples=0)
    save_network(tmp_path / "ar", "ar_prior", "ar_prior", ARPrior(dataclasses.replace(cfg.prior, vocab_size=64)))
    logs: list[str] = []
    train(dataclasses.replace(cfg, init_from_ar=str(tmp_path / "ar")), log=logs.append)
    assert any("autoregressive prior" in line for line in logs)
    with pytest.raises(ValueError, match="init_from_ar"):
        train(dataclasses.replace(cfg, stage="ar", init_from_ar=str(tmp_path / "ar")), log=lambda _: None)


def test_train_rejects_unknown_stage(tmp_path):
    with pytest.raises(ValueError, match="unknown stage 'vae'"):
        train(TrainConfig(stage="vae", run_dir=str(tmp_path / "x")))
    with pytest.raises(ValueError, match="out_scale"):
        train(tiny_train_config(tmp_path, "sr", 1, out_scale=3), log=lambda _: None)


# -- determinism of the data --------------------------------------------------------------------

def test_batches_are_deterministic(tmp_path):
    cfg = tiny_train_config(tmp_path, "tokenizer", 1, seed=3)
    cpu = torch.device("cpu")
    a, b = Batches(cfg, cpu), Batches(cfg, cpu)
    clips, labels = a.get(5)
    assert clips.shape == (2, 3, 16, 32, 32) and clips.dtype == torch.float32
    assert 0 <= clips.min() and clips.max() <= 1 and clips.max() > 0.5
    again, again_labels = b.get(5)
    assert torch.equal(clips, again) and torch.equal(labels, again_labels)
    assert not torch.equal(clips, a.get(6)[0])
    # Batch s is clips s*B .. s*B+B-1 (resuming at step s continues the same stream).
    want, want_labels = MovingDigits("train", seed=3).batch(10, 2)
    assert torch.equal(clips, clips_to_tensor(want, cpu)) and labels.tolist() == want_labels.tolist()
    other = Batches(tiny_train_config(tmp_path, "tokenizer", 1, seed=4), cpu)
    assert not torch.equal(clips, other.get(5)[0])
    assert a.get(0, scale=2)[0].shape == (2, 3, 16, 64, 64)


def test_prior_batch_is_deterministic_for_an_rng(tokenizer, clips):
    a = make_prior_batch(tokenizer, *clips, seed=5)
    b = make_prior_batch(tokenizer, *clips, seed=5)
    assert a.keys() == b.keys() == {"targets", "cond", "state", "fixed", "class_id", "class_only"}
    for key in a:
        assert torch.equal(a[key], b[key]), key
    c = make_prior_batch(tokenizer, *clips, seed=6)
    assert any(not torch.equal(a[k], c[k]) for k in ("state", "class_id", "cond"))


def test_prior_batch_contents(tokenizer):
    video, labels = MovingDigits("train", seed=1).batch(0, 24)
    x, y = clips_to_tensor(video, torch.device("cpu")), torch.from_numpy(labels)
    batch = make_prior_batch(tokenizer, x, y, seed=0)
    for key in ("targets", "cond", "state", "fixed"):
        assert batch[key].shape == (24, 256), key
    assert torch.equal(batch["targets"], tokenizer.encode(x).reshape(24, -1))
    assert torch.equal(batch["fixed"], batch["state"] == T.STATE_FULL)
    assert all(c in (int(l), PRIOR.null_class) for c, l in zip(batch["class_id"].tolist(), y.tolist()))
    # class_conditional clips (nothing given anywhere) get the null condition token everywhere;
    # every other task gives some pixels and gets real condition tokens.
    nothing_given = (batch["state"] == T.STATE_NONE).all(dim=1)
    assert 0 < int(nothing_given.sum()) < 24
    assert (batch["cond"][nothing_given] == PRIOR.mask_id).all()
    assert (batch["cond"][~nothing_given] < PRIOR.vocab_size).all()
    assert torch.equal(batch["class_only"], nothing_given)  # the rows class_mask_min_ratio applies to
    # Some clips keep their class, some train unconditionally.
    assert (batch["class_id"] == PRIOR.null_class).any() and (batch["class_id"] != PRIOR.null_class).any()


# -- training masks ---------------------------------------------------------------------------

def test_mask_for_training_never_masks_fixed_positions():
    g = torch.Generator().manual_seed(0)
    for density in (0.0, 0.3, 0.9, 0.995):
        fixed = torch.rand(64, 256, generator=g) < density
        fixed[0] = True
        fixed[0, 17] = False  # one free position
        fixed[1] = True  # nothing free
        masked = mask_for_training(fixed, torch.Generator().manual_seed(1))
        assert masked.shape == fixed.shape and masked.dtype == torch.bool
        assert not (masked & fixed).any()
        free_rows = (~fixed).any(dim=1)
        assert masked[free_rows].any(dim=1).all()
        assert masked[0, 17] and not masked[1].any()
    # The cosine schedule: some clips are mostly masked, some only a little.
    share = mask_for_training(torch.zeros(256, 64, dtype=torch.bool), torch.Generator().manual_seed(2)).float().mean(1)
    assert share.max() > 0.9 and share.min() < 0.2


def test_mask_for_training_squeezes_chosen_rows_into_a_high_ratio_range():
    free = torch.zeros(256, 64, dtype=torch.bool)
    floor = torch.where(torch.arange(256) % 2 == 0, 0.85, 0.0)  # even rows: at least 85% masked
    share = mask_for_training(free, torch.Generator().manual_seed(4), floor).float().mean(1)
    assert share[0::2].min() >= 0.85 and share[0::2].max() == 1.0
    assert share[1::2].min() < 0.2  # the other rows keep the cosine schedule


def test_mask_for_training_is_deterministic_with_a_generator():
    fixed = torch.rand(8, 256, generator=torch.Generator().manual_seed(0)) < 0.5
    a = mask_for_training(fixed, torch.Generator().manual_seed(3))
    b = mask_for_training(fixed, torch.Generator().manual_seed(3))
    assert torch.equal(a, b)


# -- configuration overrides ------------------------------------------------------------------

def test_apply_overrides_types_values():
    cfg = apply_overrides(TrainConfig(), ["steps=12", "lr=3e-4", "batch_size=4", "fit_steps_to_budget=true",
                                          "run_dir=runs/x", "tokenizer.channels=8,16,32", "prior.dim=64",
                                          "sr.max_noise=0.2", "time_budget_minutes=5"])
    assert cfg.steps == 12 and isinstance(cfg.steps, int)
    assert cfg.lr == 3e-4 and isinstance(cfg.lr, float)
    assert cfg.fit_steps_to_budget is True and cfg.run_dir == "runs/x"
    assert cfg.tokenizer.channels == (8, 16, 32) and cfg.prior.dim == 64 and cfg.sr.max_noise == 0.2
    assert cfg.time_budget_minutes == 5.0 and isinstance(cfg.time_budget_minutes, float)
    assert apply_overrides(TrainConfig(), ["fit_steps_to_budget=0"]).fit_steps_to_budget is False


@pytest.mark.parametrize("item,message", [
    ("stepz=3", "unknown config field 'stepz'"),
    ("tokenizer.depth=3", "unknown config field 'tokenizer.depth'"),
    ("model.dim=3", "unknown config section 'model'"),
    ("steps", "not key=value"),
    ("steps=many", "invalid literal"),
])
def test_apply_overrides_rejects_unknown_keys(item, message):
    with pytest.raises(ValueError, match=message):
        apply_overrides(TrainConfig(), [item])


def test_contrastive_fine_tune_adds_class_modulation_and_resumes_against_the_same_reference(tmp_path):
    """prior stage with contrastive_weight: init_from is required (it is also the frozen
    reference); class_adaln may be added to a prior trained without it; the run logs the
    likelihood gaps and resumes like any other (2 + 2 steps == 4 steps)."""
    torch.manual_seed(0)
    save_network(tmp_path / "tok", "tokenizer", "tokenizer", VideoTokenizer(TOKENIZER))
    base = tiny_train_config(tmp_path, "prior", 1, tokenizer_dir=str(tmp_path / "tok"), probe_samples=0)
    save_network(tmp_path / "init", "masked_prior", "masked_prior",
                 MaskedPrior(dataclasses.replace(base.prior, vocab_size=64)))
    with pytest.raises(ValueError, match="init_from"):
        train(dataclasses.replace(base, contrastive_weight=1.0), log=lambda _: None)

    def cfg(where, steps):
        c = tiny_train_config(tmp_path / where, "prior", steps, tokenizer_dir=str(tmp_path / "tok"), probe_samples=0,
                              min_lr_ratio=1.0, init_from=str(tmp_path / "init"), contrastive_weight=1.0)
        return dataclasses.replace(c, prior=dataclasses.replace(c.prior, class_adaln=True))

    logs: list[str] = []
    straight = train(cfg("straight", 4), log=logs.append)
    assert any("class modulation added" in line for line in logs)
    assert {"ce", "contrastive", "pos_gap", "neg_gap"} <= set(read_log(straight)[-1])
    train(cfg("resumed", 2), log=lambda _: None)
    resumed = train(cfg("resumed", 4), log=lambda _: None)
    a, _ = load_network(straight, "masked_prior")
    b, _ = load_network(resumed, "masked_prior")
    assert a.cfg.class_adaln
    for (name, x), y in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(x, y), name


def test_the_contrastive_reference_refuses_an_init_from_that_does_not_fit(tmp_path):
    """Review A6: the frozen reference was loaded with strict=False and its mismatches dropped, so
    a wrong init_from gave a partly random reference; it is now checked as train() checks it."""
    from models.train import contrastive_reference

    cfg = tiny_train_config(tmp_path, "prior", 1, init_from=str(tmp_path / "init"), contrastive_weight=1.0)
    pcfg = dataclasses.replace(cfg.prior, vocab_size=64)
    save_network(tmp_path / "init", "masked_prior", "masked_prior",
                 MaskedPrior(dataclasses.replace(pcfg, class_adaln=True)))
    with pytest.raises(ValueError, match="unexpected.*class_modulation"):
        contrastive_reference(cfg, pcfg, torch.device("cpu"))  # the saved prior holds more than this one
    reference = contrastive_reference(cfg, dataclasses.replace(pcfg, class_adaln=True), torch.device("cpu"))
    assert not any(p.requires_grad for p in reference.parameters())
    save_network(tmp_path / "init", "masked_prior", "masked_prior", MaskedPrior(pcfg))
    contrastive_reference(cfg, dataclasses.replace(pcfg, class_adaln=True), torch.device("cpu"))  # added: fine
