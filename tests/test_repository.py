"""The weight-free bundle (export/bundle.py) and its torch-free assembly (server/repository.py):
the assembled repository is the exported one, byte for byte in what the networks compute."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("onnx")

import onnxruntime as ort  # noqa: E402

from export.bundle import write_bundle  # noqa: E402
from export.onnx import DEMO_CHECKPOINTS, export_repository  # noqa: E402
from server.manifest import load_manifest  # noqa: E402
from server.repository import WEIGHTS_TABLE, assemble  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def feeds_for(manifest, name: str, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Random inputs of the right shape and range for one network."""
    t, h, w = manifest.token_grid
    frames, (height, width) = manifest.window_frames, manifest.base_size
    n, v = t * h * w, manifest.vocab_size
    if name == "encoder":
        return {"video": rng.random((2, 3, frames, height, width), dtype=np.float32)}
    if name == "decoder":
        return {"tokens": rng.integers(0, v, (2, t, h, w))}
    if name == "prior":
        return {"tokens": rng.integers(0, v + 1, (2, n)), "cond": rng.integers(0, v + 1, (2, n)),
                "state": rng.integers(0, 3, (2, n)), "class_id": np.array([1, manifest.null_class_id])}
    if name == "ar_prior":
        spec = manifest.ar
        empty = np.zeros((spec.num_layers, 2, spec.num_heads, 0, spec.head_dim), np.float32)
        return {"ids": rng.integers(0, v, (2, 5)), "cond": rng.integers(0, v + 1, (2, 5)),
                "state": rng.integers(0, 3, (2, 5)), "past_key": empty, "past_value": empty}
    stage = next(s for s in manifest.super_resolution if name == f"sr_{s.out_size[1]}x{s.out_size[0]}")
    return {"video": rng.random((1, 3, frames, *stage.in_size), dtype=np.float32),
            "noise_level": np.array([0.02], np.float32)}


def assert_same_outputs(exported: Path, assembled: Path) -> None:
    manifest = load_manifest(assembled)  # every graph and data file checked against its sha256
    rng = np.random.default_rng(0)
    for name, net in manifest.networks().items():
        feeds = feeds_for(manifest, name, rng)
        want = ort.InferenceSession(str(exported / net.file)).run(None, feeds)
        got = ort.InferenceSession(str(assembled / net.file)).run(None, feeds)
        for a, b in zip(got, want):
            assert np.array_equal(a, b), name


@pytest.fixture(scope="module")
def bundled(tiny_export, tmp_path_factory):
    """(checkpoints, exported repository, bundle): conftest.py's session-wide export of
    test_export.write_checkpoints() (the one test_export.py checks), bundled once here."""
    checkpoints, exported, _ = tiny_export
    bundle = tmp_path_factory.mktemp("bundle") / "bundle"
    write_bundle(exported, checkpoints, bundle)
    return checkpoints, exported, bundle


def test_a_bundle_assembles_to_the_exported_repository(bundled, tmp_path):
    checkpoints, exported, bundle = bundled
    graphs = sum(f.stat().st_size for f in bundle.glob("*.onnx"))
    assert graphs < sum(f.stat().st_size for f in exported.glob("*.onnx")) / 2  # the weights left
    assemble(bundle, checkpoints, tmp_path / "assembled")
    assert_same_outputs(exported, tmp_path / "assembled")


def test_other_checkpoints_are_refused_with_a_clear_error(bundled, tmp_path):
    checkpoints, _, bundle = bundled
    other = tmp_path / "other"
    shutil.copytree(checkpoints, other)
    import torch

    from models.checkpoint import build, save_network
    torch.manual_seed(123)  # a masked prior of the same shapes, other weights
    save_network(other, "masked_prior", "masked_prior",
                 build("masked_prior", json.loads((checkpoints / "masked_prior.json").read_text())["config"]))
    with pytest.raises(ValueError, match="not the ones the bundle"):
        assemble(bundle, other, tmp_path / "assembled")
    assert not (tmp_path / "assembled").exists()  # nothing half-written is left to serve


@pytest.mark.slow
def test_the_shipped_bundle_is_the_export_of_the_shipped_checkpoints(tmp_path):
    """What `make serve` assembles equals a fresh PyTorch export of the committed checkpoints."""
    bundle = DEMO_CHECKPOINTS / "onnx"
    assert (bundle / WEIGHTS_TABLE).is_file(), "run `make bundle` after changing the checkpoints"
    assemble(bundle, DEMO_CHECKPOINTS, tmp_path / "assembled")
    export_repository(DEMO_CHECKPOINTS, tmp_path / "exported", check=False)
    assert_same_outputs(tmp_path / "exported", tmp_path / "assembled")
    shipped = json.loads((bundle / "manifest.json").read_text())
    fresh = json.loads((tmp_path / "exported" / "manifest.json").read_text())
    drop = {"encoder", "decoder", "prior", "ar_prior", "super_resolution", "exporter"}  # hashes differ by design
    assert {k: v for k, v in shipped.items() if k not in drop} == {k: v for k, v in fresh.items() if k not in drop}


def test_the_demo_model_is_found_from_any_directory(tmp_path, monkeypatch):
    """An installed package (no checkout model_repository/) assembles the demo into the cache once,
    and again when the bundle changes."""
    from server.catalogue import _demo_repositories, find_repositories

    package = tmp_path / "site-packages"
    (package / "models" / "checkpoints").mkdir(parents=True)
    shutil.copytree(DEMO_CHECKPOINTS, package / "models" / "checkpoints" / "demo")
    cache = tmp_path / "cache"
    [repo] = _demo_repositories(package, cache)
    assert repo == cache / "moving-digits" and load_manifest(repo).model_id == "moving-digits"
    before = (repo / "prior.onnx.data").stat().st_mtime_ns
    assert _demo_repositories(package, cache) == [repo] and (repo / "prior.onnx.data").stat().st_mtime_ns == before
    (repo / "manifest.json").write_text("{}")  # stale: assembled again
    assert load_manifest(_demo_repositories(package, cache)[0]).model_id == "moving-digits"
    # and the default setting finds a model from a directory that has none
    monkeypatch.chdir(tmp_path)
    assert find_repositories(Path("model_repository"))
    with pytest.raises(FileNotFoundError, match="KINETOSCOPE_MODEL_REPOSITORY"):
        find_repositories(tmp_path / "nowhere")
