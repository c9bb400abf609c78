"""Moving Digits, exactly as ../shared/spec/moving-digits.md defines it.

One scikit-learn 8x8 handwritten digit bounces around a black 32x32 canvas for 16 frames at
8 fps. The same scene renders at 64x64 and 128x128 (scale r = 2, 4) as super-resolution
targets. Clip `i` of a data set with seed `s` is a pure function of (s, i, split), so every
reader of the spec renders the same distribution and our evaluation is reproducible.
"""
from __future__ import annotations

import colorsys
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

FRAMES = 16
FPS = 8
BASE = 32  # base resolution
GLYPH = 16  # glyph side at base resolution (8x8 source, 2x2 blocks)
FREE = BASE - GLYPH  # L: the free range of the top-left corner
SPLITS = ("train", "test")


@lru_cache(maxsize=1)
def _digits() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits  # ships inside scikit-learn's wheel: no download

    d = load_digits()
    return (d.images / 16.0).astype(np.float32), d.target.astype(np.int64)


def glyph_indices(split: str) -> np.ndarray:
    """Image indices of a split: i % 5 == 0 is the held-out test split (360 images)."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}; got {split!r}")
    n = len(_digits()[1])
    idx = np.arange(n)
    return idx[idx % 5 == 0] if split == "test" else idx[idx % 5 != 0]


@dataclass(frozen=True)
class Scene:
    glyph_index: int
    label: int
    hue: float
    x0: float
    y0: float
    vx: float
    vy: float


def sample_scene(rng: np.random.Generator, split: str = "train", label: int | None = None) -> Scene:
    """Draws one clip's scene; `label` restricts the glyph to one digit class."""
    images, labels = _digits()
    pool = glyph_indices(split)
    if label is not None:
        if not 0 <= label <= 9:
            raise ValueError(f"label must be 0..9; got {label}")
        pool = pool[labels[pool] == label]
    i = int(rng.choice(pool))
    hue = float(rng.uniform(0.0, 1.0))
    x0, y0 = (float(v) for v in rng.uniform(0.0, FREE, size=2))
    vx, vy = (float(v) for v in rng.uniform(-2.0, 2.0, size=2))
    return Scene(i, int(labels[i]), hue, x0, y0, vx, vy)


def trajectory(scene: Scene, frames: int = FRAMES) -> np.ndarray:
    """Top-left corners (frames, 2) as (x, y) at base resolution, with elastic bounces."""
    x, y, vx, vy = scene.x0, scene.y0, scene.vx, scene.vy
    out = np.zeros((frames, 2), dtype=np.float64)
    for t in range(frames):
        out[t] = (x, y)
        x += vx
        if x < 0:
            x, vx = -x, -vx
        if x > FREE:
            x, vx = 2 * FREE - x, -vx
        y += vy
        if y < 0:
            y, vy = -y, -vy
        if y > FREE:
            y, vy = 2 * FREE - y, -vy
    return out


def render_clip(scene: Scene, scale: int = 1, frames: int = FRAMES) -> np.ndarray:
    """The clip as uint8 (T, 32r, 32r, 3)."""
    images, _ = _digits()
    side = BASE * scale
    block = 2 * scale  # each source pixel becomes a 2r x 2r block
    glyph = np.kron(images[scene.glyph_index], np.ones((block, block), np.float64))  # (16r, 16r)
    # float64, as the spec's round(255 * intensity * colour_channel) computes it in Python: in
    # float32 a product just above k + 0.5 can round to k + 0.5 and then down to k.
    colour = np.array(colorsys.hsv_to_rgb(scene.hue, 1.0, 1.0), dtype=np.float64)
    sprite = np.round(255.0 * glyph[..., None] * colour).astype(np.uint8)  # (16r, 16r, 3)
    size = GLYPH * scale
    clip = np.zeros((frames, side, side, 3), dtype=np.uint8)
    for t, (x, y) in enumerate(trajectory(scene, frames)):
        c, r = int(round(x * scale)), int(round(y * scale))
        clip[t, r:r + size, c:c + size] = sprite
    return clip


class MovingDigits:
    """A deterministic, indexable Moving Digits data set.

    `ds[i]` returns (clips, label) where clips maps scale -> uint8 (T, 32r, 32r, 3). Clip i is
    drawn from np.random.default_rng([seed, i, split_id]): the same seed gives the same clips.
    """

    def __init__(self, split: str = "train", seed: int = 0, length: int = 1 << 30,
                 scales: tuple[int, ...] = (1,)):
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}; got {split!r}")
        if any(s not in (1, 2, 4) for s in scales):
            raise ValueError(f"scales must be among 1, 2, 4; got {scales}")
        self.split, self.seed, self.length, self.scales = split, seed, length, scales

    def __len__(self) -> int:
        return self.length

    def scene(self, index: int, label: int | None = None) -> Scene:
        rng = np.random.default_rng([self.seed, index, SPLITS.index(self.split)])
        return sample_scene(rng, self.split, label)

    def __getitem__(self, index: int) -> tuple[dict[int, np.ndarray], int]:
        if not 0 <= index < self.length:
            raise IndexError(index)
        scene = self.scene(index)
        return {s: render_clip(scene, s) for s in self.scales}, scene.label

    def scenes(self, start: int, size: int) -> list[Scene]:
        """The scenes of clips start..start+size-1 (their labels, digits and paths: everything
        but the pixels, which any renderer makes from them: `render_clip`, or models/data/render.py's
        `render_batch` on a torch device)."""
        return [self.scene(start + i) for i in range(size)]

    def batch(self, start: int, size: int, scale: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """Clips start..start+size-1 at one scale: uint8 (B, T, H, W, 3) and labels (B,)."""
        scenes = self.scenes(start, size)
        return (np.stack([render_clip(s, scale) for s in scenes]),
                np.array([s.label for s in scenes], dtype=np.int64))
