"""Moving Digits follows ../shared/spec/moving-digits.md: the renders are checked against an
independent re-implementation of the spec text (`spec_clip` below), frame by frame."""
from __future__ import annotations

import colorsys
from dataclasses import replace

import numpy as np
import pytest
from sklearn.datasets import load_digits

from models.data.moving_digits import MovingDigits, Scene, glyph_indices, render_clip, sample_scene, trajectory

DIGITS = load_digits()


def spec_clip(scene: Scene, r: int) -> np.ndarray:
    """The spec, read literally: a 32r canvas, the 8x8 glyph with each source pixel a 2r x 2r block,
    colour from colorsys, pixel = round(255 * intensity * channel), drawn at (round(x r), round(y r))
    before moving, elastic bounces in a free range L = 16 at base resolution."""
    image = DIGITS.images[scene.glyph_index]
    colour = colorsys.hsv_to_rgb(scene.hue, 1.0, 1.0)
    free = 32 - 16
    x, y, vx, vy = scene.x0, scene.y0, scene.vx, scene.vy
    side, block = 32 * r, 2 * r
    clip = np.zeros((16, side, side, 3), dtype=np.uint8)
    for t in range(16):
        left, top = round(x * r), round(y * r)
        for a in range(8):
            for b in range(8):
                intensity = float(image[a, b]) / 16.0
                pixel = [round(255 * intensity * channel) for channel in colour]
                clip[t, top + a * block: top + (a + 1) * block, left + b * block: left + (b + 1) * block] = pixel
        x += vx
        if x < 0:
            x, vx = -x, -vx
        if x > free:
            x, vx = 2 * free - x, -vx
        y += vy
        if y < 0:
            y, vy = -y, -vy
        if y > free:
            y, vy = 2 * free - y, -vy
    return clip


@pytest.mark.parametrize("r", [1, 2, 4])
@pytest.mark.parametrize("seed", [0, 1, 7])
@pytest.mark.parametrize("split", ["train", "test"])
def test_render_matches_the_spec_frame_by_frame(r, seed, split):
    ds = MovingDigits(split, seed=seed, scales=(r,))
    for index in range(3):
        clips, label = ds[index]
        clip = clips[r]
        want = spec_clip(ds.scene(index), r)
        assert clip.shape == (16, 32 * r, 32 * r, 3) and clip.dtype == np.uint8
        for t in range(16):
            np.testing.assert_array_equal(clip[t], want[t], err_msg=f"frame {t} of clip {index} at r={r}")


def test_colour_rounds_like_the_spec_at_a_half_boundary():
    # 255 * 14/16 * red(hue) = 182.5000065 in float64: the spec's round() gives 183; a float32
    # computation lands on 182.5 and rounds to 182.
    index = next(i for i in range(len(DIGITS.images)) if (DIGITS.images[i] == 14).any())
    scene = Scene(index, int(DIGITS.target[index]), 0.19701213336384082, 0.0, 0.0, 0.0, 0.0)
    clip = render_clip(scene, 1)
    block = np.argwhere(DIGITS.images[index] == 14)[0] * 2
    assert clip[0, block[0], block[1], 0] == 183
    np.testing.assert_array_equal(clip, spec_clip(scene, 1))


def test_glyph_is_16r_pixels_of_2r_blocks():
    ds = MovingDigits("train", seed=3)
    scene = replace(ds.scene(0), x0=0.0, y0=0.0, vx=0.0, vy=0.0, hue=0.0)  # pure red, top-left corner
    for r in (1, 2, 4):
        frame = render_clip(scene, r)[0]
        assert not frame[16 * r:].any() and not frame[:, 16 * r:].any()  # nothing outside the 16r glyph
        red = frame[: 16 * r, : 16 * r, 0].astype(int)
        want = np.round(255 * DIGITS.images[scene.glyph_index] / 16.0).astype(int)
        np.testing.assert_array_equal(red[:: 2 * r, :: 2 * r], want)
        blocks = red.reshape(8, 2 * r, 8, 2 * r)
        assert (blocks == blocks[:, :1, :, :1]).all()  # each source pixel is one flat 2r x 2r block
        assert not frame[..., 1:].any()  # hue 0 is red only


def test_bounces_reverse_velocity_and_keep_the_glyph_inside():
    base = MovingDigits("train", seed=0).scene(0)
    right = trajectory(replace(base, x0=15.0, y0=8.0, vx=2.0, vy=0.0))
    np.testing.assert_allclose(right[:4, 0], [15, 15, 13, 11])  # 17 reflects to 2L - 17 = 15
    left = trajectory(replace(base, x0=8.0, y0=1.0, vx=0.0, vy=-2.0))
    np.testing.assert_allclose(left[:4, 1], [1, 1, 3, 5])  # -1 reflects to 1
    ds = MovingDigits("test", seed=5)
    for index in range(40):
        scene = ds.scene(index)
        path = trajectory(scene)
        assert (path >= 0).all() and (path <= 16).all()
        clip = render_clip(scene, 1).astype(np.int64)
        # The glyph is never cut by the canvas edge: every frame shows all of it.
        sums = clip.sum(axis=(1, 2, 3))
        assert (sums == sums[0]).all()
        speeds = np.abs(np.diff(path, axis=0))
        assert (speeds <= 2 + 1e-9).all()


