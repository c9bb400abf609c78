"""server/tasks.py: every task's given pixels, condition padding and token states, as
../shared/spec/tasks.md defines them. Expected masks are built here from the table's words."""
from __future__ import annotations

import numpy as np
import pytest

from server import tasks as T

F, H, W = 16, 32, 32


def rect(rows: slice, cols: slice, frames: int = F, height: int = H, width: int = W) -> np.ndarray:
    m = np.zeros((frames, height, width), dtype=bool)
    m[:, rows, cols] = True
    return m


def dynamic_lefts(frames: int, width: int) -> np.ndarray:
    return np.round(np.linspace(0, width / 2, frames)).astype(int)


def test_class_conditional_gives_nothing():
    assert not T.pixel_mask("class_conditional", F, H, W).any()


@pytest.mark.parametrize("task", ["frame_prediction", "class_conditional_frame_prediction"])
@pytest.mark.parametrize("k", [1, 4, 15])
def test_frame_prediction_gives_the_first_k_frames(task, k):
    given = T.pixel_mask(task, F, H, W, condition_frames=k)
    assert given.shape == (F, H, W) and given.dtype == bool
    assert given[:k].all() and not given[k:].any()


def test_frame_interpolation_gives_first_and_last():
    given = T.pixel_mask("frame_interpolation", F, H, W, condition_frames=3)  # k is ignored
    assert given[0].all() and given[-1].all() and not given[1:-1].any()
    two = T.pixel_mask("frame_interpolation", 2, 8, 8)
    assert two.all()


