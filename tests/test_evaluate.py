"""models/evaluation/: PSNR, region masks, baselines and the digit reader, and one run of the
whole evaluation on a single clip per measurement (the real run, `kinetoscope eval`, uses 64)."""
from __future__ import annotations

import math

import numpy as np
import pytest

pytest.importorskip("sklearn")

from models.data.moving_digits import MovingDigits, Scene, render_clip  # noqa: E402
from models.evaluation.metrics import (MAX_PSNR, bicubic, black_fill, class_scores, edge_fill,  # noqa: E402
                                       generated_region, majority, mean_psnr, psnr, repeat_last, to_base)
from models.evaluation.reader import glyph_features, locate, reader  # noqa: E402
from server import tasks as T  # noqa: E402


# ---- PSNR ---------------------------------------------------------------------------------------

def test_psnr_of_identical_clips_is_finite_max():
    clip = np.random.default_rng(0).integers(0, 256, (4, 8, 8, 3), dtype=np.uint8)
    assert psnr(clip, clip) == MAX_PSNR
    assert math.isfinite(psnr(clip.astype(np.float32) / 255, clip))


def test_psnr_matches_the_definition_on_unit_floats():
    a = np.zeros((2, 4, 4, 3))
    b = np.full((2, 4, 4, 3), 0.1)
    assert psnr(a, b) == pytest.approx(20.0)  # mse 0.01 -> 10 log10(1 / 0.01)
    # uint8 input is read as value / 255: a full-range error is 0 dB
    assert psnr(np.zeros((1, 2, 2, 3), np.uint8), np.full((1, 2, 2, 3), 255, np.uint8)) == pytest.approx(0.0)


def test_psnr_mask_counts_only_marked_pixels():
    target = np.zeros((2, 4, 4, 3))
    pred = target.copy()
    pred[:, :2] = 0.1  # error only in the top half
    top = np.zeros((2, 4, 4), bool)
    top[:, :2] = True
    assert psnr(pred, target, top) == pytest.approx(20.0)
    assert psnr(pred, target, ~top) == MAX_PSNR
    assert psnr(pred, target) == pytest.approx(10 * math.log10(1 / 0.005))
    assert math.isnan(psnr(pred, target, np.zeros((2, 4, 4), bool)))
    with pytest.raises(ValueError):
        psnr(pred, target, np.ones((2, 3, 4), bool))


def test_mean_psnr_averages_per_clip_values():
    t = np.zeros((1, 2, 2, 3))
    assert mean_psnr([t + 0.1, t + 0.01], [t, t]) == pytest.approx((20.0 + 40.0) / 2)


def test_to_base_averages_blocks():
    clip = np.zeros((2, 8, 8, 3), np.uint8)
    clip[:, :4, :4] = 200  # one 4x4 block lit
    small = to_base(clip, 4)
    assert small.shape == (2, 2, 2, 3) and (small[:, 0, 0] == 200).all() and (small[:, 1, 1] == 0).all()
    assert to_base(clip, 1) is clip


# ---- regions and baselines ----------------------------------------------------------------------

def test_generated_regions_of_center_presets():
    hole = generated_region("inpainting", 16, 32, 32, preset="center")
    assert hole.sum() == 16 * 16 * 16 and hole[:, 8:24, 8:24].all()
    out = generated_region("outpainting", 16, 32, 32, preset="center")
    assert (out == ~hole).all()
    fp = generated_region("frame_prediction", 16, 32, 32, condition_frames=4)
    assert not fp[:4].any() and fp[4:].all()


def test_repeat_last_copies_the_last_given_frame():
    clip = np.arange(6, dtype=np.uint8)[:, None, None, None] * np.ones((6, 2, 2, 3), np.uint8)
    out = repeat_last(clip, 2)
    assert (out[:2] == clip[:2]).all() and (out[2:] == clip[1]).all()
    assert (clip[5] == 5).all()  # the input is not changed


def test_black_and_edge_fill():
    clip = np.random.default_rng(1).integers(1, 256, (3, 8, 8, 3), dtype=np.uint8)
    given = T.pixel_mask("outpainting", 3, 8, 8, preset="center")  # rows/cols 2..5
    black = black_fill(clip, given)
    assert (black[given] == clip[given]).all() and (black[~given] == 0).all()
    edge = edge_fill(clip, given)
    assert (edge[given] == clip[given]).all()
    assert (edge[:, 0, 0] == clip[:, 2, 2]).all() and (edge[:, 7, 3] == clip[:, 5, 3]).all()


