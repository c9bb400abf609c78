"""The one request type: a generation request with every default applied.

`VideoRequest` is what the API's validation returns (`server.api.validation.normalize_request`),
what a job stores (in memory, in SQLite and in Redis: `to_dict` / `from_dict` round-trip it
exactly), what the runtime and the pipeline receive, and what `kinetoscope generate`, the
evaluation and the benchmarks build (through the same validation). Nothing downstream of
validation parses a field again or fills in a default: a field here is the value the job runs with.

`to_dict()` is the job object's `request` (docs/api.md, "The job object"); its key order is
api.md's.
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Mapping, NamedTuple

from server.samplers import SamplerOptions


class Size(NamedTuple):
    """An output size; written "WxH" on the wire (the manifest's `sizes`)."""

    width: int
    height: int

    @classmethod
    def parse(cls, text: str) -> "Size":
        """"32x32" -> Size(32, 32); ValueError for anything else."""
        width, height = (int(v) for v in str(text).lower().split("x"))
        return cls(width, height)

    def __str__(self) -> str:
        return f"{self.width}x{self.height}"

    @property
    def hw(self) -> tuple[int, int]:
        """(H, W), the order arrays use."""
        return self.height, self.width


@dataclass(frozen=True)
class Mask:
    """Exactly one of a preset or a box ([x0, y0, x1, y1] relative, or one such box per frame)."""

    preset: str | None = None
    box: tuple | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"preset": self.preset} if self.preset is not None else {"box": _lists(self.box)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Mask":
        box = data.get("box")
        return cls(preset=data.get("preset"), box=_tuples(box) if box is not None else None)


def _tuples(value):
    return tuple(_tuples(v) for v in value) if isinstance(value, (list, tuple)) else value


def _lists(value):
    return [_lists(v) for v in value] if isinstance(value, (list, tuple)) else value


def needs_input(task: str) -> bool:
    """Every task but class_conditional is conditioned on a caller's video (decided here, once)."""
    return task != "class_conditional"


@dataclass(frozen=True)
class VideoRequest:
    """A validated request, as the job runs it. `class_label`, `mask` and `condition_frames` are
    None for the tasks they mean nothing to; `input_video_id` is None unless the input is a
    previous job's output."""

    task: str
    num_frames: int
    size: Size
    fps: int
    seed: int
    sampler: SamplerOptions
    priority: str
    output_format: str
    deadline_seconds: float  # after the job's created_at
    class_label: int | None = None
    mask: Mask | None = None
    condition_frames: int | None = None
    input_video_id: str | None = None
    previews: bool = False  # publish the current guess after every MaskGIT step (autoregressive: every few tokens)
    edit_from: str | None = None  # an exact edit of this completed job's tokens (its input: their document)

    @property
    def has_input(self) -> bool:
        return needs_input(self.task)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe, in api.md's order (the job object's `request`)."""
        sampler = {f.name: getattr(self.sampler, f.name) for f in fields(SamplerOptions)}
        return {"task": self.task, "class_label": self.class_label,
                "mask": self.mask.to_dict() if self.mask is not None else None,
                "condition_frames": self.condition_frames, "num_frames": self.num_frames, "size": str(self.size),
                "fps": self.fps, "seed": self.seed, "sampler": sampler, "priority": self.priority,
                "output_format": self.output_format, "deadline_seconds": self.deadline_seconds,
                "input_video_id": self.input_video_id, "has_input": self.has_input, "previews": self.previews,
                "edit_from": self.edit_from}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "VideoRequest":
        """Reads back what `to_dict` wrote (a stored job); `has_input` is derived, not read."""
        mask = data.get("mask")
        return cls(task=data["task"], num_frames=int(data["num_frames"]), size=Size.parse(data["size"]),
                   fps=int(data["fps"]), seed=int(data["seed"]), sampler=SamplerOptions(**data["sampler"]),
                   priority=data["priority"], output_format=data["output_format"],
                   deadline_seconds=float(data["deadline_seconds"]), class_label=data.get("class_label"),
                   mask=Mask.from_dict(mask) if mask is not None else None,
                   condition_frames=data.get("condition_frames"), input_video_id=data.get("input_video_id"),
                   # absent in jobs stored before previews and edits existed
                   previews=bool(data.get("previews", False)), edit_from=data.get("edit_from"))
