"""`videos.edit`'s create fields, for both twins (Videos, AsyncVideos)."""
from __future__ import annotations

from typing import Mapping, Sequence, Union

from ..types import Mask


def _edit_params(video_id: str, mask: Union[Mask, str, Sequence[float]], task: str, params: dict) -> dict:
    """The create fields of an edit: `mask` may also be a preset name or an [x0, y0, x1, y1] box."""
    if "edit" in params or "input_video" in params or "input_video_id" in params:
        raise TypeError("videos.edit takes its input from the job it edits: no edit, input_video or input_video_id")
    if isinstance(mask, str):
        mask = {"preset": mask}  # type: ignore[typeddict-item]
    elif not isinstance(mask, Mapping):
        mask = {"box": [float(v) for v in mask]}
    return {**params, "task": task, "mask": dict(mask), "edit": {"from": video_id}}