def test_bicubic_keeps_a_flat_frame_flat():
    clip = np.full((2, 8, 8, 3), 77, np.uint8)
    up = bicubic(clip, 4)
    assert up.shape == (2, 32, 32, 3) and (up == 77).all()


# ---- the reader ---------------------------------------------------------------------------------

def test_locate_ignores_a_stray_pixel_and_empty_frames():
    scene = Scene(glyph_index=0, label=0, hue=0.3, x0=9.0, y0=4.0, vx=0.0, vy=0.0)
    frame = render_clip(scene, 1, frames=1)[0]
    at = locate(frame)
    frame[31, 0] = 255  # a speck far from the digit
    assert locate(frame) == at
    assert locate(np.zeros((32, 32, 3), np.uint8)) is None
    assert glyph_features(np.zeros((32, 32, 3), np.uint8)) is None


def test_reader_recovers_real_held_out_clips():
    clips, labels = MovingDigits("test", seed=123).batch(0, 50)
    r = reader()
    frames = [r.read_frames(c) for c in clips]
    scores = class_scores(frames, labels)
    assert scores.clip_accuracy >= 0.9
    assert scores.frame_agreement >= 0.9


def test_reader_reads_an_empty_frame_as_no_digit():
    clips, _ = MovingDigits("test", seed=5).batch(0, 1)
    clip = clips[0].copy()
    clip[3] = 0
    labels = reader().read_frames(clip)
    assert labels[3] == -1 and (labels[np.arange(16) != 3] >= 0).all()


def test_majority_and_class_scores():
    assert majority(np.array([3, 3, 1, -1, 3])) == 3
    frames = [np.array([2, 2, 2, 2]), np.array([5, 5, 1, 1, 1])]
    s = class_scores(frames, [2, 5])
    assert s.clip_accuracy == 0.5
    assert s.frame_agreement == pytest.approx((1.0 + 0.4) / 2)
    assert s.all_frames == 0.5


@pytest.mark.slow
def test_the_whole_evaluation_runs_on_one_clip_and_writes_every_row(tmp_path):
    import json
    from pathlib import Path

    from models.evaluation.measurements import BAR_TOKENIZER_DB, evaluate

    repo = Path(__file__).resolve().parent.parent / "model_repository" / "moving-digits"
    if not (repo / "manifest.json").is_file():
        pytest.skip(f"no demo model at {repo}: run `make model` first")
    out = tmp_path / "eval.json"
    rows = evaluate(repo, clips=1, output=out, eval_seed=5, request_seed=100)
    saved = json.loads(out.read_text())
    assert saved["eval_seed"] == 5 and saved["request_seed"] == 100 and saved["clips"] == 1
    sections = {r["section"] for r in saved["rows"]}
    assert {"reader", "tokenizer", "class_conditional", "frame_prediction", "class_conditional_frame_prediction",
            "inpainting", "outpainting", "super_resolution", "samplers"} <= sections
    # every generation row ran with what a request gets: the manifest's defaults for its task
    from server.manifest import load_manifest

    manifest = load_manifest(repo, verify=False)
    first_cg = next(r for r in saved["rows"] if r["section"] == "class_conditional")
    assert first_cg["extra"]["sampler"] == vars(manifest.sampler_for("class_conditional"))
    inpaint = next(r for r in saved["rows"] if r["section"] == "inpainting")
    assert inpaint["extra"]["sampler"] == vars(manifest.sampler_for("inpainting"))
    assert len(saved["rows"]) == len(rows)
    tokenizer = next(r for r in saved["rows"] if r["section"] == "tokenizer")
    assert 10 < tokenizer["extra"]["psnr_db"] < 60 and tokenizer["met"] == (tokenizer["extra"]["psnr_db"] >= BAR_TOKENIZER_DB)
    # `only` runs the named measurements and nothing else; an unknown name is refused
    rows = evaluate(repo, clips=1, eval_seed=5, request_seed=100, only=("inpainting", "reader"))
    assert {r.section for r in rows} == {"inpainting", "reader"}
    with pytest.raises(ValueError, match="unknown measurement tokeniser"):
        evaluate(repo, clips=1, only=("tokeniser",))
