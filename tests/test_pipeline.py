"""The generation pipeline on the exported demo model (ONNX Runtime, CPU): every task and mask
preset, both samplers, the super-resolution cascade, autoregressive extension, seeds, batching
across concurrent requests, cancellation, progress and the errors a caller can cause.

Steps are kept to 2..4 and sizes to 32x32 where size is not the point: the assertions are about
shapes, given pixels and determinism, not quality.
"""
from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from conftest import video_request

from server import tasks as T
from server.conditioning import clip_condition
from server.jobs.base import InputError, Job, JobCanceled
from server.pipeline import Pipeline
from server.request import Mask, Size, VideoRequest
from server.samplers import SamplerOptions
from server.runtime import load_runtime
from server.settings import Settings
from server.video import decode_video, fit_to_size, frames_to_float

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parent.parent / "model_repository" / "moving-digits"


@pytest.fixture(scope="module")
def runtime():
    if not (REPO / "manifest.json").is_file():
        pytest.skip(f"no demo model at {REPO}: run `kinetoscope export onnx` (or `make model`) first")
    rt = load_runtime(Settings(model_repository=REPO, max_batch_size=8))
    yield rt
    rt.close()


@pytest.fixture(scope="module")
def pipeline(runtime) -> Pipeline:
    return runtime.pipelines[runtime.catalogue.default_model]


