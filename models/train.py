"""`kinetoscope train tokenizer|prior|ar|sr`: one loop, one config dataclass per stage.

Every stage is seeded and resumable: its run folder (`runs/<name>/`) holds `state.pt`
(weights, optimizer, step) saved every `save_every` steps and when the time budget ends, so the
same command continues where it stopped. A GPU is used when present. The trained network is
written to the run folder as `<name>.safetensors` + `<name>.json`, which `--publish DIR` copies
to the shipped checkpoint folder.

`kinetoscope train STAGE` (cli/train.py) builds the TrainConfig (the stage's DEMO_CPU settings
with --demo-cpu, then its `--set key=value` overrides, `apply_overrides`) and calls `train`.
"""
from __future__ import annotations

import dataclasses
import json
import math
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from models.checkpoint import load_network, save_network
from models.conditioning import mask_for_training, prior_batch
from models.data.moving_digits import FPS, MovingDigits
from models.data.render import render_batch
from models.class_probe import class_probe, maskgit_class_accuracy
from models.contrastive import ContrastiveSettings, contrastive_loss
from models.priors import ARPrior, MaskedPrior, PriorConfig, masked_prior_from_ar
from models.super_resolution import SRConfig, SuperResolution
from models.tokenizer import TokenizerConfig, VideoTokenizer

STAGES = ("tokenizer", "prior", "ar", "sr")
# Shown on the progress bar after each evaluation: the figure each stage is judged by.
HELD_OUT_FIGURES = ("psnr", "val_loss", "maskgit_class_accuracy", "likelihood_accuracy")


@dataclass
class TrainConfig:
    stage: str = "tokenizer"
    run_dir: str = ""  # default runs/<name> (runs/tokenizer_decoder with freeze_encoder)
    steps: int = 3000
    batch_size: int = 16
    lr: float = 1e-3
    min_lr_ratio: float = 0.05
    warmup: int = 100
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    seed: int = 0
    device: str = "auto"
    time_budget_minutes: float = 0.0  # 0 = no limit; else stop (and save) after this long
    fit_steps_to_budget: bool = False  # measure the first steps, then set `steps` to fill the budget
    save_every: int = 250
    eval_every: int = 250
    data: str = "moving_digits"  # or a folder of MP4/WebM/GIF videos
    tokenizer_dir: str = "runs/tokenizer"  # prior and ar stages: where the trained tokenizer is
    class_conditional_share: float = -1.0  # prior/ar: share of class_conditional samples; < 0 = TASK_MIX's
    init_from: str = ""  # a folder with <name>.safetensors to start from (fine-tuning), when not resuming
    init_from_ar: str = ""  # prior stage: start the masked prior from the ar_prior in this folder instead
    # prior stage: condition contrastive alignment against the init_from prior (models/contrastive.py);
    # 0 = off, else the weight of that term beside the task mix's cross-entropy
    contrastive_weight: float = 0.0
    contrastive_beta: float = 0.05
    contrastive_negative_weight: float = 10.0
    contrastive_min_ratio: float = 0.85
    probe_samples: int = 20  # prior stage: MaskGIT samples read per evaluation (class accuracy); 0 = off
    probe_guidance: float = 0.0  # prior stage: classifier-free guidance scale of those samples
    # prior stage: class-conditional rows are masked at ratios class_mask_min_ratio..1 (the cosine
    # schedule squeezed into that range), where the class, not visible tokens, decides the glyph
    class_mask_min_ratio: float = 0.0
    # tokenizer stage: train the decoder only. The encoder (so every token id) stays as it was, so
    # priors trained on this tokenizer stay valid: a fine-tune of `init_from` that sharpens decoding.
    freeze_encoder: bool = False
    out_scale: int = 2  # sr stage: output scale of the stage (2: 32->64, 4: 64->128)
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    prior: PriorConfig = field(default_factory=PriorConfig)
    sr: SRConfig = field(default_factory=SRConfig)

    @property
    def name(self) -> str:
        return {"tokenizer": "tokenizer", "prior": "masked_prior", "ar": "ar_prior"}.get(
            self.stage, f"sr_{32 * self.out_scale}")

    @property
    def default_run_dir(self) -> str:
        # A decoder-only fine-tune trains other parameters than a full run: its own folder, so
        # it neither resumes nor overwrites runs/tokenizer.
        return "runs/tokenizer_decoder" if self.freeze_encoder else f"runs/{self.name}"


