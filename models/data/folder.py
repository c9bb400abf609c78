"""A folder of the user's own videos (MP4, WebM, GIF) as training clips.

Each clip is a random window of T frames from a random file, resized to the model's size
(centre crop to square, then area resize). Clip i is a pure function of (seed, i).
Decoding uses imageio-ffmpeg, the same library the server uses.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from server.video import decode_video, fit_to_size

EXTENSIONS = (".mp4", ".webm", ".gif", ".mov", ".mkv")


class VideoFolder:
    def __init__(self, root: str | Path, frames: int = 16, size: int = 32, seed: int = 0, max_bytes: int = 1 << 30):
        self.root = Path(root)
        self.files = sorted(p for p in self.root.rglob("*") if p.suffix.lower() in EXTENSIONS)
        if not self.files:
            raise ValueError(f"no videos ({', '.join(EXTENSIONS)}) under {self.root}")
        self.frames, self.size, self.seed, self.max_bytes = frames, size, seed, max_bytes
        self._cache: dict[Path, np.ndarray] = {}

    def _video(self, path: Path) -> np.ndarray:
        if path not in self._cache:
            decoded = decode_video(path.read_bytes(), max_bytes=self.max_bytes, max_frames=100_000, max_pixels=1 << 24)
            self._cache[path] = decoded.frames
        return self._cache[path]

    def clip(self, index: int, scale: int = 1) -> np.ndarray:
        rng = np.random.default_rng([self.seed, index])
        video = self._video(self.files[rng.integers(len(self.files))])
        if len(video) < self.frames:  # too short: loop it
            video = np.concatenate([video] * (-(-self.frames // len(video))))
        start = int(rng.integers(len(video) - self.frames + 1))
        side = self.size * scale
        return fit_to_size(video[start:start + self.frames], side, side)

    def batch(self, start: int, size: int, scale: int = 1) -> np.ndarray:
        return np.stack([self.clip(start + i, scale) for i in range(size)])
