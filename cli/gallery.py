"""`kinetoscope gallery`: the PNG strips of every task, made by the demo model (models/gallery.py)."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def gallery(out: Annotated[Path, typer.Option(help="folder for the strips and index.md")] = Path("server/static/gallery"),
            model_repository: Annotated[Path, typer.Option(help="exported model repository")] = Path("model_repository/moving-digits")):
    """One PNG strip per task and preset, through the served pipeline with fixed seeds."""
    from models.gallery import main

    main(out, model_repository)
