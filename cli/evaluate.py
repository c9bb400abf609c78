"""`kinetoscope eval`: the served model measured on the held-out Moving Digits split
(models/evaluation/)."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer


def evaluate(model_repository: Annotated[Path, typer.Option(help="exported model repository")] = Path("model_repository/moving-digits"),
             clips: Annotated[int, typer.Option(help="held-out clips per measurement")] = 64,
             output: Annotated[Optional[Path], typer.Option(help="write the results as JSON here")] = None,
             eval_seed: Annotated[Optional[int], typer.Option(help="which held-out clips (another seed: another sample); default 20240")] = None,
             request_seed: Annotated[Optional[int], typer.Option(help="request i gets this seed + i; default 7000")] = None,
             only: Annotated[Optional[str], typer.Option(help="comma-separated measurements to run (default all): reader, "
                             "tokenizer, class_conditional, frame_prediction, inpainting, outpainting, super_resolution, "
                             "cascade, samplers")] = None):
    """Measure the served model on the held-out Moving Digits split (prints a Markdown table)."""
    from models.evaluation.measurements import evaluate as run

    seeds = {k: v for k, v in (("eval_seed", eval_seed), ("request_seed", request_seed)) if v is not None}
    chosen = tuple(name.strip() for name in only.split(",") if name.strip()) if only else None
    try:
        run(model_repository, clips=clips, output=output, only=chosen, **seeds)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
