"""server/conditioning.py: which frames each decoding window covers, which pixels a request gives,
and how a window's condition video is padded (tasks.md's rules). Pure numpy, no model."""
from __future__ import annotations

import numpy as np
import pytest

from server import tasks as T
from server.conditioning import Window, clip_condition, plan_windows, window_condition


def random_video(frames: int, height: int = 16, width: int = 16, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((frames, height, width, 3), dtype=np.float32)


# -- plan_windows -----------------------------------------------------------------------------

@pytest.mark.parametrize("window", [4, 16])
@pytest.mark.parametrize("condition_frames", [1, 3])
@pytest.mark.parametrize("num_frames", [1, 3, 4, 5, 15, 16, 17, 28, 31, 32, 33, 48, 100, 128])
def test_windows_cover_the_clip_exactly(num_frames, window, condition_frames):
    windows = plan_windows(num_frames, window, condition_frames)
    assert windows[0].start == 0 and windows[0].overlap == 0
    # The last window ends on the clip's last frame; no window runs past it.
    assert windows[-1].start + windows[-1].length == num_frames
    assert all(w.start + w.length <= num_frames for w in windows)
    covered = np.zeros(num_frames, dtype=int)
    made = np.zeros(num_frames, dtype=int)  # frames each window generates (after its overlap)
    for w in windows:
        covered[w.start:w.start + w.length] += 1
        made[w.start + w.overlap:w.start + w.length] += 1
    assert covered.min() >= 1
    assert (made == 1).all(), "every frame is made by exactly one window"
    for prev, w in zip(windows, windows[1:]):
        assert w.start > prev.start
        assert w.length == window  # after the first, windows are whole
        # The overlap is exactly the frames already made, and at least condition_frames of them.
        assert w.overlap == prev.start + prev.length - w.start
        assert condition_frames <= w.overlap < window
    if num_frames <= window:
        assert windows == [Window(0, 0, num_frames)]
    else:
        assert windows[0] == Window(0, 0, window)


def test_windows_of_the_demo_model():
    # 48 frames, window 16, 4 condition frames: 16 + 12 + 12 + 8 new frames.
    assert plan_windows(48, 16, 4) == [Window(0, 0, 16), Window(12, 4, 16), Window(24, 4, 16), Window(32, 8, 16)]
    assert plan_windows(17, 16, 4) == [Window(0, 0, 16), Window(1, 15, 16)]


@pytest.mark.parametrize("args", [(0, 16, 4), (-3, 16, 4), (20, 16, 0), (20, 16, 16), (20, 16, 17)])
def test_plan_windows_rejects_bad_arguments(args):
    with pytest.raises(T.TaskError):
        plan_windows(*args)


# -- clip_condition ---------------------------------------------------------------------------

def test_class_conditional_gives_nothing_and_needs_no_input():
    given, pixels = clip_condition("class_conditional", 16, 16, 16, None)
    assert given.shape == (16, 16, 16) and given.dtype == bool and not given.any()
    assert pixels.shape == (16, 16, 16, 3) and pixels.dtype == np.float32 and not pixels.any()
    # An input sent anyway is ignored.
    _, pixels = clip_condition("class_conditional", 16, 16, 16, random_video(16))
    assert not pixels.any()


@pytest.mark.parametrize("task", ["frame_prediction", "class_conditional_frame_prediction"])
@pytest.mark.parametrize("k", [1, 4, 15])
def test_frame_prediction_gives_the_first_k_input_frames(task, k):
    video = random_video(20)  # longer than k: the rest of the input is not used
    given, pixels = clip_condition(task, 16, 16, 16, video, condition_frames=k)
    assert given[:k].all() and not given[k:].any()
    np.testing.assert_array_equal(pixels[:k], video[:k])
    assert not pixels[k:].any()
    assert pixels.dtype == np.float32


def test_frame_interpolation_gives_the_input_first_and_last_frame():
    video = random_video(7)  # its last frame is frame 6, whatever the clip's length
    given, pixels = clip_condition("frame_interpolation", 16, 16, 16, video)
    assert given[0].all() and given[-1].all() and not given[1:-1].any()
    np.testing.assert_array_equal(pixels[0], video[0])
    np.testing.assert_array_equal(pixels[-1], video[-1])
    assert not pixels[1:-1].any()


@pytest.mark.parametrize("task,preset", [("outpainting", "center"), ("outpainting", "vertical"),
                                         ("outpainting", "horizontal"), ("outpainting", "dynamic"),
                                         ("inpainting", "center"), ("inpainting", "dynamic")])
def test_spatial_tasks_give_the_mask_region_of_the_same_frame(task, preset):
    video = random_video(16, 32, 32)
    given, pixels = clip_condition(task, 16, 32, 32, video, preset=preset)
    np.testing.assert_array_equal(given, T.pixel_mask(task, 16, 32, 32, preset=preset))
    np.testing.assert_array_equal(pixels, np.where(given[..., None], video, 0.0))


def test_outpainting_center_gives_the_central_box():
    video = random_video(4, 32, 32)
    given, pixels = clip_condition("outpainting", 4, 32, 32, video, preset="center")
    box = np.zeros((32, 32), dtype=bool)
    box[8:24, 8:24] = True  # rows and columns H/4..3H/4
    assert (given == box).all()
    np.testing.assert_array_equal(pixels[:, 8:24, 8:24], video[:, 8:24, 8:24])
    assert not pixels[:, ~box].any()


def test_inpainting_box_gives_everything_outside_the_box():
    video = random_video(4, 32, 32)
    given, pixels = clip_condition("inpainting", 4, 32, 32, video, box=[0.25, 0.5, 0.75, 1.0])
    hole = np.zeros((32, 32), dtype=bool)
    hole[16:32, 8:24] = True
    assert (given == ~hole).all()
    np.testing.assert_array_equal(pixels[:, ~hole], video[:, ~hole])
    assert not pixels[:, hole].any()


@pytest.mark.parametrize("task", ["inpainting", "outpainting"])
def test_spatial_tasks_hold_the_last_input_frame_when_the_input_is_shorter(task):
    video = random_video(5, 32, 32)
    given, pixels = clip_condition(task, 16, 32, 32, video, preset="center")
    for t in range(16):
        source = video[min(t, 4)]
        np.testing.assert_array_equal(pixels[t][given[t]], source[given[t]])
    # A single image works as a still input.
    given, pixels = clip_condition(task, 8, 32, 32, video[:1], preset="center")
    np.testing.assert_array_equal(pixels[7][given[7]], video[0][given[7]])


@pytest.mark.parametrize("task,kw", [("frame_prediction", {"condition_frames": 4}),
                                     ("class_conditional_frame_prediction", {"condition_frames": 4}),
                                     ("frame_interpolation", {}),
                                     ("inpainting", {"preset": "center"}), ("outpainting", {"preset": "dynamic"})])
@pytest.mark.parametrize("video", [None, np.zeros((0, 16, 16, 3), np.float32)], ids=["none", "empty"])
def test_conditional_tasks_need_an_input(task, kw, video):
    with pytest.raises(T.TaskError, match="needs an input video"):
        clip_condition(task, 16, 16, 16, video, **kw)


def test_too_few_input_frames_are_rejected():
    with pytest.raises(T.TaskError, match="condition_frames is 6 but the input has only 3 frames"):
        clip_condition("frame_prediction", 16, 16, 16, random_video(3), condition_frames=6)
    with pytest.raises(T.TaskError, match="at least 2 frames"):
        clip_condition("frame_interpolation", 16, 16, 16, random_video(1))


@pytest.mark.parametrize("kw,message", [({"condition_frames": None}, "condition_frames"),
                                        ({"condition_frames": 16}, "condition_frames"),
                                        ({"condition_frames": 0}, "condition_frames")])
def test_frame_prediction_needs_a_valid_k(kw, message):
    with pytest.raises(T.TaskError, match=message):
        clip_condition("frame_prediction", 16, 16, 16, random_video(16), **kw)


def test_bad_masks_are_rejected():
    video = random_video(4)
    with pytest.raises(T.TaskError, match="unknown mask preset"):
        clip_condition("outpainting", 4, 16, 16, video, preset="diagonal")
    with pytest.raises(T.TaskError, match="exactly one"):
        clip_condition("inpainting", 4, 16, 16, video)
    with pytest.raises(T.TaskError, match="one box per frame"):
        clip_condition("inpainting", 4, 16, 16, video, box=[[0, 0, 0.5, 0.5]] * 3)
    with pytest.raises(T.TaskError, match=r"\[0, 1\]"):
        clip_condition("outpainting", 4, 16, 16, video, box=[0, 0, 1.5, 0.5])
    with pytest.raises(T.TaskError, match="unknown task"):
        clip_condition("colorization", 4, 16, 16, video)


# -- window_condition -------------------------------------------------------------------------

def frames_given(frames: int, indices, height: int = 16, width: int = 16) -> np.ndarray:
    given = np.zeros((frames, height, width), dtype=bool)
    given[list(indices)] = True
    return given


def test_frame_prediction_repeats_the_last_given_frame():
    video = random_video(16)
    given = frames_given(16, range(4))
    video[4:] = 0.0  # what the pipeline holds for frames not given
    cond = window_condition(video, given, "frame_prediction")
    np.testing.assert_array_equal(cond[:4], video[:4])
    for t in range(4, 16):
        np.testing.assert_array_equal(cond[t], video[3])
    assert cond.dtype == np.float32


def test_frame_interpolation_blends_linearly_between_the_given_frames():
    video = random_video(16)
    video[1:-1] = 0.0
    cond = window_condition(video, frames_given(16, [0, 15]), "frame_interpolation")
    np.testing.assert_array_equal(cond[0], video[0])
    np.testing.assert_array_equal(cond[15], video[15])
    for t in range(1, 15):
        w = t / 15
        np.testing.assert_allclose(cond[t], (1 - w) * video[0] + w * video[15], rtol=0, atol=1e-6)


def test_extension_window_of_frame_interpolation_blends_from_the_last_frame_made():
    # The last window of a long FI clip: 4 overlap frames already made, then the clip's last frame.
    video = random_video(16)
    video[4:15] = 0.0
    cond = window_condition(video, frames_given(16, [0, 1, 2, 3, 15]), "frame_interpolation")
    np.testing.assert_array_equal(cond[:4], video[:4])
    for t in range(4, 15):
        w = (t - 3) / 12
        np.testing.assert_allclose(cond[t], (1 - w) * video[3] + w * video[15], rtol=0, atol=1e-6)


def test_frames_before_the_first_given_frame_copy_it():
    video = random_video(8)
    cond = window_condition(video, frames_given(8, [5]), "frame_prediction")
    for t in range(5):
        np.testing.assert_array_equal(cond[t], video[5])
    np.testing.assert_array_equal(cond[6], video[5])


def test_nothing_given_is_all_zeros():
    cond = window_condition(np.zeros((16, 16, 16, 3), np.float32), np.zeros((16, 16, 16), bool), "class_conditional")
    assert cond.shape == (16, 16, 16, 3) and not cond.any()


def edge_replicated(frame: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Independent reference: each pixel takes the given rectangle's nearest pixel."""
    rows, cols = np.nonzero(mask)
    r0, r1, c0, c1 = rows.min(), rows.max(), cols.min(), cols.max()
    out = np.empty_like(frame)
    for r in range(frame.shape[0]):
        for c in range(frame.shape[1]):
            out[r, c] = frame[min(max(r, r0), r1), min(max(c, c0), c1)]
    return out


@pytest.mark.parametrize("preset", ["center", "vertical", "horizontal", "dynamic"])
def test_outpainting_replicates_the_given_edges(preset):
    given, pixels = clip_condition("outpainting", 16, 16, 16, random_video(16), preset=preset)
    cond = window_condition(pixels, given, "outpainting")
    for t in range(16):
        np.testing.assert_array_equal(cond[t], edge_replicated(pixels[t], given[t]))
    # The given region itself is unchanged.
    np.testing.assert_array_equal(cond[given], pixels[given])


@pytest.mark.parametrize("preset", ["center", "dynamic"])
def test_inpainting_fills_the_hole_with_zeros(preset):
    video = random_video(16)
    given, pixels = clip_condition("inpainting", 16, 16, 16, video, preset=preset)
    cond = window_condition(pixels, given, "inpainting")
    assert not cond[~given].any()
    np.testing.assert_array_equal(cond[given], video[given])


@pytest.mark.parametrize("task", ["inpainting", "outpainting"])
def test_fully_given_overlap_frames_are_copied_whatever_the_task(task):
    # An extension window of a spatial task: its first 4 frames were made by the last window.
    video = random_video(16)
    given = T.pixel_mask(task, 16, 16, 16, preset="center")
    given[:4] = True
    pixels = np.where(given[..., None], video, 0.0).astype(np.float32)
    cond = window_condition(pixels, given, task)
    np.testing.assert_array_equal(cond[:4], video[:4])
    # Later frames still follow the task's own padding.
    if task == "inpainting":
        assert not cond[4:][~given[4:]].any()
    else:
        for t in range(4, 16):
            np.testing.assert_array_equal(cond[t], edge_replicated(pixels[t], given[t]))


def test_frames_past_a_short_clip_repeat_its_last_given_frame():
    # A 10-frame FI clip in a 16-frame window: frames 10..15 lie past the clip.
    video = random_video(16)
    video[1:9] = video[10:] = 0.0
    cond = window_condition(video, frames_given(16, [0, 9]), "frame_interpolation")
    for t in range(10, 16):
        np.testing.assert_array_equal(cond[t], video[9])
    np.testing.assert_allclose(cond[3], (6 / 9) * video[0] + (3 / 9) * video[9], rtol=0, atol=1e-6)
