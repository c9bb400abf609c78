from .models import AsyncModels, Models
from .videos import AsyncVideos, Videos

__all__ = ["Videos", "AsyncVideos", "Models", "AsyncModels"]