# The demo family's CPU configuration: sized so that all stages together train on two CPU cores
# in about two hours (per-step times measured on the team's 2-core machine: MODEL_CARD.md).
# On a GPU the same stages run with more steps and larger batches (the shipped checkpoints).
DEMO_CPU: dict[str, dict[str, Any]] = {
    "tokenizer": {"steps": 1200, "batch_size": 8, "lr": 2e-3},
    "prior": {"steps": 600, "batch_size": 16, "lr": 1e-3},
    "ar": {"steps": 400, "batch_size": 16, "lr": 1e-3},
    "sr": {"steps": 150, "batch_size": 4, "lr": 2e-3},  # run twice: out_scale=2 and out_scale=4
}


def apply_overrides(cfg: Any, overrides: list[str]) -> Any:
    """`key=value` or `section.key=value` strings -> a new config, typed like the fields."""
    for item in overrides:
        if "=" not in item:
            raise ValueError(f"override {item!r} is not key=value")
        key, raw = item.split("=", 1)
        target, parts = cfg, key.split(".")
        for part in parts[:-1]:
            if not hasattr(target, part):
                raise ValueError(f"unknown config section {part!r} in {item!r}")
            target = getattr(target, part)
        name = parts[-1]
        if not dataclasses.is_dataclass(target) or name not in {f.name for f in dataclasses.fields(target)}:
            raise ValueError(f"unknown config field {key!r}")
        current = getattr(target, name)
        if isinstance(current, bool):
            value: Any = raw.lower() in ("1", "true", "yes")
        elif isinstance(current, tuple):
            value = tuple(int(v) for v in raw.split(","))
        elif current is None:
            value = raw
        else:
            value = type(current)(raw)
        setattr(target, name, value)
    return cfg


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def clips_to_tensor(clips: np.ndarray | torch.Tensor, device: torch.device) -> torch.Tensor:
    """uint8 (B, T, H, W, 3), numpy or torch -> float (B, 3, T, H, W) in [0, 1]."""
    clips = torch.from_numpy(clips) if isinstance(clips, np.ndarray) else clips
    return clips.to(device).permute(0, 4, 1, 2, 3).float() / 255.0


