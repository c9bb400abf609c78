"""One PNG strip per task and preset of tasks.md, made by the shipped demo model through the
served pipeline (ONNX Runtime, `server.pipeline.Pipeline`) with fixed seeds:

    kinetoscope gallery --out server/static/gallery

Each strip has two rows: on top what the request gives (the input's given pixels, grey where
nothing is given), below the output. Frames are upscaled by nearest neighbour so the 32x32
clips are readable. `index.md` lists the strips with the request that made each.
"""
from __future__ import annotations

import asyncio
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from models.data.moving_digits import MovingDigits
from models.evaluation.runs import bounded, describe, request
from server import tasks as T
from server.conditioning import clip_condition
from server.manifest import Manifest
from server.pipeline import Pipeline
from server.request import VideoRequest
from server.video import fit_to_size, frames_to_float, frames_to_uint8

GALLERY_SEED = 11  # MovingDigits("test", GALLERY_SEED): the input clips (held-out split)
REQUEST_SEED = 1  # every request's sampler seed
NOT_GIVEN = np.array([72, 72, 72], np.uint8)  # grey: pixels the request does not give
GAP = 2  # white pixels between frames and between the two rows (in the upscaled strip)
GAP_COLOUR = np.array([255, 255, 255], np.uint8)


@dataclass(frozen=True)
class Entry:
    name: str  # file stem
    title: str
    request: VideoRequest
    clip_index: int | None  # test clip used as input; None for class-conditional requests
    frames_shown: int = 16  # evenly spaced frames in the strip
    zoom: int = 3  # nearest-neighbour upscaling of each frame


def entries(manifest: Manifest) -> list[Entry]:
    """Every request uses what a request without sampler fields gets: the model's defaults for its
    task, named in the caption."""
    data = MovingDigits("test", GALLERY_SEED)
    label = data.scene(1).label  # the class of clip 1, for class-conditional frame prediction
    r = REQUEST_SEED

    def req(task: str, **kw) -> VideoRequest:
        return request(manifest, task, r, sampler=manifest.sampler_for(task), **kw)

    def note(task: str) -> str:
        return f"; sampler: {describe(manifest.sampler_for(task))}"

    out = [
        Entry("class_conditional", f"class-conditional generation (CG), class 3{note('class_conditional')}",
              req("class_conditional", class_label=3), None),
        Entry("class_conditional_frame_prediction",
              f"class-conditional frame prediction (CFP), class {label}, 4 frames given"
              f"{note('class_conditional_frame_prediction')}",
              req("class_conditional_frame_prediction", class_label=label, condition_frames=4), 1),
        Entry("frame_prediction", f"frame prediction (FP), 4 frames given{note('frame_prediction')}",
              req("frame_prediction", condition_frames=4), 2),
        Entry("frame_interpolation", f"frame interpolation (FI), first and last frame given{note('frame_interpolation')}",
              req("frame_interpolation"), 3),
    ]
    for i, preset in enumerate(T.PRESETS):
        out.append(Entry(f"outpainting_{preset}", f"outpainting, {preset} (OP{preset[0].upper()}){note('outpainting')}",
                         req("outpainting", preset=preset), 4 + i))
    out += [
        Entry("inpainting_center", f"inpainting, center (IPC){note('inpainting')}", req("inpainting", preset="center"), 8),
        Entry("inpainting_dynamic", f"inpainting, dynamic (IPD){note('inpainting')}", req("inpainting", preset="dynamic"), 9),
        Entry("inpainting_box", f"inpainting, caller's box [0.1, 0.5, 0.6, 0.9]{note('inpainting')}",
              req("inpainting", box=[0.1, 0.5, 0.6, 0.9]), 10),
        Entry("outpainting_box", f"outpainting, caller's box [0.2, 0.1, 0.8, 0.6]{note('outpainting')}",
              req("outpainting", box=[0.2, 0.1, 0.8, 0.6]), 11),
        Entry("extension_48", "48 frames by autoregressive extension (frame prediction, 4 frames given); 16 of the 48 "
              f"frames, evenly spaced{note('frame_prediction')}",
              req("frame_prediction", num_frames=48, condition_frames=4), 12, frames_shown=16),
        Entry("class_conditional_128", "class-conditional 128x128 (class 7): prior at 32x32, then 32->64->128 "
              f"super-resolution{note('class_conditional')}",
              req("class_conditional", class_label=7, size=(128, 128)), None, frames_shown=8, zoom=1),
    ]
    return out


