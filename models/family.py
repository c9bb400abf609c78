"""`kinetoscope train family`: every network of a demo family in order, within one time budget.

    tokenizer -> masked prior, autoregressive prior (on the tokenizer's tokens) -> sr 32->64 -> sr 64->128

Each stage gets a share of the budget that is left when it starts (so a slow stage does not eat
the next one's time), fits its step count to that time (the learning-rate schedule ends when the
time does), and runs in its own folder under `runs_dir`, so the same command resumes where an
interrupted one stopped (a finished stage is skipped). Each network is published to `out` as it
finishes; with PyTorch's ONNX exporter installed, the family's weight-free bundle is written to
`out/onnx` at the end (what `make serve` assembles).

Presets: `cpu` (batch sizes of the CPU demo configuration), `gpu` (large batches, bf16 autocast:
one NVIDIA GPU), `tiny` (small networks, for tests). `kinetoscope train family --help`.
"""
from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any, Callable

from models.train import TrainConfig, apply_overrides, train

# (stage, run name, share of the remaining budget when the stage starts)
STAGES: list[tuple[str, str, float]] = [
    ("tokenizer", "tokenizer", 0.40),
    ("prior", "masked_prior", 0.40),  # 40% of what the tokenizer left ...
    ("ar", "ar_prior", 0.55),
    ("sr", "sr_64", 0.40),
    ("sr", "sr_128", 1.00),  # ... the last stage takes what is left
]
EXPORT_RESERVE = 0.08  # share of the whole budget kept for the export at the end

PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    "cpu": {"tokenizer": {"batch_size": 8, "lr": 2e-3}, "prior": {"batch_size": 16, "lr": 1e-3},
            "ar": {"batch_size": 16, "lr": 1e-3}, "sr": {"batch_size": 4, "lr": 2e-3}},
    "gpu": {"tokenizer": {"batch_size": 64, "lr": 2e-3}, "prior": {"batch_size": 128, "lr": 1e-3},
            "ar": {"batch_size": 128, "lr": 1e-3}, "sr": {"batch_size": 32, "lr": 2e-3}},
    "tiny": {stage: {"batch_size": 2, "lr": 1e-3, "tokenizer.channels": "8,16,32", "tokenizer.bits": 6,
                     "tokenizer.mid_blocks": 1, "prior.dim": 32, "prior.layers": 1, "prior.heads": 2,
                     "sr.channels": 8, "sr.blocks": 1, "probe_samples": 0, "warmup": 1}
             for stage in ("tokenizer", "prior", "ar", "sr")},
}


def stage_config(stage: str, name: str, preset: str, runs_dir: Path, minutes: float, device: str,
                 overrides: list[str]) -> TrainConfig:
    cfg = TrainConfig(stage=stage, run_dir=str(runs_dir / name), device=device, steps=10**6,
                      time_budget_minutes=minutes, fit_steps_to_budget=True, tokenizer_dir=str(runs_dir / "tokenizer"),
                      out_scale=4 if name == "sr_128" else 2, save_every=200, eval_every=500)
    return apply_overrides(cfg, [f"{k}={v}" for k, v in PRESETS[preset][stage].items()] + overrides)


DONE = "family-stage-done"  # marker in a stage's run folder: its share of a family run ended


def _finished(run_dir: Path, name: str) -> bool:
    """A stage that ran to the end of its share (an interrupted one has no marker and resumes)."""
    return (run_dir / DONE).is_file() and (run_dir / f"{name}.safetensors").is_file()


def train_family(out: str | Path, budget_minutes: float, preset: str = "cpu", device: str = "auto",
                 runs_dir: str | Path = "runs/family", overrides: list[str] | None = None,
                 export: Callable[[Path, Path], None] | None = None, log: Callable[[str], None] = print) -> Path:
    """`export(checkpoints, runs_dir)`, if given, runs at the end within the budget (the command
    line passes the export step: models/ does not import export/, which sits above it)."""
    if preset not in PRESETS:
        raise ValueError(f"preset must be one of {', '.join(PRESETS)}; got {preset!r}")
    if budget_minutes <= 0:
        raise ValueError(f"budget_minutes must be > 0; got {budget_minutes}")
    out, runs_dir = Path(out), Path(runs_dir)
    out.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    deadline = start + budget_minutes * 60 * (1 - (EXPORT_RESERVE if export is not None else 0.0))
    for stage, name, share in STAGES:
        run_dir = runs_dir / name
        if _finished(run_dir, name):
            log(f"{name}: finished earlier, publishing")
            for suffix in (".safetensors", ".json"):
                shutil.copy(run_dir / f"{name}{suffix}", out / f"{name}{suffix}")
            continue
        minutes = max(0.05, (deadline - time.monotonic()) / 60 * share)
        log(f"{name}: {minutes:.1f} min ({preset} preset)")
        cfg = stage_config(stage, name, preset, runs_dir, minutes, device, overrides or [])
        train(cfg, publish=str(out), log=log)
        (run_dir / DONE).write_text(json.dumps({"minutes": round(minutes, 2)}) + "\n")
    if export is not None:
        export(out, runs_dir)
    summary = {"preset": preset, "budget_minutes": budget_minutes,
               "minutes": round((time.monotonic() - start) / 60, 2),
               "files": {f.name: f.stat().st_size for f in sorted(out.iterdir()) if f.is_file()}}
    (out / "family.json").write_text(json.dumps(summary, indent=2) + "\n")
    log(json.dumps(summary))
    return out