class Batches:
    """Deterministic training batches: batch s is clips s*B .. s*B+B-1, so resuming at step s
    continues the same stream."""

    def __init__(self, cfg: TrainConfig, device: torch.device):
        self.cfg, self.device = cfg, device
        self.folder = None
        if cfg.data != "moving_digits":
            from models.data.folder import VideoFolder  # needs imageio-ffmpeg; Moving Digits does not

            self.folder = VideoFolder(cfg.data, seed=cfg.seed)
        self.digits = MovingDigits("train", seed=cfg.seed)

    def get(self, step: int, scale: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
        b = self.cfg.batch_size
        if self.folder is not None:
            return (clips_to_tensor(self.folder.batch(step * b, b, scale), self.device),
                    torch.zeros(b, dtype=torch.long, device=self.device))
        # The data set's own scenes (MovingDigits.batch's stream); the pixels are rendered as one
        # batch on the training device.
        scenes = self.digits.scenes(step * b, b)
        labels = torch.tensor([s.label for s in scenes], dtype=torch.long, device=self.device)
        return clips_to_tensor(render_batch(scenes, scale, device=self.device), self.device), labels


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = F.mse_loss(a.clamp(0, 1), b).item()
    return 10 * math.log10(1.0 / max(mse, 1e-10))


def build_stage(cfg: TrainConfig, device: torch.device):
    """-> (model, kind, loss_fn(step) -> dict of scalars, eval_fn() -> dict)."""
    batches = Batches(cfg, device)
    test = MovingDigits("test", seed=1234)
    if cfg.stage == "tokenizer":
        model = VideoTokenizer(cfg.tokenizer).to(device)
        if cfg.freeze_encoder:
            model.encoder.requires_grad_(False)
        held_out = clips_to_tensor(test.batch(0, 32)[0], device)

        def loss_fn(step):
            clips, _ = batches.get(step)
            _, losses = model(clips)
            return losses

        def eval_fn():
            with torch.no_grad():
                recon = model.decode(model.encode(held_out))
            return {"psnr": psnr(recon, held_out)}

        return model, "tokenizer", loss_fn, eval_fn
    if cfg.stage in ("prior", "ar"):
        tokenizer, _ = load_network(cfg.tokenizer_dir, "tokenizer")
        tokenizer = tokenizer.to(device)
        pcfg = dataclasses.replace(cfg.prior, vocab_size=tokenizer.cfg.vocab_size,
                                   factors=tokenizer.cfg.token_factors)
        cfg.prior = pcfg
        model = (MaskedPrior if cfg.stage == "prior" else ARPrior)(pcfg).to(device)
        stride = tokenizer.cfg.stride

        def make(clips, labels, generator_rng):
            share = cfg.class_conditional_share if cfg.class_conditional_share >= 0 else None
            return prior_batch(tokenizer, clips, labels, generator_rng, pcfg.null_class, pcfg.mask_id, stride, stride,
                               class_conditional_share=share)

        reference = contrastive_reference(cfg, pcfg, device) if cfg.contrastive_weight else None
        settings = ContrastiveSettings(cfg.contrastive_beta, cfg.contrastive_negative_weight, cfg.contrastive_min_ratio)

        def loss_fn(step):
            clips, labels = batches.get(step)
            batch = make(clips, labels, np.random.default_rng([cfg.seed, step]))
            ce = step_loss(model, batch, min_ratio=batch["class_only"].float() * cfg.class_mask_min_ratio)
            if reference is None:
                return {"loss": ce}
            aligned, gaps = contrastive_loss(model, reference, batch["targets"], labels, settings)
            return {"loss": ce + cfg.contrastive_weight * aligned, "ce": ce, "contrastive": aligned, **gaps}

        held = [test.batch(i * 16, 16) for i in range(2)]
        with torch.no_grad():  # the class probe's clips: real held-out token grids and their classes
            probe_tokens = tokenizer.encode(clips_to_tensor(held[0][0], device)).reshape(16, -1)
        probe_labels = torch.from_numpy(held[0][1]).to(device)

        def eval_fn():
            # Fixed masks from a generator of their own: the validation loss is comparable across
            # evaluations, and evaluating leaves the training RNG (so a resumed run) untouched.
            with torch.no_grad():
                losses = [step_loss(model, make(clips_to_tensor(c, device), torch.from_numpy(l).to(device),
                                                np.random.default_rng([99, i])),
                                    torch.Generator(device).manual_seed(99 + i)).item()
                          for i, (c, l) in enumerate(held)]
            metrics = {"val_loss": float(np.mean(losses)), **class_probe(model, probe_tokens, probe_labels)}
            if cfg.stage == "prior" and cfg.probe_samples:
                metrics["maskgit_class_accuracy"] = sample_accuracy(model, tokenizer, cfg.probe_samples,
                                                                    cfg.probe_guidance)
            return metrics

        return model, ("masked_prior" if cfg.stage == "prior" else "ar_prior"), loss_fn, eval_fn
    if cfg.stage == "sr":
        if cfg.out_scale not in (2, 4):
            raise ValueError(f"out_scale must be 2 (32->64) or 4 (64->128); got {cfg.out_scale}")
        model = SuperResolution(cfg.sr).to(device)
        low_scale = cfg.out_scale // 2
        test_scenes = [test.scene(i) for i in range(8)]

        def pair(scenes):
            return (clips_to_tensor(render_batch(scenes, low_scale, device=device), device),
                    clips_to_tensor(render_batch(scenes, cfg.out_scale, device=device), device))

        def loss_fn(step):
            b = cfg.batch_size
            low, high = pair([batches.digits.scene(step * b + i) for i in range(b)])
            return {"loss": model.loss(low, high)}

        def eval_fn():
            low, high = pair(test_scenes)
            with torch.no_grad():
                pred = model(low, torch.full((low.shape[0],), cfg.sr.serve_noise, device=device))
            bicubic = F.interpolate(low.transpose(1, 2).flatten(0, 1), scale_factor=2, mode="bicubic",
                                    align_corners=False).unflatten(0, (low.shape[0], low.shape[2])).transpose(1, 2)
            return {"psnr": psnr(pred, high), "bicubic_psnr": psnr(bicubic, high)}

        return model, "super_resolution", loss_fn, eval_fn
    raise ValueError(f"unknown stage {cfg.stage!r}; choose one of {', '.join(STAGES)}")


def contrastive_reference(cfg: TrainConfig, pcfg: PriorConfig, device: torch.device) -> MaskedPrior:
    """The frozen prior that contrastive alignment measures against: the one fine-tuned from
    (loaded from init_from again, so a resumed run keeps the same reference)."""
    if cfg.stage != "prior" or not cfg.init_from:
        raise ValueError("contrastive_weight fine-tunes a trained masked prior: prior stage with init_from")
    reference = MaskedPrior(pcfg)
    load_init(reference, cfg.init_from, "masked_prior")  # an added class_modulation stays zero
    return reference.to(device).eval().requires_grad_(False)


def load_init(model: torch.nn.Module, folder: str | Path, name: str) -> bool:
    """Loads the network `name` saved in `folder` into `model`, which it must fit exactly, except
    that a fine-tune may add the zero-initialised class modulation (prior.class_adaln) to a prior
    trained without it; anything else that does not match is a wrong init_from (ValueError).
    Returns whether the class modulation was added."""
    module, _ = load_network(folder, name)
    missing, unexpected = model.load_state_dict(module.state_dict(), strict=False)
    added = [k for k in missing if k.startswith("class_modulation.")]
    if unexpected or len(added) != len(missing):
        raise ValueError(f"{folder} does not fit this {name}: missing "
                         f"{sorted(set(missing) - set(added))}, unexpected {sorted(unexpected)}")
    return bool(added)


def sample_accuracy(prior: MaskedPrior, tokenizer: VideoTokenizer, samples: int, guidance_scale: float = 0.0) -> float:
    """MaskGIT class-conditional samples decoded by the tokenizer and read by the evaluation's digit
    reader (the signal that the class is followed; NaN without scikit-learn)."""
    try:
        from models.evaluation.metrics import majority
        from models.evaluation.reader import reader
    except ImportError:
        return float("nan")
    digit_reader = reader()

    def decode(tokens: np.ndarray) -> np.ndarray:
        grid = torch.from_numpy(tokens).reshape(-1, *prior.cfg.grid).to(next(prior.parameters()).device)
        with torch.no_grad():
            video = tokenizer.decode(grid).clamp(0, 1)  # (B, 3, T, H, W)
        return (video.permute(0, 2, 3, 4, 1).cpu().numpy() * 255).round().astype(np.uint8)

    return maskgit_class_accuracy(prior, decode, lambda v: majority(digit_reader.read_frames(v)), samples=samples,
                                  guidance_scale=guidance_scale)


def step_loss(model, batch: dict[str, torch.Tensor], generator: torch.Generator | None = None,
              min_ratio: torch.Tensor | float = 0.0) -> torch.Tensor:
    """Masked prior: cross-entropy on masked positions (masks from `generator`, else torch's
    global RNG; `min_ratio` as mask_for_training's). AR prior: on every free position."""
    if isinstance(model, MaskedPrior):
        masked = mask_for_training(batch["fixed"], generator, min_ratio)
        inputs = torch.where(batch["fixed"], batch["cond"], batch["targets"])
        inputs = torch.where(masked, torch.full_like(inputs, model.cfg.mask_id), inputs)
        logits = model(inputs, batch["cond"], batch["state"], batch["class_id"])
        ce = model.token_loss(logits, batch["targets"])
        return (ce * masked).sum() / masked.sum().clamp_min(1)
    # AR: fixed positions hold their condition tokens (as when serving) and carry no loss.
    tokens = torch.where(batch["fixed"], batch["cond"], batch["targets"])
    return model.loss(tokens, batch["cond"], batch["state"], batch["class_id"], ~batch["fixed"])


def lr_at(cfg: TrainConfig, step: int) -> float:
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    progress = min(1.0, (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup))
    return cfg.lr * (cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))