@pytest.mark.parametrize("height,width", [(32, 32), (16, 24), (64, 48)])
def test_outpainting_presets(height, width):
    qh, qw = height // 4, width // 4
    rows, cols = slice(qh, 3 * height // 4), slice(qw, 3 * width // 4)
    center = T.pixel_mask("outpainting", F, height, width, preset="center")
    np.testing.assert_array_equal(center, rect(rows, cols, F, height, width))
    assert center[0].sum() == (height // 2) * (width // 2)
    np.testing.assert_array_equal(T.pixel_mask("outpainting", F, height, width, preset="vertical"),
                                  rect(slice(None), cols, F, height, width))
    np.testing.assert_array_equal(T.pixel_mask("outpainting", F, height, width, preset="horizontal"),
                                  rect(rows, slice(None), F, height, width))


@pytest.mark.parametrize("frames", [16, 5])
def test_outpainting_dynamic_strip_moves_left_to_right(frames):
    given = T.pixel_mask("outpainting", frames, H, W, preset="dynamic")
    lefts = dynamic_lefts(frames, W)
    assert lefts[0] == 0 and lefts[-1] == W // 2
    for t, left in enumerate(lefts):
        want = np.zeros((H, W), dtype=bool)
        want[:, left:left + W // 2] = True  # W/2 wide, every row
        np.testing.assert_array_equal(given[t], want, err_msg=f"frame {t}")


def test_inpainting_center_generates_the_central_box():
    given = T.pixel_mask("inpainting", F, H, W, preset="center")
    np.testing.assert_array_equal(given, ~rect(slice(H // 4, 3 * H // 4), slice(W // 4, 3 * W // 4)))


@pytest.mark.parametrize("frames", [16, 7])
def test_inpainting_dynamic_hole_is_half_high_centred_and_moves(frames):
    given = T.pixel_mask("inpainting", frames, H, W, preset="dynamic")
    for t, left in enumerate(dynamic_lefts(frames, W)):
        hole = np.zeros((H, W), dtype=bool)
        hole[H // 4: 3 * H // 4, left:left + W // 2] = True
        np.testing.assert_array_equal(given[t], ~hole, err_msg=f"frame {t}")
    assert (~given).sum(axis=(1, 2)).tolist() == [(H // 2) * (W // 2)] * frames


def test_box_in_relative_coordinates():
    box = [0.25, 0.5, 0.75, 1.0]  # x0, y0, x1, y1
    inside = rect(slice(16, 32), slice(8, 24))
    np.testing.assert_array_equal(T.pixel_mask("outpainting", F, H, W, box=box), inside)
    np.testing.assert_array_equal(T.pixel_mask("inpainting", F, H, W, box=box), ~inside)
    # Not square: x scales with W, y with H.
    m = T.pixel_mask("outpainting", 2, 20, 40, box=[0.5, 0.0, 1.0, 0.5])
    np.testing.assert_array_equal(m, rect(slice(0, 10), slice(20, 40), 2, 20, 40))
    # A box smaller than a pixel still covers one pixel.
    tiny = T.pixel_mask("inpainting", 1, 8, 8, box=[0.5, 0.5, 0.51, 0.51])
    assert (~tiny).sum() == 1 and not tiny[0, 4, 4]
    assert T.pixel_mask("outpainting", 1, 8, 8, box=np.array([0.0, 0.0, 1.0, 1.0])).all()


def test_per_frame_boxes():
    frames = 3
    boxes = [[0.0, 0.0, 0.5, 0.5], [0.25, 0.25, 0.75, 0.75], [0.5, 0.5, 1.0, 1.0]]
    given = T.pixel_mask("outpainting", frames, H, W, box=boxes)
    for t, (r0, c0) in enumerate([(0, 0), (8, 8), (16, 16)]):
        want = np.zeros((H, W), dtype=bool)
        want[r0:r0 + 16, c0:c0 + 16] = True
        np.testing.assert_array_equal(given[t], want)
    np.testing.assert_array_equal(T.pixel_mask("inpainting", frames, H, W, box=np.array(boxes)), ~given)
    with pytest.raises(T.TaskError, match="one box per frame"):
        T.pixel_mask("outpainting", 4, H, W, box=boxes)


def test_inpainting_and_outpainting_also_take_vertical_and_horizontal():
    np.testing.assert_array_equal(T.pixel_mask("inpainting", F, H, W, preset="vertical"),
                                  ~T.pixel_mask("outpainting", F, H, W, preset="vertical"))
    np.testing.assert_array_equal(T.pixel_mask("inpainting", F, H, W, preset="horizontal"),
                                  ~T.pixel_mask("outpainting", F, H, W, preset="horizontal"))


# -- condition padding ------------------------------------------------------------------------

@pytest.fixture
def video() -> np.ndarray:
    return np.random.default_rng(0).random((F, H, W, 3), dtype=np.float32)


@pytest.mark.parametrize("task", ["frame_prediction", "class_conditional_frame_prediction"])
def test_frame_tasks_repeat_the_last_given_frame(video, task):
    k = 5
    given = T.pixel_mask(task, F, H, W, condition_frames=k)
    out = T.pad_condition(video, given, task)
    assert out.shape == video.shape and out.dtype == np.float32
    np.testing.assert_array_equal(out[:k], video[:k])
    for t in range(k, F):
        np.testing.assert_array_equal(out[t], video[k - 1])


def test_frame_interpolation_is_linear(video):
    given = T.pixel_mask("frame_interpolation", F, H, W)
    out = T.pad_condition(video, given, "frame_interpolation")
    assert out.shape == video.shape
    for t in range(F):
        a = t / (F - 1)
        np.testing.assert_allclose(out[t], (1 - a) * video[0] + a * video[-1], atol=1e-6)
    np.testing.assert_allclose(out[0], video[0], atol=1e-6)
    np.testing.assert_allclose(out[-1], video[-1], atol=1e-6)


@pytest.mark.parametrize("kw", [{"preset": "center"}, {"preset": "vertical"}, {"preset": "horizontal"},
                                {"preset": "dynamic"}, {"box": [0.1, 0.3, 0.6, 0.9]}])
def test_outpainting_replicates_edges(video, kw):
    given = T.pixel_mask("outpainting", F, H, W, **kw)
    out = T.pad_condition(video, given, "outpainting")
    for t in range(F):
        rows, cols = np.flatnonzero(given[t].any(1)), np.flatnonzero(given[t].any(0))
        r0, r1, c0, c1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
        crop = video[t, r0:r1, c0:c1]
        want = np.pad(crop, ((r0, H - r1), (c0, W - c1), (0, 0)), mode="edge")
        np.testing.assert_array_equal(out[t], want)
        np.testing.assert_array_equal(out[t][given[t]], video[t][given[t]])  # given pixels kept


@pytest.mark.parametrize("preset", ["center", "dynamic"])
def test_inpainting_zeros_the_hole(video, preset):
    given = T.pixel_mask("inpainting", F, H, W, preset=preset)
    out = T.pad_condition(video, given, "inpainting")
    np.testing.assert_array_equal(out[given], video[given])
    assert (out[~given] == 0).all()


def test_class_conditional_condition_is_black(video):
    out = T.pad_condition(video, T.pixel_mask("class_conditional", F, H, W), "class_conditional")
    assert out.shape == video.shape and not out.any()


def test_pad_condition_errors(video):
    with pytest.raises(T.TaskError, match="disagree"):
        T.pad_condition(video, np.ones((F, H, W - 1), dtype=bool), "inpainting")
    with pytest.raises(T.TaskError, match="unknown task"):
        T.pad_condition(video, np.ones((F, H, W), dtype=bool), "deblurring")


# -- token states -----------------------------------------------------------------------------

def test_token_states_full_partial_none():
    states = T.token_states(T.pixel_mask("outpainting", F, H, W, preset="center"), 4, 4)
    assert states.shape == (4, 8, 8)
    want = np.full((4, 8, 8), T.STATE_NONE)
    want[:, 2:6, 2:6] = T.STATE_FULL  # the box 8..24 is token-aligned at stride 4
    np.testing.assert_array_equal(states, want)
    # A box that is not token-aligned: border tokens are partly given.
    states = T.token_states(T.pixel_mask("outpainting", F, H, W, box=[0.2, 0.2, 0.8, 0.8]), 4, 4)
    assert (states[:, 2:6, 2:6] == T.STATE_FULL).all()
    assert (states[:, 1, 1:7] == T.STATE_PARTIAL).all() and (states[:, 0] == T.STATE_NONE).all()
    assert not T.token_states(T.pixel_mask("class_conditional", F, H, W), 4, 4).any()


def test_token_states_of_frame_tasks():
    full = T.token_states(T.pixel_mask("frame_prediction", F, H, W, condition_frames=4), 4, 4)
    assert (full[0] == T.STATE_FULL).all() and (full[1:] == T.STATE_NONE).all()
    partial = T.token_states(T.pixel_mask("frame_prediction", F, H, W, condition_frames=6), 4, 4)
    assert (partial[0] == T.STATE_FULL).all() and (partial[1] == T.STATE_PARTIAL).all()
    assert (partial[2:] == T.STATE_NONE).all()
    fi = T.token_states(T.pixel_mask("frame_interpolation", F, H, W), 4, 4)
    assert (fi[[0, 3]] == T.STATE_PARTIAL).all() and (fi[1:3] == T.STATE_NONE).all()


def test_token_states_pad_the_past_like_the_causal_tokenizer():
    # 5 frames -> 2 latent frames: the tokenizer pads 3 frames before frame 0, so latent frame 0
    # holds frame 0 alone and latent frame 1 holds frames 1..4. Padding counts as not given.
    states = T.token_states(T.pixel_mask("frame_prediction", 5, 8, 8, condition_frames=2), 4, 4)
    assert states.shape == (2, 2, 2)
    assert (states == T.STATE_PARTIAL).all()
    image = T.token_states(np.ones((1, 8, 8), dtype=bool), 4, 4)
    assert image.shape == (1, 2, 2) and (image == T.STATE_PARTIAL).all()
    assert (T.token_states(np.ones((8, 8, 8), dtype=bool), 4, 4) == T.STATE_FULL).all()


# -- errors -----------------------------------------------------------------------------------

@pytest.mark.parametrize("args,kw,message", [
    (("deblurring",), {}, "unknown task 'deblurring'"),
    (("outpainting",), {"preset": "diagonal"}, "unknown mask preset 'diagonal'"),
    (("inpainting",), {"preset": "spiral"}, "unknown mask preset"),
    (("outpainting",), {"box": [-0.1, 0.0, 0.5, 0.5]}, r"must lie in \[0, 1\]"),
    (("inpainting",), {"box": [0.0, 0.0, 0.5, 1.2]}, r"must lie in \[0, 1\]"),
    (("outpainting",), {"box": [0.5, 0.0, 0.5, 1.0]}, "x0 < x1"),
    (("outpainting",), {"box": [0.6, 0.0, 0.4, 1.0]}, "x0 < x1"),
    (("inpainting",), {"box": [0.0, 0.7, 1.0, 0.2]}, "y0 < y1"),
    (("inpainting",), {"box": [0.0, 0.5, 1.0]}, r"\[x0, y0, x1, y1\]"),
    (("outpainting",), {"preset": "center", "box": [0, 0, 1, 1]}, "exactly one of a mask preset or a box"),
    (("inpainting",), {}, "exactly one of a mask preset or a box"),
    (("frame_prediction",), {"condition_frames": 0}, "condition_frames"),
    (("frame_prediction",), {"condition_frames": F}, "condition_frames"),
    (("class_conditional_frame_prediction",), {}, "condition_frames"),
])
def test_bad_requests_raise_task_error(args, kw, message):
    with pytest.raises(T.TaskError, match=message):
        T.pixel_mask(*args, F, H, W, **kw)


def test_task_error_is_a_value_error_and_other_errors():
    assert issubclass(T.TaskError, ValueError)
    with pytest.raises(T.TaskError, match="at least 2 frames"):
        T.pixel_mask("frame_interpolation", 1, H, W)
    with pytest.raises(T.TaskError, match="at least one frame"):
        T.pixel_mask("class_conditional", 0, H, W)
    with pytest.raises(T.TaskError, match=r"must lie in \[0, 1\]"):
        T.pixel_mask("outpainting", 2, H, W, box=[[0, 0, 1, 1], [0, 0, 1, 2]])