def test_scene_parameters_follow_the_spec_ranges():
    ds = MovingDigits("train", seed=11)
    scenes = [ds.scene(i) for i in range(300)]
    x0 = np.array([[s.x0, s.y0] for s in scenes])
    v = np.array([[s.vx, s.vy] for s in scenes])
    hue = np.array([s.hue for s in scenes])
    assert x0.min() >= 0 and x0.max() <= 16 and x0.min() < 1 and x0.max() > 15
    assert v.min() >= -2 and v.max() <= 2 and v.min() < -1.8 and v.max() > 1.8
    assert hue.min() >= 0 and hue.max() < 1
    assert abs(np.corrcoef(v[:, 0], v[:, 1])[0, 1]) < 0.2  # vx, vy drawn independently


def test_split_by_index():
    test, train = glyph_indices("test"), glyph_indices("train")
    assert len(test) == 360 and (test % 5 == 0).all()
    assert len(train) == 1797 - 360 and (train % 5 != 0).all()
    assert set(test).isdisjoint(train)
    for split, ok in (("test", lambda i: i % 5 == 0), ("train", lambda i: i % 5 != 0)):
        ds = MovingDigits(split, seed=2)
        assert all(ok(ds.scene(i).glyph_index) for i in range(300))
        assert all(ok(ds.scene(i, label=i % 10).glyph_index) for i in range(50))


def test_labels_are_the_glyph_labels():
    ds = MovingDigits("train", seed=4)
    for index in range(30):
        _, label = ds[index]
        assert label == DIGITS.target[ds.scene(index).glyph_index]
    clips, labels = ds.batch(0, 30)
    assert clips.shape == (30, 16, 32, 32, 3)
    np.testing.assert_array_equal(labels, [DIGITS.target[ds.scene(i).glyph_index] for i in range(30)])
    assert len(set(labels.tolist())) > 5
    for digit in range(10):
        scene = ds.scene(digit, label=digit)
        assert scene.label == digit == DIGITS.target[scene.glyph_index]


def test_deterministic_for_a_seed_and_different_across_seeds():
    a, b, c = MovingDigits("train", seed=0), MovingDigits("train", seed=0), MovingDigits("train", seed=1)
    for index in (0, 5, 123):
        np.testing.assert_array_equal(a[index][0][1], b[index][0][1])
        assert a.scene(index) == b.scene(index)
        assert not np.array_equal(a[index][0][1], c[index][0][1])
    np.testing.assert_array_equal(a.batch(3, 4)[0], np.stack([a[i][0][1] for i in range(3, 7)]))
    # The two splits are different streams too.
    assert MovingDigits("test", seed=0).scene(0) != a.scene(0)


def test_the_64_and_128_renders_are_the_same_scene():
    ds = MovingDigits("train", seed=9, scales=(1, 2, 4))
    checked = 0
    for index in range(6):
        clips, _ = ds[index]
        path = trajectory(ds.scene(index))
        for t, (x, y) in enumerate(path):
            for r in (2, 4):
                # Where the glyph sits on the base grid at both scales, r x r blocks of the larger
                # render are flat and equal the base render.
                if round(x * r) == r * round(x) and round(y * r) == r * round(y):
                    big = clips[r][t].astype(int).reshape(32, r, 32, r, 3)
                    assert (big == big[:, :1, :, :1]).all()
                    np.testing.assert_array_equal(big[:, 0, :, 0], clips[1][t])
                    checked += 1
    assert checked > 20


def test_bad_arguments_raise_value_error():
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="split"):
        MovingDigits("validation")
    with pytest.raises(ValueError, match="split"):
        glyph_indices("val")
    with pytest.raises(ValueError, match="split"):
        sample_scene(rng, "dev")
    with pytest.raises(ValueError, match="scales"):
        MovingDigits("train", scales=(1, 3))
    for label in (-1, 10):
        with pytest.raises(ValueError, match="label"):
            sample_scene(rng, "train", label=label)
        with pytest.raises(ValueError, match="label"):
            MovingDigits("test").scene(0, label=label)
    with pytest.raises(IndexError):
        MovingDigits("train", length=4)[4]


@pytest.mark.parametrize("scale", [1, 2, 4])
def test_batched_torch_render_equals_the_reference(scale):
    """Training renders whole batches with torch (models/data/render.py); they must be the
    spec's bytes. Edge cases included: corners on the walls, the fastest velocities (many
    bounces), a corner exactly halfway between two pixels (half-to-even rounding)."""
    from models.data.render import render_batch

    ds = MovingDigits("train", seed=11)
    scenes = [ds.scene(i) for i in range(40 if scale == 4 else 120)]
    scenes += [replace(scenes[0], x0=0.0, y0=16.0, vx=2.0, vy=-2.0),
               replace(scenes[1], x0=15.5, y0=0.5, vx=-1.999, vy=1.25),
               replace(scenes[2], x0=7.25, y0=8.75, vx=0.5, vy=-0.25)]
    expected = np.stack([render_clip(s, scale) for s in scenes])
    assert np.array_equal(render_batch(scenes, scale).numpy(), expected)


def test_training_batches_are_the_data_sets_batches():
    """Review R11: Batches.get drew its scenes itself; both now take MovingDigits.scenes, so a
    training batch is the data set's batch, rendered on the training device."""
    import torch

    from models.train import Batches, TrainConfig

    ds = MovingDigits("train", seed=3)
    assert ds.scenes(5, 3) == [ds.scene(5), ds.scene(6), ds.scene(7)]
    batches = Batches(TrainConfig(seed=3, batch_size=4, device="cpu"), torch.device("cpu"))
    clips, labels = batches.get(2)
    want_clips, want_labels = ds.batch(8, 4)
    assert labels.tolist() == want_labels.tolist()
    assert torch.equal(clips, torch.from_numpy(want_clips).permute(0, 4, 1, 2, 3).float() / 255)