def train(cfg: TrainConfig, publish: str | None = None, log: Callable[[str], None] = print) -> Path:
    """Runs (or resumes) one stage; returns the run folder."""
    if cfg.stage not in STAGES:
        raise ValueError(f"unknown stage {cfg.stage!r}; choose one of {', '.join(STAGES)}")
    device = pick_device(cfg.device)
    torch.manual_seed(cfg.seed)
    torch.backends.cudnn.benchmark = True  # conv3d algorithm search pays off over thousands of steps
    if cfg.freeze_encoder and cfg.stage != "tokenizer":
        raise ValueError("freeze_encoder applies to the tokenizer stage only")
    if cfg.init_from_ar and (cfg.stage != "prior" or cfg.init_from):
        raise ValueError("init_from_ar starts the masked prior (prior stage) from an AR prior; not with init_from")
    if cfg.freeze_encoder and not cfg.init_from:
        raise ValueError("freeze_encoder fine-tunes a trained tokenizer: set init_from too")
    run = Path(cfg.run_dir or cfg.default_run_dir)
    run.mkdir(parents=True, exist_ok=True)
    model, kind, loss_fn, eval_fn = build_stage(cfg, device)
    trainable = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(trainable, lr=cfg.lr, weight_decay=cfg.weight_decay, betas=(0.9, 0.95))
    step, elapsed_before = 0, 0.0
    state_path = run / "state.pt"
    if state_path.is_file():
        state = torch.load(state_path, map_location=device, weights_only=False)
        model.load_state_dict(state["model"])
        try:
            opt.load_state_dict(state["optimizer"])
        except ValueError as e:  # e.g. a full run's optimizer and a decoder-only run's
            raise ValueError(f"{run} holds a run that trained other parameters ({e}); "
                             f"pass another --run-dir") from e
        step, elapsed_before = state["step"], state.get("elapsed", 0.0)
        if "torch_rng" in state:  # training masks continue as in an uninterrupted run
            torch.set_rng_state(state["torch_rng"].cpu())
            if device.type == "cuda" and "cuda_rng" in state:
                torch.cuda.set_rng_state(state["cuda_rng"].cpu())
        if cfg.fit_steps_to_budget and "steps" in state:
            cfg.steps = state["steps"]  # the fitted total, so the schedule continues where it was
        log(f"resuming {cfg.name} at step {step} from {state_path}")
    elif cfg.init_from:
        added = load_init(model, cfg.init_from, cfg.name)
        log(f"initialised {cfg.name} from {cfg.init_from}" + (" (class modulation added, zero)" if added else ""))
    elif cfg.init_from_ar:
        ar, _ = load_network(cfg.init_from_ar, "ar_prior")
        model.load_state_dict(masked_prior_from_ar(ar).state_dict())
        log(f"initialised {cfg.name} from the autoregressive prior in {cfg.init_from_ar}")
    (run / "config.json").write_text(json.dumps(dataclasses.asdict(cfg), indent=2) + "\n")
    start = time.time()
    amp = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else torch.autocast("cpu", enabled=False)

    def save():
        rng = {"torch_rng": torch.get_rng_state()}
        if device.type == "cuda":
            rng["cuda_rng"] = torch.cuda.get_rng_state()
        torch.save({"model": model.state_dict(), "optimizer": opt.state_dict(), "step": step, "steps": cfg.steps,
                    "elapsed": elapsed_before + time.time() - start, **rng}, state_path)
        save_network(run, cfg.name, kind, model, meta={
            "steps": step, "train_seconds": round(elapsed_before + time.time() - start, 1),
            "device": torch.cuda.get_device_name(0) if device.type == "cuda" else "cpu",
            "batch_size": cfg.batch_size, "data": cfg.data,
            **({"fps": FPS} if kind == "tokenizer" else {})})  # export reads the clip rate from here

    fit_start, shown = 0.0, {}
    bar = tqdm(total=cfg.steps, initial=step, desc=cfg.name, dynamic_ncols=True, mininterval=2.0)
    model.train()
    while step < cfg.steps:
        if cfg.time_budget_minutes and time.time() - start > cfg.time_budget_minutes * 60:
            log(f"time budget of {cfg.time_budget_minutes} min reached at step {step}")
            break
        for group in opt.param_groups:
            group["lr"] = lr_at(cfg, step)
        with amp:
            losses = loss_fn(step)
        opt.zero_grad(set_to_none=True)
        losses["loss"].backward()
        torch.nn.utils.clip_grad_norm_(trainable, cfg.grad_clip)
        opt.step()
        step += 1
        bar.update(1)
        if cfg.fit_steps_to_budget and cfg.time_budget_minutes and step == 40 and fit_start:
            # Fill the budget so the learning-rate schedule ends when the time does.
            per_step = (time.time() - fit_start) / 30
            cfg.steps = max(step + 1, int(cfg.time_budget_minutes * 60 * 0.93 / per_step))
            bar.total = cfg.steps
            log(f"{per_step * 1000:.1f} ms per step: training {cfg.steps} steps")
        if step == 10:
            fit_start = time.time()
        if step % 10 == 0:  # the training losses, and the last held-out figures beside them
            bar.set_postfix({**{k: f"{float(v.detach()):.4f}" for k, v in losses.items()}, **shown})
        if step % cfg.eval_every == 0 or step == cfg.steps:
            model.eval()
            metrics = eval_fn()
            shown = {k: f"{v:.4g}" for k, v in metrics.items() if k in HELD_OUT_FIGURES}
            model.train()
            line = {"step": step, "seconds": round(elapsed_before + time.time() - start, 1),
                    **{k: round(float(v.detach()) if hasattr(v, "detach") else float(v), 5) for k, v in losses.items()}, **{k: round(v, 4) for k, v in metrics.items()}}
            with open(run / "log.jsonl", "a") as f:
                f.write(json.dumps(line) + "\n")
            log(json.dumps(line))
        if step % cfg.save_every == 0:
            save()
    bar.close()
    model.eval()
    save()
    if publish:
        out = Path(publish)
        out.mkdir(parents=True, exist_ok=True)
        for suffix in (".safetensors", ".json"):
            shutil.copy(run / f"{cfg.name}{suffix}", out / f"{cfg.name}{suffix}")
        log(f"published {cfg.name} to {out}")
    return run

