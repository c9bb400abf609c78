"""Checks a parsed request against the chosen model's manifest and the server's limits, and
returns the normalized request that a worker runs. Pure: no I/O, so every rule is tested directly.

Reading the input video (base64, upload, or a previous job's output) is I/O and lives in
`intake.py`; it calls `check_input_frames` here once the video is decoded.
"""
from __future__ import annotations

import functools
import secrets
from typing import Any, Callable, Mapping

from server.api.errors import APIError
from server.api.schemas import SamplerSpec, VideoCreateRequest
from server.catalogue import Catalogue
from server.manifest import Manifest
from server.request import Mask, Size, VideoRequest, needs_input
from server.samplers import SamplerOptions
from server.settings import Settings
from server.tasks import CLASS_TASKS, LEADING_FRAME_TASKS, SPATIAL_TASKS as MASK_TASKS, TaskError, pixel_mask

SEED_RANGE = 2**31  # a default seed is drawn from [0, 2**31)


def invalid(param: str, message: str, code: str = "invalid_value") -> APIError:
    return APIError(422, code, message, param=param)


def choose_manifest(catalogue: Catalogue, model: str | None) -> Manifest:
    """The request's model, or the server's default. An unknown id is a 404 (like any unknown id),
    with `param: "model"` so a client can tell it from an unknown job."""
    manifests = catalogue.manifests
    model_id = model or catalogue.default_model
    if model_id not in manifests:
        raise APIError(404, "model_not_found",
                       f"no model {model_id!r}; this server has: {', '.join(sorted(manifests))}", param="model")
    return manifests[model_id]


def _check_class(req: VideoCreateRequest, manifest: Manifest) -> int | None:
    n = len(manifest.classes)
    if req.class_label is None:
        if req.task in CLASS_TASKS:
            raise invalid("class_label", f"{req.task} needs class_label (0..{n - 1})", "missing_field")
        return None
    if not 0 <= req.class_label < n:
        raise invalid("class_label", f"class_label must be in 0..{n - 1} for model {manifest.model_id}; got {req.class_label}")
    return req.class_label


def check_input_source(req: VideoCreateRequest) -> None:
    """Where the input comes from: a video, a previous job's output, or (an edit) a job's tokens."""
    if req.edit is not None:
        if req.task not in MASK_TASKS:
            raise invalid("edit", f"an edit regenerates a masked region: use inpainting or outpainting, not {req.task}")
        if req.input_video is not None or req.input_video_id is not None:
            raise invalid("edit", "give edit or an input video (input_video, input_video_id), not both")
        return
    if req.input_video is not None and req.input_video_id is not None:
        raise invalid("input_video_id", "give input_video or input_video_id, not both")
    if needs_input(req.task) and req.input_video is None and req.input_video_id is None:
        raise invalid("input_video", f"{req.task} needs an input video (input_video or input_video_id)", "missing_field")


def _check_frames(req: VideoCreateRequest, manifest: Manifest, settings: Settings) -> tuple[int, int | None]:
    window = manifest.window_frames
    num_frames = req.num_frames if req.num_frames is not None else window
    if not 1 <= num_frames <= settings.max_num_frames:
        raise invalid("num_frames", f"num_frames must be in 1..{settings.max_num_frames}; got {num_frames}")
    if req.task == "frame_interpolation" and num_frames < 2:
        raise invalid("num_frames", "frame_interpolation needs num_frames >= 2")
    if req.task not in LEADING_FRAME_TASKS:
        return num_frames, None  # condition_frames has no meaning for these tasks
    k = req.condition_frames if req.condition_frames is not None else manifest.default_condition_frames
    if not 1 <= k < window:
        raise invalid("condition_frames", f"condition_frames must be in 1..{window - 1} (the window is {window}); got {k}")
    if k >= num_frames:
        raise invalid("condition_frames", f"condition_frames ({k}) must be less than num_frames ({num_frames})")
    return num_frames, k


def _check_mask(req: VideoCreateRequest, num_frames: int) -> Mask | None:
    if req.task not in MASK_TASKS:
        return None  # a mask means nothing to the other tasks; the echoed request shows null
    mask = req.mask
    if mask is None or (mask.preset is None) == (mask.box is None):
        raise invalid("mask", f'{req.task} needs a mask: {{"preset": "center"}} or {{"box": [x0, y0, x1, y1]}}, exactly one',
                      "missing_field" if mask is None else "invalid_value")
    try:  # the task module is the one judge of boxes and presets; 8x8 pixels is enough to check them
        pixel_mask(req.task, num_frames, 8, 8, preset=mask.preset, box=mask.box)
    except TaskError as exc:
        raise invalid("mask.box" if mask.box is not None else "mask.preset", str(exc)) from None
    return Mask.from_dict({"preset": mask.preset} if mask.preset is not None else {"box": mask.box})


def _check_sampler(task: str, spec: SamplerSpec | None, manifest: Manifest, settings: Settings) -> SamplerOptions:
    """Fields the request leaves out get the model's recommendation for the task (manifest
    `sampler_defaults`), then the built-in defaults: see server/samplers/options.py."""
    requested = spec.model_dump(exclude_none=True) if spec is not None else {}
    method = requested.get("method")
    if method is not None and method not in manifest.samplers:
        raise invalid("sampler.method", f"model {manifest.model_id} has samplers {', '.join(manifest.samplers)}; got {method!r}")
    chosen = manifest.sampler_for(task, requested)
    if chosen.steps > settings.max_steps:
        raise invalid("sampler.steps", f"sampler.steps must be in 1..{settings.max_steps}; got {chosen.steps}")
    return chosen


