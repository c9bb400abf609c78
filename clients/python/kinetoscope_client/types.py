"""The API's objects as pydantic models (responses) and TypedDicts (request parameters).

Response models accept fields this client does not know yet (`extra="allow"`), so a newer
server never breaks an older client.
"""

import base64
import sys
import urllib.parse
from typing import Any, List, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, field_serializer, field_validator

if sys.version_info >= (3, 11):
    from typing import NotRequired, Required, TypedDict
else:  # typing_extensions comes with pydantic
    from typing_extensions import NotRequired, Required, TypedDict

__all__ = [
    "Task",
    "Status",
    "Priority",
    "Variant",
    "MaskPreset",
    "Mask",
    "Sampler",
    "Edit",
    "VideoCreateParams",
    "VideoError",
    "Video",
    "VideoList",
    "VideoDeleted",
    "Preview",
    "Model",
    "ModelList",
    "TERMINAL_STATUSES",
]

Task = Literal[
    "class_conditional",
    "class_conditional_frame_prediction",
    "frame_prediction",
    "frame_interpolation",
    "inpainting",
    "outpainting",
]
Status = Literal["queued", "in_progress", "completed", "failed", "canceled", "expired"]
Priority = Literal["high", "normal", "low"]
# frames: the lossless frames, PNGs in a zip; tokens, confidence: JSON; preview: the latest preview (PNG strip)
Variant = Literal["video", "thumbnail", "frames", "tokens", "confidence", "preview"]
MaskPreset = Literal["center", "vertical", "horizontal", "dynamic"]
WebhookEvent = Literal["started", "progress", "completed", "failed", "canceled", "expired"]

TERMINAL_STATUSES = frozenset({"completed", "failed", "canceled", "expired"})


# --- request parameters ---------------------------------------------------------------------

class Mask(TypedDict, total=False):
    """Inpainting/outpainting region: a preset, or a box `[x0, y0, x1, y1]` in relative
    coordinates (0..1), or one such box per frame."""

    preset: MaskPreset
    box: Union[List[float], List[List[float]]]


Edit = TypedDict("Edit", {"from": str})  # {"from": "<id of a completed job>"}: regenerate only the mask's tokens


class Sampler(TypedDict, total=False):
    """Decoding settings; every key is optional (the server fills in the model's defaults)."""

    method: Literal["maskgit", "autoregressive"]
    steps: int
    temperature: float
    choice_temperature: float
    guidance_scale: float
    top_k: Optional[int]


class VideoCreateParams(TypedDict, total=False):
    """Keyword arguments of `videos.create` (and of `create_and_poll` and `generate`).

    `input_video` is a path (str or os.PathLike), bytes, or a binary file object: it is uploaded
    as a multipart file part. `idempotency_key` defaults to a fresh uuid4 per call, reused by
    every retry of that call. `wait` sends `Prefer: wait=N`: the server holds the request up to
    N seconds and answers with the finished job if it finished by then."""

    task: Required[Task]
    model: str
    class_label: Optional[int]
    input_video: Any
    input_video_id: str
    mask: Mask
    condition_frames: int
    num_frames: int
    size: str
    fps: int
    seed: int
    sampler: Sampler
    priority: Priority
    metadata: dict[str, str]
    output_format: Literal["mp4", "webm", "gif"]
    deadline_seconds: float
    webhook: str
    webhook_events: List[WebhookEvent]
    previews: bool
    edit: Edit
    idempotency_key: NotRequired[Optional[str]]
    wait: NotRequired[Optional[float]]


# --- responses -------------------------------------------------------------------------------

class _Response(BaseModel):
    model_config = ConfigDict(extra="allow", protected_namespaces=())


class VideoError(_Response):
    """Why a job failed: `{"code", "message"}`."""

    code: str
    message: str


