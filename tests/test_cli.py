"""`kinetoscope generate` on the exported demo model: MP4s of the requested frames and size over
a matrix that covers every task and mask preset of tasks.md, both samplers, one and several
windows, and every output size; the same seed gives the same file; bad input exits with 2 and
says why. Runs in-process (typer's CliRunner) except where the installed command is the point."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from cli import app
from server.video import decode_video, encode_mp4, encode_png

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
MODELS = ROOT / "model_repository"
KINETOSCOPE = Path(sys.executable).parent / "kinetoscope"


@pytest.fixture(scope="module", autouse=True)
def demo_model():
    if not (MODELS / "moving-digits" / "manifest.json").is_file():
        pytest.skip(f"no demo model under {MODELS}: run `kinetoscope export onnx` (or `make model`) first")


def smooth_clip(frames: int, size: int) -> np.ndarray:
    """A video that survives MP4 compression: a bright square moving right on a dark gradient."""
    clip = np.zeros((frames, size, size, 3), dtype=np.uint8)
    clip[..., 2] = np.linspace(0, 80, size, dtype=np.uint8)[None, None, :]
    side = size // 4
    for t in range(frames):
        left = t * (size - side) // max(frames - 1, 1)
        clip[t, size // 3:size // 3 + side, left:left + side] = (240, 220, 160)
    return clip


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("inputs")
    files = {
        "clip32.mp4": encode_mp4(smooth_clip(16, 32), 8),
        "clip64.mp4": encode_mp4(smooth_clip(20, 64), 8),
        "image.png": encode_png(smooth_clip(1, 48)[0]),
        "corrupt.mp4": b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 4,  # an MP4 header, then junk
    }
    for name, data in files.items():
        (folder / name).write_bytes(data)
    return {name: folder / name for name in files}


def generate(*args: str):
    return CliRunner().invoke(app, ["generate", "--model-repository", str(MODELS), *args])


def read(path: Path) -> np.ndarray:
    return decode_video(path.read_bytes(), max_bytes=1 << 26, max_frames=256, max_pixels=1 << 20).frames


# (id, arguments, input file or None, frames, (width, height)). Every task and preset once or
# more, both samplers, 16 and 48 frames, every size; --steps 2 keeps MaskGIT runs short.
MATRIX = [
    ("class_conditional", ["--task", "class_conditional", "--class-label", "3", "--steps", "2"], None, 16, (32, 32)),
    ("class_conditional_guided_128", ["--task", "class_conditional", "--class-label", "7", "--steps", "2",
                                      "--guidance-scale", "2", "--size", "128x128"], None, 16, (128, 128)),
    ("class_conditional_frame_prediction_48_64", ["--task", "class_conditional_frame_prediction", "--class-label", "4",
                                                  "--steps", "2", "--num-frames", "48", "--size", "64x64"],
     "clip64.mp4", 48, (64, 64)),
    ("frame_interpolation_128", ["--task", "frame_interpolation", "--steps", "2", "--size", "128x128"],
     "clip64.mp4", 16, (128, 128)),
    ("outpainting_center", ["--task", "outpainting", "--mask", "center", "--steps", "2"], "clip32.mp4", 16, (32, 32)),
    ("outpainting_vertical_64", ["--task", "outpainting", "--mask", "vertical", "--steps", "2", "--size", "64x64"],
     "clip64.mp4", 16, (64, 64)),
    ("outpainting_horizontal_48", ["--task", "outpainting", "--mask", "horizontal", "--steps", "2", "--num-frames", "48"],
     "clip32.mp4", 48, (32, 32)),
    ("outpainting_dynamic_128", ["--task", "outpainting", "--mask", "dynamic", "--steps", "2", "--size", "128x128"],
     "image.png", 16, (128, 128)),
    ("outpainting_box_png", ["--task", "outpainting", "--mask", "0.1,0.2,0.8,0.9", "--steps", "2"], "image.png", 16, (32, 32)),
    ("inpainting_center_64", ["--task", "inpainting", "--mask", "center", "--steps", "2", "--size", "64x64"],
     "clip32.mp4", 16, (64, 64)),
    ("inpainting_dynamic_autoregressive", ["--task", "inpainting", "--mask", "dynamic", "--sampler", "autoregressive"],
     "clip32.mp4", 16, (32, 32)),
    ("inpainting_box_48", ["--task", "inpainting", "--mask", "0.25,0.25,0.75,0.75", "--steps", "2", "--num-frames", "48"],
     "clip32.mp4", 48, (32, 32)),
]


@pytest.mark.parametrize("args,source,frames,size", [m[1:] for m in MATRIX], ids=[m[0] for m in MATRIX])
def test_generate_writes_an_mp4_of_the_requested_shape(tmp_path, inputs, args, source, frames, size):
    out = tmp_path / "out.mp4"
    extra = ["--input", str(inputs[source])] if source else []
    result = generate(*args, *extra, "--output", str(out), "--seed", "5")
    assert result.exit_code == 0, result.output
    width, height = size
    assert f"wrote {out} ({frames} frames, {width}x{height}, seed 5)" in result.stdout
    video = read(out)
    assert video.shape == (frames, height, width, 3)
    assert video.max() > 0


def test_given_frames_survive_the_round_trip(tmp_path, inputs):
    """Frame prediction (the matrix's one) through files: the first frames of the MP4 are the
    input's, up to MP4 compression of both files."""
    out = tmp_path / "fp.mp4"
    result = generate("--task", "frame_prediction", "--condition-frames", "4", "--steps", "2",
                      "--input", str(inputs["clip32.mp4"]), "--output", str(out))
    assert result.exit_code == 0, result.output
    given = read(inputs["clip32.mp4"])[:4].astype(float)
    made = read(out).astype(float)
    assert made.shape == (16, 32, 32, 3)
    assert np.abs(made[:4] - given).mean() < 8


def test_same_seed_same_file_other_seed_other_file(tmp_path):
    """Across processes too: the installed command and an in-process run write the same bytes."""
    args = ["--task", "class_conditional", "--class-label", "6", "--steps", "2", "--num-frames", "8"]
    a, b, c = tmp_path / "a.mp4", tmp_path / "b.mp4", tmp_path / "c.mp4"
    assert generate(*args, "--seed", "42", "--output", str(a)).exit_code == 0
    assert generate(*args, "--seed", "43", "--output", str(c)).exit_code == 0
    if KINETOSCOPE.is_file():
        proc = subprocess.run([str(KINETOSCOPE), "generate", "--model-repository", str(MODELS), *args, "--seed", "42",
                               "--output", str(b)], capture_output=True, text=True, timeout=240, cwd=ROOT)
        assert proc.returncode == 0, proc.stderr
    else:
        assert generate(*args, "--seed", "42", "--output", str(b)).exit_code == 0
    assert a.read_bytes() == b.read_bytes()
    assert a.read_bytes() != c.read_bytes()


@pytest.mark.parametrize("args,source,message", [
    (["--task", "colorize"], None, ("task", "colorize", "frame_interpolation")),  # names the choices
    (["--task", "class_conditional", "--class-label", "10"], None, "class_label must be in 0..9"),
    (["--task", "class_conditional_frame_prediction"], "clip32.mp4", "needs class_label"),
    (["--task", "frame_prediction"], None, "frame_prediction needs an input video"),
    (["--task", "outpainting", "--mask", "center"], "corrupt.mp4", "could not be read as a video"),
    (["--task", "outpainting", "--mask", "0,0,1.5,1"], "clip32.mp4", r"box coordinates must lie in [0, 1]"),
    (["--task", "outpainting", "--mask", "0,0,1"], "clip32.mp4", "x0, y0, x1, y1"),
    (["--task", "outpainting"], "clip32.mp4", "needs a mask"),
    (["--task", "outpainting", "--mask", "zoom"], "clip32.mp4", ("preset", "zoom", "center", "dynamic")),
    (["--task", "frame_prediction", "--condition-frames", "12"], "image.png", "condition_frames is 12 but the input video has 1"),
    (["--task", "class_conditional", "--class-label", "1", "--size", "48x48"], None, "sizes 32x32, 64x64, 128x128"),
    (["--task", "class_conditional", "--class-label", "1", "--sampler", "beam"], None, ("sampler", "beam", "autoregressive")),
])
def test_bad_input_exits_2_with_a_clear_message(tmp_path, inputs, args, source, message, monkeypatch):
    def no_engines(*a, **kw):
        raise AssertionError("engines were loaded for a request that is refused")

    monkeypatch.setattr("server.runtime.build_pipeline", no_engines)  # refused before any engine loads
    out = tmp_path / "never.mp4"
    extra = ["--input", str(inputs[source])] if source else []
    result = generate(*args, *extra, "--output", str(out))
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("error: "), result.stderr
    for part in (message,) if isinstance(message, str) else message:
        assert part.lower() in result.stderr.lower(), result.stderr
    assert "Traceback" not in result.output
    assert not out.exists()


def test_the_installed_command_reports_bad_input(tmp_path):
    if not KINETOSCOPE.is_file():
        pytest.skip(f"no installed `kinetoscope` at {KINETOSCOPE}")
    proc = subprocess.run([str(KINETOSCOPE), "generate", "--model-repository", str(MODELS), "--task", "class_conditional",
                           "--class-label", "99", "--output", str(tmp_path / "x.mp4")],
                          capture_output=True, text=True, timeout=240, cwd=ROOT)
    assert proc.returncode == 2
    assert "class_label must be in 0..9" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.parametrize("args,says", [
    (["generate", "--task", "class_conditional", "--class-label", "1", "--output", "x.mp4", "--model-repository",
      "/nonexistent/models"], "no model repository under /nonexistent/models"),
    (["generate", "--task", "frame_prediction", "--input", "/nonexistent/in.mp4", "--output", "x.mp4",
      "--model-repository", str(MODELS)], "No such file"),
    (["serve", "--model-repository", "/nonexistent/models"], "no model repository under /nonexistent/models"),
])
def test_user_errors_are_one_line_not_a_traceback(tmp_path, args, says):
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2, result.output
    assert says in result.output and "Traceback" not in result.output
    assert result.output.strip().count("\n") == 0, result.output
