"""The API's request and response bodies as pydantic models (they are also the OpenAPI schema).

Only the shape and the limits that never change live here; checks that need the model's manifest
or the server's settings (sizes, classes, frame limits) are in `validation.py`.
"""
from __future__ import annotations

from typing import Annotated, Any, Literal, Optional, Union

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from server.jobs.base import PRIORITIES, STATUSES
from server.output import OUTPUT_FORMATS
from server.samplers import SAMPLERS
from server.tasks import ALL_TASKS, PRESETS
from server.jobs.webhooks import EVENTS as WEBHOOK_EVENTS
from server.webhooks import MAX_URL_CHARS

# Each name list is defined once, where its meaning lives; the schema (and so /openapi.json, which
# tests/test_client_contract.py checks the SDKs against) is built from them.
TaskName = Literal[ALL_TASKS]  # type: ignore[valid-type]
SamplerName = Literal[SAMPLERS]  # type: ignore[valid-type]
Priority = Literal[PRIORITIES]  # type: ignore[valid-type]
OutputFormat = Literal[tuple(OUTPUT_FORMATS)]  # type: ignore[valid-type]  # server/output.py encodes each
Status = Literal[STATUSES]  # type: ignore[valid-type]
WebhookEvent = Literal[WEBHOOK_EVENTS]  # type: ignore[valid-type]
MAX_SEED = 2**53 - 1  # the largest integer every JSON client (JavaScript included) keeps exact
# Bounds of the sampler's numbers: far beyond any useful value, low enough that no value can
# overflow the sampler's arithmetic (a guidance of 1e308 would make every logit infinite).
MAX_TEMPERATURE = 100.0
MAX_GUIDANCE_SCALE = 100.0
MAX_TOP_K = 2**31 - 1
# Every request body refuses NaN and +-Infinity (JSON `Infinity`, form text "inf"): they would
# pass `ge`/`le` checks and fail in the worker.
FINITE = ConfigDict(extra="forbid", allow_inf_nan=False)

Box = list[float]


def _integral(value: Any) -> Any:
    """A JSON number with no fraction (`16.0`) is the integer 16, as JSON Schema's `integer` says
    (and as a generated client may send it); `16.5` and `"16"` stay refused by the strict check."""
    return int(value) if isinstance(value, float) and value.is_integer() and abs(value) < 2**63 else value


def json_int(**bounds: Any) -> Any:
    """The type of every integer request field: `3.0` is 3 (JSON Schema's integer), `3.5` and `"3"`
    are not. `bounds` (ge, le, ...) go here, before the validator, not in the field's Field():
    there pydantic would write them into the JSON Schema as `ge`, not `minimum`."""
    return Annotated[int, Field(**bounds), BeforeValidator(_integral)]


JSONInt = json_int()


class MaskSpec(BaseModel):
    """Either a preset or a box; a box is [x0, y0, x1, y1] in relative coordinates, or one per
    output frame."""

    model_config = FINITE
    preset: Optional[Literal[PRESETS]] = Field(None, description="center | vertical | horizontal | dynamic")  # type: ignore[valid-type]
    box: Optional[Union[Box, list[Box]]] = Field(
        None, description="[x0, y0, x1, y1] in [0, 1] with x0 < x1 and y0 < y1, or a list of such boxes, one per output frame")


