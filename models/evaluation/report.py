"""The evaluation's output: its rows, the Markdown table printed for the README and the model
card, and the JSON file of every row."""
from __future__ import annotations

import json
import os
import platform
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

@dataclass
class Row:
    section: str
    measure: str
    value: float | str
    baseline: str = ""
    bar: str = ""
    met: bool | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def fmt(v: float | str, unit: str = "") -> str:
    if isinstance(v, str):
        return v
    if unit == "%":
        return f"{100 * v:.1f}%"
    return f"{v:.2f}{(' ' + unit) if unit else ''}"



def markdown(rows: list[Row]) -> str:
    lines = ["| task | measurement | served model | baseline | bar | met |", "| --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        met = "" if r.met is None else ("met" if r.met else "**not met**")
        lines.append(f"| {r.section} | {r.measure} | {r.value} | {r.baseline} | {r.bar} | {met} |")
    return "\n".join(lines)


def header(model_id: str, model_repository: Path, clips: int, eval_seed: int, request_seed: int,
           onnxruntime_version: str, seconds: float) -> str:
    """The line above the table: what was measured, with what, on what, in how long."""
    return (f"Model {model_id} from {model_repository}: {clips} held-out clips per measurement "
            f"(MovingDigits('test', seed={eval_seed}), request seeds {request_seed}+), ONNX Runtime {onnxruntime_version} CPU, "
            f"{len(os.sched_getaffinity(0))} cores, {seconds:.0f} s.\n")


def write_json(output: Path, rows: list[Row], *, model_id: str, model_repository: Path, clips: int, eval_seed: int,
               request_seed: int, seconds: float, onnxruntime_version: str) -> None:
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps({
        "model_id": model_id, "model_repository": str(model_repository), "clips": clips,
        "eval_seed": eval_seed, "request_seed": request_seed, "seconds": seconds,
        "backend": "onnxruntime", "onnxruntime": onnxruntime_version, "machine": platform.platform(),
        "cores": len(os.sched_getaffinity(0)),
        "rows": [vars(r) for r in rows],
    }, indent=2, default=float) + "\n")