def _check_deadline(seconds: float | None, settings: Settings) -> float:
    if seconds is None:
        return settings.max_job_seconds
    if seconds > settings.max_job_seconds:
        raise invalid("deadline_seconds", f"deadline_seconds must be in (0, {settings.max_job_seconds:g}] "
                      f"(the server's max_job_seconds); got {seconds:g}")
    return float(seconds)


def normalize_request(req: VideoCreateRequest, manifest: Manifest, settings: Settings, *,
                      new_seed: Callable[[], int] = lambda: secrets.randbelow(SEED_RANGE)) -> VideoRequest:
    """Every rule that needs the manifest or the settings; returns the request as the job will run
    it, every default applied. Raises APIError 422 naming the first bad field."""
    if req.task not in manifest.tasks:
        raise invalid("task", f"model {manifest.model_id} does not serve {req.task}; it serves {', '.join(manifest.tasks)}")
    class_label = _check_class(req, manifest)
    check_input_source(req)
    num_frames, condition_frames = _check_frames(req, manifest, settings)
    mask = _check_mask(req, num_frames)
    size = req.size or manifest.sizes[0]
    if size not in manifest.sizes:
        raise invalid("size", f"model {manifest.model_id} makes sizes {', '.join(manifest.sizes)}; got {size!r}")
    return VideoRequest(
        task=req.task, num_frames=num_frames, size=Size.parse(size),
        fps=req.fps if req.fps is not None else manifest.fps,
        seed=req.seed if req.seed is not None else new_seed(),
        sampler=_check_sampler(req.task, req.sampler, manifest, settings),
        priority=req.priority, output_format=req.output_format,
        deadline_seconds=_check_deadline(req.deadline_seconds, settings),
        class_label=class_label, mask=mask, condition_frames=condition_frames,
        # class_conditional ignores any input video it is sent
        input_video_id=req.input_video_id if needs_input(req.task) else None, previews=req.previews,
        edit_from=req.edit.from_ if req.edit is not None else None)


def validate_request(body: Mapping[str, Any] | VideoCreateRequest, manifest: Manifest, settings: Settings) -> VideoRequest:
    """The API's validation for callers without an HTTP request (`kinetoscope generate`, the
    evaluation, the benchmarks): a create body (as JSON would carry it, without the input video's
    bytes) -> the VideoRequest, or APIError."""
    from pydantic import ValidationError

    from server.api.errors import validation_error

    if not isinstance(body, VideoCreateRequest):
        try:
            body = VideoCreateRequest.model_validate(dict(body))
        except ValidationError as exc:
            raise validation_error(exc.errors()) from None
    return normalize_request(body, manifest, settings)


def pipeline_request(manifest: Manifest, task: str, seed: int, *, sampler: SamplerOptions,
                     size: tuple[int, int] | None = None, num_frames: int | None = None,
                     class_label: int | None = None, preset: str | None = None, box: list | None = None,
                     condition_frames: int | None = None) -> VideoRequest:
    """A request for code that runs the pipeline itself (the evaluation, the gallery, the
    benchmarks), through the same validation as the API: `size` is (H, W); every sampler field is
    given, so the model's recommendations do not enter; the input clip is handed to the pipeline
    directly (so none is named), and no serving limit applies."""
    from dataclasses import asdict

    body = {"task": task, "seed": seed, "sampler": asdict(sampler), "num_frames": num_frames,
            "size": None if size is None else f"{size[1]}x{size[0]}", "class_label": class_label,
            "condition_frames": condition_frames,
            "mask": {"preset": preset} if preset is not None else ({"box": box} if box is not None else None),
            "input_video_id": "direct" if needs_input(task) else None}
    return validate_request({k: v for k, v in body.items() if v is not None}, manifest, _unlimited())


@functools.cache
def _unlimited() -> Settings:
    """The settings of pipeline_request: no serving limit (made once, not per request)."""
    return Settings(model_repository=".", max_steps=1 << 20, max_num_frames=1 << 20)


def check_metadata(metadata: Mapping[str, str] | None, settings: Settings) -> dict[str, str]:
    """A job's metadata: a few short string pairs (limits from the settings)."""
    metadata = dict(metadata or {})
    if len(metadata) > settings.max_metadata_pairs:
        raise invalid("metadata", f"metadata holds at most {settings.max_metadata_pairs} pairs; got {len(metadata)}")
    for key, value in metadata.items():
        if not 1 <= len(key) <= settings.max_metadata_key_chars:
            raise invalid("metadata", f"metadata keys are 1..{settings.max_metadata_key_chars} characters; got {key[:80]!r}")
        if len(value) > settings.max_metadata_value_chars:
            raise invalid("metadata", f"metadata[{key!r}] is longer than {settings.max_metadata_value_chars} characters")
    return metadata


def check_input_frames(request: VideoRequest, frames: int) -> None:
    """Rules on the decoded input's length: leading-frame tasks need their k given frames, and
    frame_interpolation needs a first and a distinct last frame."""
    k = request.condition_frames
    if k is not None and frames < k:
        raise invalid("input_video", f"condition_frames is {k} but the input video has {frames} frame(s)")
    if request.task == "frame_interpolation" and frames < 2:
        raise invalid("input_video", f"frame_interpolation needs an input video of at least 2 frames; it has {frames}")