def input_clip(frames: int, height: int, width: int, seed: int = 0) -> np.ndarray:
    """A caller's video: a dark noisy background with a bright square moving right."""
    rng = np.random.default_rng(seed)
    clip = rng.integers(0, 60, (frames, height, width, 3), dtype=np.uint8)
    side = max(2, height // 4)
    for t in range(frames):
        left = (t * width // max(frames, 1)) % (width - side)
        clip[t, height // 3:height // 3 + side, left:left + side] = (250, 200, 120)
    return clip


CLIP = input_clip(16, 32, 32)
WIDE_CLIP = input_clip(12, 48, 64, seed=1)  # another aspect ratio and fewer frames than the output


def S(steps: int = 2, **kw) -> SamplerOptions:
    return SamplerOptions(steps=steps, **kw)


def R(task: str, seed: int, steps: int = 2, *, num_frames: int = 16, size=(32, 32), sampler=None,
      preset=None, box=None, **kw) -> VideoRequest:
    """`size`: (H, W)."""
    mask = Mask.from_dict({"preset": preset, "box": box}) if preset is not None or box is not None else None
    return video_request(task=task, num_frames=num_frames, size=Size(size[1], size[0]), seed=seed,
                         sampler=sampler or S(steps), mask=mask, **kw)


PER_FRAME_BOXES = [[0.05 * (t % 4), 0.1, 0.5 + 0.05 * (t % 4), 0.6] for t in range(16)]

# name -> (request, input video). Mixed tasks, presets, step counts, samplers, sizes and lengths:
# run one by one, then all at once, they must give the same frames.
CASES: dict[str, tuple[VideoRequest, np.ndarray | None]] = {
    "class_conditional": (R("class_conditional", 11, 2, class_label=3), None),
    "class_conditional_frame_prediction": (R("class_conditional_frame_prediction", 12, 3, class_label=7, condition_frames=4), CLIP),
    "frame_prediction": (R("frame_prediction", 13, 4, condition_frames=4), CLIP),
    "frame_interpolation": (R("frame_interpolation", 14, 2), CLIP),
    "outpainting_center": (R("outpainting", 15, 3, preset="center"), CLIP),
    "outpainting_vertical": (R("outpainting", 16, 2, preset="vertical"), CLIP),
    "outpainting_horizontal": (R("outpainting", 17, 4, preset="horizontal"), CLIP),
    "outpainting_dynamic": (R("outpainting", 18, 2, preset="dynamic"), CLIP),
    "outpainting_box": (R("outpainting", 19, 3, box=[0.1, 0.2, 0.7, 0.9]), WIDE_CLIP),
    "inpainting_center": (R("inpainting", 20, 2, preset="center"), CLIP),
    "inpainting_dynamic": (R("inpainting", 21, 3, preset="dynamic"), CLIP),
    "inpainting_box_per_frame": (R("inpainting", 22, 4, box=PER_FRAME_BOXES), WIDE_CLIP),
    "guided": (R("class_conditional", 23, sampler=S(3, guidance_scale=2.0), class_label=5), None),
    "autoregressive": (R("frame_prediction", 24, sampler=SamplerOptions(method="autoregressive"), condition_frames=4), CLIP),
    "autoregressive_guided": (R("class_conditional_frame_prediction", 27, class_label=2, condition_frames=4,
                                sampler=SamplerOptions(method="autoregressive", guidance_scale=3.0)), CLIP),
    "size_64": (R("class_conditional", 25, 2, size=(64, 64), class_label=1), None),
    "extension_48": (R("frame_prediction", 26, 2, num_frames=48, condition_frames=4), CLIP),
}


async def run_alone(pipeline, cases) -> dict[str, tuple[np.ndarray, list[float]]]:
    results = {}
    for name, (req, frames) in cases.items():
        progress: list[float] = []
        results[name] = (await pipeline.generate(req, frames, progress.append), progress)
    return results


@pytest.fixture(scope="module")
def alone(pipeline):
    """Each case on its own: name -> (uint8 frames, progress values)."""
    return asyncio.run(run_alone(pipeline, CASES))


def given_at(req: VideoRequest, frames: np.ndarray, height: int, width: int):
    """The given mask and pixels (uint8) at an output size, from the caller's input."""
    resized = fit_to_size(frames, height, width)
    given, _ = clip_condition(req.task, req.num_frames, height, width, frames_to_float(resized),
                              preset=req.mask.preset if req.mask else None, box=req.mask.box if req.mask else None,
                              condition_frames=req.condition_frames)
    index = np.minimum(np.arange(req.num_frames), len(resized) - 1)
    held = resized[index]  # spatial tasks: input frame t, the last one held
    if req.task in T.FRAME_TASKS:
        held = np.zeros_like(held)
        k = req.condition_frames or 0
        held[:k] = resized[:k]
        if req.task == "frame_interpolation":
            held[0], held[-1] = resized[0], resized[-1]
    return given, held


# -- shapes and given pixels, one request at a time -------------------------------------------

@pytest.mark.parametrize("name", list(CASES))
def test_output_shape_and_dtype(alone, name):
    req, _ = CASES[name]
    out, _ = alone[name]
    assert out.dtype == np.uint8
    assert out.shape == (req.num_frames, *req.size.hw, 3)
    assert out.max() > 0, "the video is blank"


@pytest.mark.parametrize("name", [n for n, (_, frames) in CASES.items() if frames is not None])
def test_given_pixels_are_kept_exactly(alone, name):
    req, frames = CASES[name]
    out, _ = alone[name]
    given, held = given_at(req, frames, *req.size.hw)
    assert given.any()
    np.testing.assert_array_equal(out[given], held[given])


def test_frame_prediction_starts_with_the_input_frames(alone):
    for name in ("frame_prediction", "class_conditional_frame_prediction", "autoregressive", "extension_48"):
        out, _ = alone[name]
        np.testing.assert_array_equal(out[:4], CLIP[:4], err_msg=name)


def test_frame_interpolation_keeps_first_and_last_frame(alone):
    out, _ = alone["frame_interpolation"]
    np.testing.assert_array_equal(out[0], CLIP[0])
    np.testing.assert_array_equal(out[-1], CLIP[-1])


def test_outpainting_center_keeps_the_central_box(alone):
    out, _ = alone["outpainting_center"]
    np.testing.assert_array_equal(out[:, 8:24, 8:24], CLIP[:, 8:24, 8:24])


def test_inpainting_keeps_everything_outside_the_hole(alone):
    out, _ = alone["inpainting_center"]
    keep = np.ones((32, 32), dtype=bool)
    keep[8:24, 8:24] = False
    np.testing.assert_array_equal(out[:, keep], CLIP[:, keep])


def test_extension_makes_every_requested_frame(alone):
    out, _ = alone["extension_48"]
    assert out.shape == (48, 32, 32, 3)
    # Frames past the first window are made (not left empty or copies of one frame).
    assert out[16:].max() > 0
    assert not all(np.array_equal(out[t], out[16]) for t in range(17, 48))


@pytest.mark.parametrize("name", list(CASES))
def test_progress_rises_to_one(alone, name):
    _, progress = alone[name]
    assert progress, "no progress was reported"
    assert all(0.0 < p <= 1.0 for p in progress)
    assert all(a <= b for a, b in zip(progress, progress[1:])), "progress went backwards"
    assert progress[-1] == 1.0


# -- seeds and batching ------------------------------------------------------------------------

def test_same_seed_same_frames_other_seed_other_frames(pipeline, alone):
    req, _ = CASES["class_conditional"]

    async def run():
        return (await pipeline.generate(req, None), await pipeline.generate(replace(req, seed=req.seed + 1), None))

    again, other = asyncio.run(run())
    np.testing.assert_array_equal(again, alone["class_conditional"][0])
    assert not np.array_equal(other, again)


def test_guidance_steers_the_autoregressive_sampler(pipeline, alone):
    """guidance_scale reaches the autoregressive sampler (it was once accepted and ignored)."""
    req, frames = CASES["autoregressive_guided"]
    plain = asyncio.run(pipeline.generate(replace(req, sampler=replace(req.sampler, guidance_scale=0.0)), frames))
    assert not np.array_equal(plain, alone["autoregressive_guided"][0])


def test_batching_never_changes_a_request_result(pipeline, alone, monkeypatch):
    """All cases at once (max_batch_size 8): each gets exactly the frames it got alone."""
    batches: list[tuple[str, int]] = []

    async def run():
        names = list(CASES)
        outs = await asyncio.gather(*(pipeline.generate(*CASES[n]) for n in names))
        return dict(zip(names, outs))

    for q in (pipeline.prior, pipeline.encoder, pipeline.decoder):
        monkeypatch.setattr(q, "on_batch", lambda name, rows: batches.append((name, rows)))
    together = asyncio.run(run())
    prior_batches = [rows for name, rows in batches if name == "prior"]
    assert max(prior_batches) > 1, "the concurrent requests never shared a batch"
    assert max(prior_batches) <= 8
    for name, (out, _) in alone.items():
        np.testing.assert_array_equal(together[name], out, err_msg=f"{name}: batched result differs from alone")


# -- super-resolution cascade -------------------------------------------------------------------

BIG = input_clip(16, 128, 128, seed=2)
BRIGHT = np.empty((16, 128, 128, 3), dtype=np.uint8)
BRIGHT[:] = (210, 190, 170)
BRIGHT[:, 40:80, 50:70] = (90, 60, 30)
SR_CASES = {
    "frame_prediction_128": (R("frame_prediction", 32, 2, size=(128, 128), condition_frames=4), BIG),
    "outpainting_box_128": (R("outpainting", 33, 2, size=(128, 128), box=[0.1, 0.1, 0.9, 0.9]), BRIGHT),
    "outpainting_dynamic_128": (R("outpainting", 34, 2, size=(128, 128), preset="dynamic"), BIG),
    "inpainting_dynamic_64": (R("inpainting", 35, 2, size=(64, 64), preset="dynamic"), BIG),
    "frame_interpolation_48x64": (R("frame_interpolation", 36, 2, num_frames=48, size=(64, 64)), BIG),
}


@pytest.fixture(scope="module")
def super_resolved(pipeline):
    async def run():
        names = list(SR_CASES)
        outs = await asyncio.gather(*(pipeline.generate(*SR_CASES[n]) for n in names))
        return dict(zip(names, outs))

    return asyncio.run(run())


@pytest.mark.parametrize("name", list(SR_CASES))
def test_super_resolution_sizes_keep_the_given_pixels(super_resolved, name):
    req, frames = SR_CASES[name]
    out = super_resolved[name]
    assert out.dtype == np.uint8 and out.shape == (req.num_frames, *req.size.hw, 3)
    assert out.max() > 0
    if frames is not None:
        # At the output size the given region is the input resized to that size, exactly; boxes
        # and moving masks round differently at each size, so this is the output-size mask.
        given, held = given_at(req, frames, *req.size.hw)
        np.testing.assert_array_equal(out[given], held[given])


def test_super_resolution_adds_no_black_seams_around_the_given_region(super_resolved):
    """A box rounds to other pixels at 32x32 than at 128x128: pixels given at the base size but
    not at the output size come from the super-resolved base video, which is as bright there as
    the input; none may be blanked."""
    req, frames = SR_CASES["outpainting_box_128"]
    out = super_resolved["outpainting_box_128"]
    given, _ = given_at(req, frames, 128, 128)
    base_given, _ = given_at(req, frames, 32, 32)
    base_only = base_given.repeat(4, axis=1).repeat(4, axis=2) & ~given
    assert base_only.any()  # the box [0.1, 0.9] starts at column 3 (x4 = 12) at 32, 13 at 128
    assert out[base_only].mean() > 100, "given-at-base pixels were blanked at the output size"


# -- samplers, cancellation, errors -------------------------------------------------------------

def test_cancellation_stops_before_the_end(pipeline):
    req = R("class_conditional", 1, 12, num_frames=32, class_label=2)
    calls, progress = [], []

    def should_stop():
        calls.append(1)
        return len(calls) > 3

    with pytest.raises(JobCanceled):
        asyncio.run(pipeline.generate(req, None, progress.append, should_stop))
    assert len(calls) == 4
    assert progress and max(progress) < 0.5

    with pytest.raises(JobCanceled):
        asyncio.run(pipeline.generate(replace(req, sampler=SamplerOptions(method="autoregressive")), None,
                                      should_stop=lambda: True))


def test_a_model_without_an_autoregressive_prior_says_so(pipeline):
    manifest = pipeline.manifest.model_copy(update={"ar_prior": None, "ar": None, "samplers": ["maskgit"]})

    class Unused:
        def run(self, feeds):
            raise AssertionError("no network should run")

    engines = {name: Unused() for name in manifest.networks()}
    no_ar = Pipeline(manifest, engines)
    assert no_ar.ar is None
    with pytest.raises(T.TaskError, match="no autoregressive prior"):
        asyncio.run(no_ar.generate(R("class_conditional", 1, sampler=SamplerOptions(method="autoregressive")), None))


@pytest.mark.parametrize("req,frames,message", [
    (R("class_conditional", 1, size=(48, 48)), None, "size 48x48 is not one of this model's sizes"),
    (R("class_conditional", 1, size=(64, 32)), None, "is not one of this model's sizes"),
    (R("frame_prediction", 1, condition_frames=16), CLIP, "condition_frames < 16"),
    (R("frame_prediction", 1, condition_frames=0), CLIP, "condition_frames"),
    (R("frame_prediction", 1, condition_frames=8), CLIP[:5], "condition_frames is 8 but the input has only 5"),
    (R("frame_prediction", 1, condition_frames=4), None, "needs an input video"),
    (R("frame_interpolation", 1), CLIP[:1], "at least 2 frames"),
    (R("inpainting", 1, box=PER_FRAME_BOXES[:5]), CLIP, "one box per frame"),
    (R("outpainting", 1, box=[0.5, 0.5, 1.2, 0.9]), CLIP, r"\[0, 1\]"),
    (R("outpainting", 1, box=[0.6, 0.5, 0.4, 0.9]), CLIP, "x0 < x1"),
    (R("outpainting", 1, preset="zoom"), CLIP, "unknown mask preset 'zoom'"),
    (R("inpainting", 1), CLIP, "exactly one of a mask preset or a box"),
    (R("colorize", 1), CLIP, "unknown task 'colorize'"),
    (R("class_conditional", 1, num_frames=0), None, "num_frames must be >= 1|at least one frame"),
], ids=lambda v: v if isinstance(v, str) else None)
def test_bad_requests_get_a_clear_error(pipeline, req, frames, message):
    with pytest.raises(ValueError, match=message):  # TaskError is a ValueError
        asyncio.run(pipeline.generate(req, frames))


def test_runtime_generate_makes_an_mp4_and_reports_bad_requests(runtime):
    from server.video import encode_mp4

    request = video_request(task="outpainting", size=Size(64, 64), seed=5, mask=Mask(preset="vertical"),
                            sampler=SamplerOptions(method="maskgit", steps=2))
    job = Job(id="t", model=runtime.catalogue.default_model, request=request)
    result = asyncio.run(runtime.generate(job, encode_mp4(CLIP, 8), lambda f: None, lambda: False))
    mp4, png, frames_zip, tokens = result.video, result.thumbnail, result.frames, result.tokens
    doc = __import__("json").loads(tokens)
    t, h, w = doc["token_grid"]
    assert len(doc["windows"]) == 1 and len(doc["windows"][0]) == t * h * w
    video = decode_video(mp4, max_bytes=1 << 24, max_frames=256, max_pixels=1 << 20)
    assert video.frames.shape == (16, 64, 64, 3)
    assert png.startswith(b"\x89PNG")
    from server.output import decode_frames

    lossless = decode_frames(frames_zip)  # the frames the MP4 approximates, exactly
    assert lossless.shape == (16, 64, 64, 3)
    assert np.mean(np.abs(lossless.astype(float) - video.frames)) < 10
    bad = replace(job, request=replace(request, mask=Mask(preset="zoom")))
    with pytest.raises(InputError) as info:
        asyncio.run(runtime.generate(bad, encode_mp4(CLIP, 8), lambda f: None, lambda: False))
    assert info.value.code == "invalid_request" and "zoom" in info.value.message
    with pytest.raises(InputError) as info:
        asyncio.run(runtime.generate(job, b"not a video", lambda f: None, lambda: False))
    assert info.value.code != "invalid_request"
