"""Python client for the Kinetoscope video generation API.

    from kinetoscope_client import Client
    client = Client()                                   # $KINETOSCOPE_BASE_URL, $KINETOSCOPE_API_KEY
    mp4 = client.videos.generate(task="class_conditional", class_label=3, output="out.mp4")
"""
from ._client import AsyncClient, Client
from ._exceptions import (
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    ConflictError,
    InternalServerError,
    JobFailedError,
    KinetoscopeError,
    NotFoundError,
    PayloadTooLargeError,
    RateLimitError,
    ServiceUnavailableError,
    UnprocessableEntityError,
    UnsupportedMediaTypeError,
    WaitTimeoutError,
)
from ._version import __version__
from .pagination import AsyncPage, AsyncPager, SyncPage
from .types import Edit, Mask, Model, Preview, Sampler, Video, VideoCreateParams, VideoDeleted, VideoError, VideoList
from .webhooks import WebhookVerificationError, verify_webhook

Job = Video  # the API calls a job's object "video"; both names work

__all__ = [
    "__version__",
    "verify_webhook",
    "WebhookVerificationError",
    "Client",
    "AsyncClient",
    "Video",
    "Job",
    "VideoError",
    "VideoList",
    "VideoDeleted",
    "VideoCreateParams",
    "Model",
    "Preview",
    "Edit",
    "Mask",
    "Sampler",
    "SyncPage",
    "AsyncPage",
    "AsyncPager",
    "KinetoscopeError",
    "APIStatusError",
    "BadRequestError",
    "AuthenticationError",
    "NotFoundError",
    "ConflictError",
    "PayloadTooLargeError",
    "UnsupportedMediaTypeError",
    "UnprocessableEntityError",
    "RateLimitError",
    "InternalServerError",
    "ServiceUnavailableError",
    "APIConnectionError",
    "APITimeoutError",
    "JobFailedError",
    "WaitTimeoutError",
]