def given_row(entry: Entry, clip: np.ndarray | None) -> np.ndarray:
    """What the request gives at the output size: uint8 (T, H, W, 3), grey where not given."""
    req = entry.request
    h, w = req.size.hw
    video = None if clip is None else frames_to_float(fit_to_size(clip, h, w))
    mask = req.mask
    given, pixels = clip_condition(req.task, req.num_frames, h, w, video, preset=mask.preset if mask else None,
                                   box=mask.box if mask else None, condition_frames=req.condition_frames)
    return np.where(given[..., None], frames_to_uint8(pixels), NOT_GIVEN)


def strip(top: np.ndarray, bottom: np.ndarray, frames_shown: int, zoom: int) -> Image.Image:
    """Two rows of evenly spaced frames, each frame upscaled `zoom` times, white gaps between."""
    index = np.unique(np.round(np.linspace(0, len(bottom) - 1, min(frames_shown, len(bottom)))).astype(int))
    h, w = bottom.shape[1] * zoom, bottom.shape[2] * zoom
    n = len(index)
    canvas = np.empty((2 * h + 3 * GAP, n * w + (n + 1) * GAP, 3), np.uint8)
    canvas[:] = GAP_COLOUR
    for row, video in enumerate((top, bottom)):
        y = GAP + row * (h + GAP)
        for col, t in enumerate(index):
            x = GAP + col * (w + GAP)
            canvas[y:y + h, x:x + w] = np.kron(video[t], np.ones((zoom, zoom, 1), np.uint8))
    return Image.fromarray(canvas)


def save_small(image: Image.Image, path: Path, limit: int = 100_000) -> int:
    """Writes a PNG; falls back to a 256-colour palette when the full-colour file is over `limit`."""
    buf = io.BytesIO()
    image.save(buf, format="PNG", optimize=True)
    if buf.tell() > limit:
        buf = io.BytesIO()
        image.quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(buf, format="PNG", optimize=True)
    path.write_bytes(buf.getvalue())
    return buf.tell()


async def make(pipe: Pipeline, items: list[Entry]) -> list[np.ndarray]:
    data = MovingDigits("test", GALLERY_SEED)
    inputs = [None if e.clip_index is None else data.batch(e.clip_index, 1)[0][0] for e in items]
    return await bounded([lambda e=e, x=x: pipe.generate(e.request, x) for e, x in zip(items, inputs)])


def main(out: Path, model_repository: Path = Path("model_repository/moving-digits")) -> list[Path]:
    from server.runtime import load_runtime
    from server.settings import Settings

    runtime = load_runtime(Settings(model_repository=Path(model_repository), backend="onnxruntime"))
    try:
        pipe = runtime.pipelines[runtime.catalogue.default_model]
        items = entries(pipe.manifest)
        videos = asyncio.run(make(pipe, items))
    finally:
        runtime.close()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    data = MovingDigits("test", GALLERY_SEED)
    lines = ["# Gallery", "",
             f"Made by `kinetoscope gallery --out {out}` from `{model_repository}` through the served "
             "pipeline (ONNX Runtime, CPU), with fixed seeds: input clips are `MovingDigits(\"test\", "
             f"seed={GALLERY_SEED})` (the held-out split), every request has seed {REQUEST_SEED} and the "
             "model's recommended sampler for its task (named in each caption).", "",
             "Each strip: top row = what the request gives (grey = not given), bottom row = the output. "
             "32x32 frames are shown 3x, nearest neighbour (the 128x128 strip at 1x); 16-frame clips show every frame.", "",
             "| file | task | request | size |", "| --- | --- | --- | --- |"]
    paths = []
    for entry, video in zip(items, videos):
        clip = None if entry.clip_index is None else data.batch(entry.clip_index, 1)[0][0]
        image = strip(given_row(entry, clip), video, entry.frames_shown, entry.zoom)
        path = out / f"{entry.name}.png"
        size = save_small(image, path)
        paths.append(path)
        req = entry.request
        params = [f"task={req.task}", f"num_frames={req.num_frames}", f"size={req.size}"]
        mask = req.mask.to_dict() if req.mask else {}
        params += [f"{k}={v}" for k, v in (("class_label", req.class_label), ("preset", mask.get("preset")),
                                            ("box", mask.get("box")), ("condition_frames", req.condition_frames))
                   if v is not None]
        source = "" if entry.clip_index is None else f", input test clip {entry.clip_index}"
        lines.append(f"| [{path.name}]({path.name}) | {entry.title} | {', '.join(params)}{source} | "
                     f"{size / 1000:.0f} KB |")
        print(f"{path} ({size / 1000:.0f} KB)")
    (out / "index.md").write_text("\n".join(lines) + "\n")
    return paths

