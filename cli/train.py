"""`kinetoscope train STAGE`: one stage (tokenizer, prior, ar, sr) or the whole family.

The config is built here, as a dataclass: the stage's TrainConfig, the CPU demo settings with
--demo-cpu, then every `--set key=value` (models.train.apply_overrides, the one helper that types
values like the fields); then models.train.train or models.family.train_family runs it."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer


def _fail(message: str) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(2)


def stage_config(stage: str, *, demo_cpu: bool = False, run_dir: str = "", device: str = "auto",
                 overrides: list[str] | None = None):
    """The TrainConfig of one stage: the defaults, the CPU demo settings, the device, then the
    overrides. ValueError for an unknown stage or override."""
    from models.train import DEMO_CPU, STAGES, TrainConfig, apply_overrides

    if stage not in STAGES:
        raise ValueError(f"unknown stage {stage!r}; choose one of {', '.join(STAGES)} or family")
    cfg = TrainConfig(stage=stage, run_dir=run_dir, device=device)
    if demo_cpu:
        cfg = apply_overrides(cfg, [f"{k}={v}" for k, v in DEMO_CPU[stage].items()])
    return apply_overrides(cfg, overrides or [])


def train(stage: Annotated[str, typer.Argument(help="tokenizer | prior | ar | sr | family (every stage in order)")],
          set: Annotated[Optional[list[str]], typer.Option("--set", help="config override key=value (repeatable; "
                                                            "family: for every stage)")] = None,
          demo_cpu: Annotated[bool, typer.Option(help="the CPU demo configuration of the stage")] = False,
          run_dir: Annotated[str, typer.Option(help="run folder (default runs/<network>; family: runs/family)")] = "",
          publish: Annotated[Optional[str], typer.Option(help="copy the trained network here (family: required)")] = None,
          device: Annotated[str, typer.Option(help="auto (a GPU when present) | cpu | cuda | cuda:N")] = "auto",
          budget_minutes: Annotated[Optional[float], typer.Option(help="family: the whole run's time budget")] = None,
          preset: Annotated[str, typer.Option(help="family: cpu | gpu | tiny")] = "cpu",
          export: Annotated[bool, typer.Option(help="family: write the weight-free bundle at the end")] = True):
    """Train one stage, or the whole family within --budget-minutes (each resumes from its run
    folder). GPU when present."""
    if stage == "family":
        from models.family import train_family

        if budget_minutes is None or publish is None:
            raise _fail("train family needs --budget-minutes and --publish (the checkpoint folder)")
        try:
            train_family(publish, budget_minutes, preset=preset, device=device, runs_dir=run_dir or "runs/family",
                         overrides=set or [], export=export_bundle if export else None)
        except ValueError as e:  # a bad preset, budget or override
            raise _fail(str(e))
        return
    from models.train import train as run

    try:
        cfg = stage_config(stage, demo_cpu=demo_cpu, run_dir=run_dir, device=device, overrides=set)
    except ValueError as e:
        raise _fail(str(e))
    run(cfg, publish=publish)


def export_bundle(checkpoints: Path, runs_dir: Path) -> None:
    """The family's last step: the weight-free bundle beside the checkpoints (as `make bundle`)."""
    try:
        from export.bundle import write_bundle
        from export.onnx import export_repository
    except ImportError as exc:  # onnx / onnxscript missing: export later with `make bundle`
        typer.echo(f"not exported ({exc}); run `kinetoscope export bundle --checkpoints {checkpoints}` where onnx "
                   "is installed")
        return
    repo = Path(runs_dir) / "repository" / "moving-digits"
    export_repository(Path(checkpoints), repo)
    write_bundle(repo, Path(checkpoints), Path(checkpoints) / "onnx")
    typer.echo(f"bundle written to {Path(checkpoints) / 'onnx'}")