class Video(_Response):
    """A generation job (`"object": "video"`). Times are Unix seconds."""

    id: str
    object: str = "video"
    model: Optional[str] = None
    task: Optional[str] = None
    status: Status
    progress: int = 0
    queue_position: Optional[int] = None
    created_at: Optional[float] = None
    started_at: Optional[float] = None
    completed_at: Optional[float] = None
    expires_at: Optional[float] = None
    error: Optional[VideoError] = None
    size: Optional[str] = None
    num_frames: Optional[int] = None
    fps: Optional[int] = None
    seed: Optional[int] = None
    request: Optional[dict[str, Any]] = None
    metadata: dict[str, str] = Field(default_factory=dict)
    truncated: Optional[dict[str, int]] = None  # {"steps_done", "steps"}: the deadline cut decoding short
    webhook_status: Optional[dict[str, Any]] = None  # url, events, enqueued, delivered, failed, last
    # Absolute URLs of the job's endpoints: self, content, thumbnail, events, cancel.
    urls: dict[str, str] = Field(default_factory=dict)

    @property
    def is_terminal(self) -> bool:
        """True once the job is completed, failed or canceled (it will not change again)."""
        return self.status in TERMINAL_STATUSES


class Preview(_Response):
    """One `preview` event of a job created with `previews=True`: the whole clip as guessed after
    decoding step `step` of `steps` (MaskGIT: a step; the autoregressive sampler: the tokens
    decided, a preview every few tokens). The last one is exactly the result."""

    id: str
    step: int  # 1-based; a clip of several windows counts the steps of all of them
    steps: int
    decided: float  # the share of tokens decided, 0..1 (1 at the last step)
    image: str  # a data URL: the frames side by side (a PNG strip of the window being decoded, base size)
    token_grid: Optional[List[int]] = None  # [t, h, w] of `confidence`
    # The sampler's confidence per token, one byte each (0..255 for 0..1), raster order over
    # token_grid; the wire's base64 is decoded here. None if the server sent no map.
    confidence: Optional[bytes] = None

    @field_validator("confidence", mode="before")
    @classmethod
    def _decode_confidence(cls, value: Any) -> Any:
        return base64.b64decode(value) if isinstance(value, str) else value

    @field_serializer("confidence", when_used="json")
    def _encode_confidence(self, value: Optional[bytes]) -> Optional[str]:
        return None if value is None else base64.b64encode(value).decode("ascii")  # as on the wire

    @property
    def image_type(self) -> str:
        """The image's media type, e.g. `image/png`."""
        return self.image[len("data:"):].split(";", 1)[0].split(",", 1)[0]

    @property
    def image_bytes(self) -> bytes:
        """The image file itself (PNG or WebP bytes), decoded from the data URL (base64, or
        percent-encoded as a data URL without `;base64` is)."""
        head, _, data = self.image.partition(",")
        return base64.b64decode(data) if head.endswith(";base64") else urllib.parse.unquote_to_bytes(data)

    def confidence_map(self) -> Optional[List[List[List[float]]]]:
        """The confidence as nested lists `[t][h][w]` of floats in 0..1, or None without a map."""
        if self.confidence is None or not self.token_grid:
            return None
        t, h, w = self.token_grid
        values = [v / 255 for v in self.confidence]
        return [[values[(i * h + j) * w:(i * h + j + 1) * w] for j in range(h)] for i in range(t)]


class VideoList(_Response):
    """One page of GET /v1/videos, newest first."""

    object: str = "list"
    data: List[Video] = Field(default_factory=list)
    has_more: bool = False
    first_id: Optional[str] = None
    last_id: Optional[str] = None


class VideoDeleted(_Response):
    """The answer to DELETE /v1/videos/{id}."""

    id: str
    object: str = "video.deleted"
    deleted: bool = True


class Model(_Response):
    """A served model, from GET /v1/models."""

    id: str
    object: str = "model"
    description: str = ""
    tasks: List[str] = Field(default_factory=list)
    sizes: List[str] = Field(default_factory=list)
    window_frames: Optional[int] = None
    default_condition_frames: Optional[int] = None
    fps: Optional[int] = None
    classes: List[str] = Field(default_factory=list)
    samplers: List[str] = Field(default_factory=list)
    # Per task: {"method": the recommended sampler, "methods": {method: its settings}}; a request
    # that leaves sampler fields out gets these.
    sampler_defaults: dict[str, Any] = Field(default_factory=dict)
    backend: Optional[str] = None
    max_num_frames: Optional[int] = None  # the server's longest output, extension included


class ModelList(_Response):
    object: str = "list"
    data: List[Model] = Field(default_factory=list)
