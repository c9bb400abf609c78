from .models import AsyncModels, Models
from .tokens import AsyncTokens, Tokens
from .videos import AsyncVideos, Videos

__all__ = ["Videos", "AsyncVideos", "Models", "AsyncModels", "Tokens", "AsyncTokens"]
