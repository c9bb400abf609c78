"""The pure steps of assembling a clip, shared by the served pipeline (server/pipeline.py) and the
peers' lockstep decode (cli/bench/peers/lockstep.py), so the two cannot drift: a request's mask
arguments, a window's given mask and pixels, the decoder's output as frames, a window's frames
put into the clip, the super-resolution cascade and its chunks, and the given pixels restored at
the output size. Arrays in, arrays out: no engine, no queue."""
from __future__ import annotations

import numpy as np

from server import tasks as T
from server.conditioning import Window, clip_condition
from server.manifest import Manifest, SuperResolutionStage
from server.request import VideoRequest
from server.video import fit_to_size, frames_to_float


def mask_args(req: VideoRequest) -> dict:
    """What the task functions take of a request's mask and leading frames."""
    mask = req.mask
    return {"preset": mask.preset if mask else None, "box": mask.box if mask else None,
            "condition_frames": req.condition_frames}


def sr_name(stage: SuperResolutionStage) -> str:
    """The engine name of a super-resolution stage: sr_<W>x<H> of its output."""
    return f"sr_{stage.out_size[1]}x{stage.out_size[0]}"


def sr_chain(manifest: Manifest, size: tuple[int, int]) -> list[SuperResolutionStage]:
    """The super-resolution stages that lead from the base size to `size` (H, W); TaskError for
    a size the model does not make."""
    if tuple(size) == tuple(manifest.base_size):
        return []
    chain = []
    for stage in manifest.super_resolution:
        chain.append(stage)
        if tuple(stage.out_size) == tuple(size):
            return chain
    raise T.TaskError(f"size {size[1]}x{size[0]} is not one of this model's sizes {manifest.sizes}")


def window_inputs(given: np.ndarray, out: np.ndarray, win: Window, window_frames: int,
                  overlap_given: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """A window's given mask (window_frames, H, W) and pixels (window_frames, H, W, 3) from the
    clip's given mask and what is made so far; its overlap frames (what the last window made) are
    given when `overlap_given` (extension; an edit's window is edited on its own)."""
    wg = np.zeros((window_frames, *given.shape[1:]), dtype=bool)
    wv = np.zeros((window_frames, *given.shape[1:], 3), dtype=np.float32)
    wg[:win.length] = given[win.start:win.start + win.length]
    wv[:win.length] = out[win.start:win.start + win.length]
    if overlap_given:
        wg[:win.overlap] = True
    return wg, wv


def decoder_frames(video: np.ndarray) -> np.ndarray:
    """One row of the decoder's output, (3, T, H, W) -> float (T, H, W, 3) in [0, 1]."""
    return np.clip(video.transpose(1, 2, 3, 0), 0.0, 1.0)


def place_window(out: np.ndarray, video: np.ndarray, win: Window) -> None:
    """The window's new frames (past its overlap) into the clip `out`, in place."""
    out[win.start + win.overlap:win.start + win.length] = video[win.overlap:win.length]


def sr_chunks(video: np.ndarray, window: int) -> list[np.ndarray]:
    """A clip (T, h, w, 3) as a stage's inputs: float32 (3, window, h, w) chunks of `window`
    frames; the stage takes whole windows, so the last chunk holds its last frame."""
    chunks = []
    for start in range(0, len(video), window):
        chunk = video[start:start + window]
        if len(chunk) < window:
            chunk = np.concatenate([chunk, np.repeat(chunk[-1:], window - len(chunk), axis=0)])
        chunks.append(chunk.transpose(3, 0, 1, 2).astype(np.float32))
    return chunks


def sr_join(rows: list[np.ndarray], frames: int) -> np.ndarray:
    """The stage's outputs for one clip's chunks, each (3, window, H, W), -> float (frames, H, W, 3) in [0, 1]."""
    return np.clip(np.concatenate([r.transpose(1, 2, 3, 0) for r in rows])[:frames], 0.0, 1.0)


def restore_given(req: VideoRequest, frames: np.ndarray | None, given: np.ndarray, out: np.ndarray,
                  super_resolved: bool) -> np.ndarray:
    """After super-resolution, the caller's given pixels once more, at the output size (`given`:
    the clip's given mask at the base size; nothing to do where it is empty). The mask at the
    output size, not the base mask upsampled: boxes and dynamic masks round differently at each
    size, and the upsampled one would blank (hi is 0 there) pixels that are not given at this
    size and miss some that are."""
    if frames is None or not given.any() or not super_resolved:
        return out
    out_h, out_w = req.size.hw
    hi_given, hi = clip_condition(req.task, req.num_frames, out_h, out_w,
                                  frames_to_float(fit_to_size(frames, out_h, out_w)), **mask_args(req))
    return np.where(hi_given[..., None], hi, out)