class EditSpec(BaseModel):
    """An exact edit: start from a completed job's stored tokens."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    from_: str = Field(alias="from", min_length=1, max_length=64, description="the id of a completed job (one window, "
                       "this model) whose tokens are edited")


class SamplerSpec(BaseModel):
    """Every field is optional: one left out gets the model's recommended value for the task and
    method (GET /v1/models, `sampler_defaults`), else the built-in default named below."""

    model_config = FINITE
    method: Optional[SamplerName] = Field(None, description="default: the model's recommended sampler for the task, else maskgit")
    steps: Optional[json_int(ge=1)] = Field(None, description="MaskGIT decoding steps; at most the server's max_steps (built-in default 12)")
    temperature: Optional[float] = Field(None, gt=0, le=MAX_TEMPERATURE, description="token sampling temperature (built-in default 1.0)")
    choice_temperature: Optional[float] = Field(None, ge=0, le=MAX_TEMPERATURE,
                                                description="MaskGIT confidence noise, annealed over the steps (built-in default 4.5)")
    guidance_scale: Optional[float] = Field(None, ge=0, le=MAX_GUIDANCE_SCALE, description="classifier-free guidance; 0 = off (built-in default 0)")
    top_k: Optional[json_int(ge=1, le=MAX_TOP_K)] = Field(None, description="sample from the k most likely tokens; null = all (built-in default)")


class VideoCreateRequest(BaseModel):
    """POST /v1/videos. As JSON, `input_video` is base64 (a `data:` URL is accepted too). As
    multipart/form-data, `input_video` is a file part and every other field a form field;
    `mask` and `sampler` are JSON strings there (e.g. `mask={"preset":"center"}`) or short forms
    (`mask=center`, `sampler=autoregressive`)."""

    model_config = FINITE
    model: Optional[str] = Field(None, description="a model id from GET /v1/models; default: the server's default model")
    task: TaskName
    class_label: Optional[json_int(ge=0)] = Field(None, description="required by the two class-conditional tasks")
    input_video: Optional[str] = Field(None, description=(
        "base64 MP4, WebM, GIF or PNG (JSON); a file part in multipart. It is centre-cropped to the model's "
        "aspect ratio and area-resized to its base size (the output size for pasting given pixels back); frame "
        "tasks use its first condition_frames frames (frame_interpolation: its first and last frame); spatial "
        "tasks use input frame t for output frame t, holding the last frame when the input is shorter"))
    input_video_id: Optional[str] = Field(None, description="instead of input_video: a completed job whose output is the input")
    mask: Optional[MaskSpec] = Field(None, description='required by inpainting and outpainting; an object, or the short form '
                                     '"center" (= {"preset": "center"})')
    condition_frames: Optional[json_int(ge=1)] = Field(None, description="frame prediction: leading input frames given; default: the model's")
    num_frames: Optional[json_int(ge=1)] = Field(None, description="default: the model's window; at most the server's max_num_frames")
    size: Optional[str] = Field(None, pattern=r"^\d+x\d+$", description='"WxH", one of the model\'s sizes; default: the base size')
    fps: Optional[json_int(ge=1, le=120)] = Field(None, description="default: the model's")
    seed: Optional[json_int(ge=0, le=MAX_SEED)] = Field(None, description="default: random (returned in the job)")
    sampler: Optional[SamplerSpec] = Field(None, description='an object, or the short form "maskgit" / "autoregressive" '
                                           '(= {"method": ...})')
    priority: Priority = "normal"
    deadline_seconds: Optional[float] = Field(None, gt=0, description=(
        "seconds from now (or the Cancel-After header): a job still queued then ends `expired` without running; a "
        "running MaskGIT job stops at the end of its current step and completes with the best video it has "
        "(`truncated` says how many steps ran); an autoregressive one fails with deadline_exceeded. At most the "
        "server's max_job_seconds, which also bounds a request without one"))
    output_format: OutputFormat = Field("mp4", description="the video variant's format: mp4 (H.264), webm (VP9) or gif; "
                                        "content?variant=frames is always the lossless frames (PNGs in a zip)")
    metadata: Optional[dict[str, str]] = Field(None, description="string pairs kept with the job and echoed back "
                                               "(limits: the server's max_metadata_* settings)")
    edit: Optional[EditSpec] = Field(None, description=(
        'inpainting or outpainting of a completed job\'s own tokens, instead of an input video: {"from": "<job id>"} '
        "with a mask; only the tokens whose footprint meets the region to generate are generated again, every other "
        "token stays exactly as it was (num_frames and size default to the source job's)"))
    previews: bool = Field(False, description=(
        "publish the current guess after every MaskGIT step (autoregressive sampler: every `ar_preview_every_tokens` "
        "sampled tokens, a server setting, and at each window's end, the tokens not decided yet filled in): "
        "`preview` events on GET /v1/videos/{id}/events and "
        "content?variant=preview (a PNG strip of the clip's frames); the video is the same with or without"))
    webhook: Optional[str] = Field(None, max_length=MAX_URL_CHARS, description=(
        "an http(s) URL that gets a signed POST (Standard Webhooks) of the job object at each of webhook_events; "
        "retried with backoff; public addresses only unless the server allows private ones"))
    webhook_events: Optional[list[WebhookEvent]] = Field(None, min_length=1, description=(
        "which changes to deliver; default: the terminal ones (completed, failed, canceled, expired)"))

    @model_validator(mode="before")
    @classmethod
    def _short_forms(cls, data: Any) -> Any:
        """`"mask": "center"` means `{"preset": "center"}`; `"sampler": "autoregressive"` means
        `{"method": "autoregressive"}` (the command line's forms)."""
        if isinstance(data, dict):
            if isinstance(data.get("mask"), str):
                data = {**data, "mask": {"preset": data["mask"]}}
            if isinstance(data.get("sampler"), str):
                data = {**data, "sampler": {"method": data["sampler"]}}
        return data


class VideoCreateMultipart(BaseModel):
    """The multipart/form-data variant of POST /v1/videos (documentation only)."""

    model: Optional[str] = None
    task: TaskName
    class_label: Optional[int] = None
    input_video: Optional[bytes] = Field(None, json_schema_extra={"format": "binary"},
                                         description="the input video file (or base64 text)")
    input_video_id: Optional[str] = None
    mask: Optional[str] = Field(None, description='JSON text, e.g. {"preset": "center"} or {"box": [0.25, 0.25, 0.75, 0.75]}')
    condition_frames: Optional[int] = None
    num_frames: Optional[int] = None
    size: Optional[str] = None
    fps: Optional[int] = None
    seed: Optional[int] = None
    sampler: Optional[str] = Field(None, description='JSON text, e.g. {"method": "maskgit", "steps": 12}')
    priority: Optional[Priority] = None
    deadline_seconds: Optional[float] = None
    output_format: Optional[OutputFormat] = None
    metadata: Optional[str] = Field(None, description='JSON text, e.g. {"user": "u_123"}')
    previews: Optional[bool] = None
    edit: Optional[str] = Field(None, description='JSON text, e.g. {"from": "video_..."}')
    webhook: Optional[str] = None
    webhook_events: Optional[str] = Field(None, description='JSON text, e.g. ["completed", "failed"]')


# --- responses -----------------------------------------------------------------------------------

class NormalizedSampler(BaseModel):
    method: SamplerName
    steps: int
    temperature: float
    choice_temperature: float
    guidance_scale: float
    top_k: Optional[int]


class NormalizedRequest(BaseModel):
    """The request as the server will run it: every default filled in, without the video bytes."""

    task: TaskName
    class_label: Optional[int]
    mask: Optional[dict[str, Any]] = Field(description='{"preset": p} or {"box": [...]}, null for other tasks')
    condition_frames: Optional[int] = Field(description="null for tasks without leading given frames")
    num_frames: int
    size: str
    fps: int
    seed: int
    sampler: NormalizedSampler
    priority: Priority
    deadline_seconds: float = Field(description="the job's deadline, seconds after created_at")
    output_format: OutputFormat
    input_video_id: Optional[str]
    has_input: bool
    previews: bool
    edit_from: Optional[str] = Field(None, description="the job whose tokens this edit starts from")


class JobError(BaseModel):
    code: str
    message: str


class VideoJob(BaseModel):
    id: str
    object: Literal["video"] = "video"
    model: str
    task: TaskName
    status: Status
    progress: int = Field(description="percent, rising monotonically while in progress")
    queue_position: Optional[int] = Field(description="0-based; null unless queued")
    created_at: float
    started_at: Optional[float]
    completed_at: Optional[float]
    expires_at: Optional[float] = Field(description="when the job and its content are deleted")
    error: Optional[JobError]
    size: str
    num_frames: int
    fps: int
    seed: int
    request: NormalizedRequest
    metadata: dict[str, str] = Field(description="the string pairs given at create")
    truncated: Optional["Truncated"] = Field(None, description="set when the deadline cut MaskGIT decoding short")
    webhook_status: Optional["WebhookStatus"] = Field(None, description="null unless the job has a webhook")
    urls: "JobUrls"


class WebhookStatus(BaseModel):
    url: str
    events: list[WebhookEvent]
    enqueued: int = Field(description="deliveries the job's changes have made so far")
    delivered: int
    failed: int = Field(description="deliveries given up after webhook_retry_seconds of retries")
    last: Optional[dict[str, Any]] = Field(description='the last finished delivery: {"event", "delivered", "attempts", "detail", "at"}')


class Truncated(BaseModel):
    steps_done: int
    steps: int


class JobUrls(BaseModel):
    """Absolute URLs of the job's endpoints, built from the request (and X-Forwarded-Proto /
    X-Forwarded-Host behind a proxy)."""

    self: str
    content: str
    thumbnail: str
    events: str
    cancel: str


VideoJob.model_rebuild()


class VideoList(BaseModel):
    object: Literal["list"] = "list"
    data: list[VideoJob]
    has_more: bool
    first_id: Optional[str]
    last_id: Optional[str]


class VideoDeleted(BaseModel):
    id: str
    object: Literal["video.deleted"] = "video.deleted"
    deleted: bool


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    description: str
    tasks: list[str]
    sizes: list[str]
    window_frames: int
    default_condition_frames: int
    fps: int
    classes: list[str]
    samplers: list[str]
    sampler_defaults: dict[str, "TaskSamplerCard"] = Field(
        description="per task: the sampler a request without sampler fields gets (`method`), and every method's "
                    "settings as a request naming only that method gets them")
    backend: str
    max_num_frames: int = Field(description="the server's longest output, autoregressive extension included")


class TaskSamplerCard(BaseModel):
    method: SamplerName
    methods: dict[str, NormalizedSampler]


ModelCard.model_rebuild()


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


class ErrorDetail(BaseModel):
    type: str
    code: str
    message: str
    param: Optional[str]


class ErrorResponse(BaseModel):
    error: ErrorDetail


class Health(BaseModel):
    status: Literal["ok"] = "ok"


class Ready(BaseModel):
    status: Literal["ready"] = "ready"
    models: list[str]
    queue: Literal["ok"] = "ok"
