"""`export/onnx.py` on a tiny random model family: every network is exported, checked against
PyTorch under ONNX Runtime, described by a manifest the server verifies, and a network whose ONNX
disagrees with PyTorch fails the export without replacing a good repository.

The real export (torch.export + ONNX for six networks) runs once per session (conftest.py's
`tiny_export`, which test_repository.py bundles too); it costs ~20 s on two cores whatever the
network size. The failure tests reuse its ONNX files (see `reuse_onnx`) so that only the parity
check itself runs again.
"""
from __future__ import annotations

import asyncio
import json
import shutil
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
from onnx import numpy_helper  # noqa: E402

import export.onnx as exporter  # noqa: E402
from export.onnx import FLOAT_TOLERANCE, TOKEN_AGREEMENT, ParityError, export_repository  # noqa: E402
from models.checkpoint import build, save_network  # noqa: E402
from models.priors import PriorConfig  # noqa: E402
from models.super_resolution import SRConfig  # noqa: E402
from models.tokenizer import TokenizerConfig  # noqa: E402
from server.manifest import SCHEMA_VERSION, load_manifest, sha256_file  # noqa: E402

TOKENIZER = TokenizerConfig(channels=(8, 16, 32), bits=6, mid_blocks=1)  # stride 4, vocabulary 64
PRIOR = PriorConfig(vocab_size=64, num_classes=10, dim=32, layers=1, heads=2)  # grid (4, 8, 8)
SR = SRConfig(channels=8, blocks=1, serve_noise=0.02)
NETWORKS = ["encoder", "decoder", "prior", "ar_prior", "sr_64x64", "sr_128x128"]


def write_checkpoints(directory: Path, ar: bool = True, prior: PriorConfig = PRIOR, sr_widths: tuple[int, ...] = (64, 128),
                      tokenizer_meta: dict | None = None) -> Path:
    """The checkpoint names export_repository looks for: tokenizer, masked_prior, ar_prior
    (optional), sr_<output width> (each optional, in order of size)."""
    torch.manual_seed(0)
    save_network(directory, "tokenizer", "tokenizer", build("tokenizer", asdict(TOKENIZER)), meta=tokenizer_meta)
    save_network(directory, "masked_prior", "masked_prior", build("masked_prior", asdict(prior)))
    if ar:
        save_network(directory, "ar_prior", "ar_prior", build("ar_prior", asdict(prior)))
    for width in sr_widths:
        save_network(directory, f"sr_{width}", "super_resolution", build("super_resolution", asdict(SR)))
    return directory


@pytest.fixture
def exported(tiny_export):
    """(checkpoint folder, repository folder, manifest) of one real export with parity checks:
    conftest.py's session-wide export of write_checkpoints() (test_repository.py bundles it too)."""
    return tiny_export


def test_manifest_describes_the_family(exported):
    _, repo, manifest = exported
    assert manifest.schema_version == SCHEMA_VERSION and manifest.model_id == "tiny"
    assert manifest.sizes == ["32x32", "64x64", "128x128"]
    assert tuple(manifest.base_size) == (32, 32)
    assert manifest.window_frames == 16 and 1 <= manifest.default_condition_frames < 16
    assert tuple(manifest.token_grid) == (4, 8, 8)
    assert manifest.temporal_stride == manifest.spatial_stride == 4
    assert manifest.vocab_size == 64
    assert manifest.mask_token_id == manifest.null_cond_id == 64  # one past the vocabulary
    assert manifest.classes == [str(i) for i in range(10)] and manifest.null_class_id == 10
    assert manifest.samplers == ["maskgit", "autoregressive"]
    assert manifest.ar is not None and (manifest.ar.num_layers, manifest.ar.num_heads, manifest.ar.head_dim) == (1, 2, 16)
    assert [tuple(s.in_size) for s in manifest.super_resolution] == [(32, 32), (64, 64)]
    assert [tuple(s.out_size) for s in manifest.super_resolution] == [(64, 64), (128, 128)]
    assert all(s.scale == 2 and s.noise_level == pytest.approx(0.02) for s in manifest.super_resolution)
    assert manifest.opset == exporter.OPSET
    # The file on disk is the manifest returned, and every network's hash is its file's.
    on_disk = json.loads((repo / "manifest.json").read_text())
    assert on_disk == json.loads(manifest.model_dump_json(exclude_none=True))
    nets = manifest.networks()
    assert sorted(nets) == sorted(NETWORKS)
    for name, net in nets.items():
        assert net.file == f"{name}.onnx"
        assert sha256_file(repo / net.file) == net.sha256
        assert (repo / net.file).with_suffix(".pt2").is_file()  # the torch backend's program
    assert nets["prior"].inputs == ["tokens", "cond", "state", "class_id"] and nets["prior"].outputs == ["logits"]
    assert nets["ar_prior"].outputs == ["logits", "present_key", "present_value"]
    # No half-written folder is left beside the repository.
    assert not repo.with_name(repo.name + ".partial").exists()


def test_parity_report_lists_every_network_within_tolerance(exported):
    _, _, manifest = exported
    report = {r["network"]: r for r in json.loads(manifest.exporter["parity"])}
    assert sorted(report) == sorted(NETWORKS)
    assert report["encoder"]["token_agreement"] >= TOKEN_AGREEMENT
    for name in NETWORKS[1:]:
        assert report[name]["max_abs_diff"] is not None and 0 <= report[name]["max_abs_diff"] <= FLOAT_TOLERANCE, name
    assert manifest.exporter["torch"] == torch.__version__ and manifest.exporter["onnx"] == onnx.__version__


def test_load_manifest_verifies_and_detects_tampering(exported, tmp_path):
    _, repo, manifest = exported
    assert load_manifest(repo, verify=True) == manifest
    copy = tmp_path / "tiny"
    shutil.copytree(repo, copy)
    with open(copy / "prior.onnx", "ab") as f:  # one extra byte
        f.write(b"\0")
    with pytest.raises(ValueError, match=r"prior: .*prior.onnx does not match the sha256"):
        load_manifest(copy, verify=True)
    assert load_manifest(copy, verify=False).model_id == "tiny"  # an API replica reads it without files
    (copy / "sr_128x128.onnx").unlink()
    shutil.copy(repo / "prior.onnx", copy / "prior.onnx")
    with pytest.raises(FileNotFoundError, match="sr_128x128"):
        load_manifest(copy, verify=True)
    data = json.loads((repo / "manifest.json").read_text())
    (copy / "manifest.json").write_text(json.dumps({**data, "schema_version": SCHEMA_VERSION + 1}))
    with pytest.raises(ValueError, match="schema_version"):
        load_manifest(copy, verify=False)


def test_the_exported_repository_serves_both_samplers_and_every_size(exported):
    from server.api.validation import validate_request
    from server.runtime import load_runtime
    from server.settings import Settings

    _, repo, _ = exported
    runtime = load_runtime(Settings(model_repository=repo.parent))
    try:
        pipeline = runtime.pipelines["tiny"]
        manifest, settings = pipeline.manifest, Settings()
        request = {"task": "class_conditional", "seed": 1, "class_label": 2}

        async def run():
            return await asyncio.gather(
                pipeline.generate(validate_request({**request, "num_frames": 16, "size": "128x128",
                                                    "sampler": {"method": "maskgit", "steps": 2}}, manifest, settings), None),
                pipeline.generate(validate_request({**request, "num_frames": 8, "size": "32x32",
                                                    "sampler": {"method": "autoregressive"}}, manifest, settings), None))

        big, ar = asyncio.run(run())
    finally:
        runtime.close()
    assert big.shape == (16, 128, 128, 3) and big.dtype == np.uint8
    assert ar.shape == (8, 32, 32, 3) and ar.dtype == np.uint8


def test_torch_and_onnxruntime_engines_agree_and_cast_feeds_alike(exported):
    """The torch backend runs the .pt2 programs: same outputs as ONNX Runtime for every network,
    and both cast feeds to the graph's dtypes (int32 ids, float64 video)."""
    from server.engines.base import create_engine

    _, repo, manifest = exported
    rng = np.random.default_rng(0)
    n = manifest.num_tokens
    ids = rng.integers(0, manifest.vocab_size, (2, n)).astype(np.int32)  # not the graph's int64
    feeds = {
        "encoder": {"video": rng.random((2, 3, 16, 32, 32))},  # float64, not float32
        "decoder": {"tokens": ids.reshape(2, *manifest.token_grid)},
        "prior": {"tokens": ids, "cond": ids, "state": np.zeros((2, n), np.int32),
                  "class_id": np.array([1, manifest.null_class_id], np.int32)},
        "sr_64x64": {"video": rng.random((2, 3, 16, 32, 32)), "noise_level": np.array([0.02, 0.0])},
    }
    for name, feed in feeds.items():
        net = manifest.networks()[name]
        outputs = {}
        for backend in ("onnxruntime", "torch"):
            engine = create_engine(backend, repo, name, net.file)
            if hasattr(engine, "set_names"):  # as the runtime does: the manifest's names
                engine.set_names(net.inputs, net.outputs)
            outputs[backend] = engine.run(feed)
        for key, value in outputs["onnxruntime"].items():
            other = outputs["torch"][key]
            assert other.dtype == value.dtype and other.shape == value.shape, (name, key)
            if value.dtype.kind == "f":
                np.testing.assert_allclose(other, value, atol=1e-4, err_msg=f"{name}.{key}")
            else:
                assert (other == value).mean() > 0.99, (name, key)  # ids from thresholds: rare ties


# -- a network whose ONNX disagrees with PyTorch fails the export -------------------------------

def reuse_onnx(good_repo: Path, broken: str | None):
    """A stand-in for export.onnx._export that copies the ONNX file the module's real export
    made from the same checkpoints (skipping the ~30 s of torch.export), and corrupts the weights
    of network `broken` the way a faulty exporter would: noise on its largest initializer."""
    def _export(module, args, path, inputs, outputs, dynamic, torch_program=True):
        shutil.copy(good_repo / path.name, path)
        if path.stem == broken:
            model = onnx.load(str(path))
            floats = [t for t in model.graph.initializer if t.data_type == onnx.TensorProto.FLOAT]
            target = max(floats, key=lambda t: int(np.prod(t.dims)))
            weights = numpy_helper.to_array(target)
            noise = np.random.default_rng(0).normal(0.0, 1.0, weights.shape).astype(np.float32)
            target.CopyFrom(numpy_helper.from_array(weights + noise, target.name))
            onnx.save(model, str(path))
    return _export


# The float outputs share one check, so the decoder and sr_64x64 are left out to save time.
@pytest.mark.parametrize("broken", ["encoder", "prior", "ar_prior", "sr_128x128"])
def test_a_network_out_of_parity_fails_the_export(exported, tmp_path, monkeypatch, broken):
    checkpoints, good_repo, _ = exported
    out = tmp_path / "tiny"
    shutil.copytree(good_repo, out)  # a good repository is there: a failed export must keep it
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    monkeypatch.setattr(exporter, "_export", reuse_onnx(good_repo, broken))
    with pytest.raises(ParityError, match=rf"^{broken}: (max abs difference|token agreement)"):
        export_repository(checkpoints, out, model_id="tiny", check=True)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    load_manifest(out, verify=True)


def test_export_without_check_or_ar_prior(exported, tmp_path, monkeypatch):
    """check=False skips parity (the broken file is shipped, as asked); a family without an
    autoregressive prior offers MaskGIT only."""
    _, good_repo, _ = exported
    checkpoints = write_checkpoints(tmp_path / "checkpoints", ar=False)
    monkeypatch.setattr(exporter, "_export", reuse_onnx(good_repo, "decoder"))
    manifest = export_repository(checkpoints, tmp_path / "repo", model_id="no-ar", check=False)
    assert manifest.samplers == ["maskgit"]
    assert manifest.ar is None and manifest.ar_prior is None and "ar_prior" not in manifest.networks()
    assert json.loads(manifest.exporter["parity"]) == []
    assert not (tmp_path / "repo" / "ar_prior.onnx").exists()
    load_manifest(tmp_path / "repo", verify=True)


# -- the manifest's video shape comes from the checkpoints ------------------------------------

def test_a_family_of_another_shape_exports_its_own_frames_fps_and_sizes(tmp_path):
    """8 frames (token grid t = 2), a 24x16 base (h, w = 4, 6), one x2 stage and 12 fps: none of
    them the demo's, all of them in the manifest, and the server runs the repository."""
    from server.api.validation import validate_request
    from server.runtime import load_runtime
    from server.settings import Settings

    prior = PriorConfig(vocab_size=64, num_classes=3, grid=(2, 4, 6), dim=32, layers=1, heads=2)
    checkpoints = write_checkpoints(tmp_path / "checkpoints", prior=prior, sr_widths=(48,), tokenizer_meta={"fps": 12})
    manifest = export_repository(checkpoints, tmp_path / "repo" / "other", model_id="other", check=True)
    assert manifest.window_frames == 8 and manifest.fps == 12
    assert tuple(manifest.base_size) == (16, 24) and tuple(manifest.token_grid) == (2, 4, 6)
    assert manifest.sizes == ["24x16", "48x32"]
    assert [(tuple(s.in_size), tuple(s.out_size)) for s in manifest.super_resolution] == [((16, 24), (32, 48))]
    assert manifest.default_condition_frames == 4  # one latent frame
    assert manifest.classes == ["0", "1", "2"]
    assert sorted(r["network"] for r in json.loads(manifest.exporter["parity"])) == [
        "ar_prior", "decoder", "encoder", "prior", "sr_48x32"]
    assert load_manifest(tmp_path / "repo" / "other", verify=True) == manifest

    runtime = load_runtime(Settings(model_repository=tmp_path / "repo"))
    try:
        pipeline = runtime.pipelines["other"]
        request = validate_request({"task": "class_conditional", "seed": 1, "class_label": 2, "size": "48x32",
                                    "sampler": {"method": "maskgit", "steps": 2}}, pipeline.manifest, Settings())
        video = asyncio.run(pipeline.generate(request, None))
    finally:
        runtime.close()
    assert video.shape == (8, 32, 48, 3)


def test_a_tokenizer_without_fps_falls_back_with_a_warning(caplog):
    """Checkpoints from before training recorded meta.fps: FALLBACK_FPS, said out loud."""
    tok, prior = build("tokenizer", asdict(TOKENIZER)), build("masked_prior", asdict(PRIOR))
    with caplog.at_level("WARNING", logger="kinetoscope.export"):
        shape = exporter.VideoShape.of(tok, prior, {"kind": "tokenizer", "meta": {}})
    assert shape.fps == exporter.FALLBACK_FPS and "meta.fps" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING", logger="kinetoscope.export"):
        assert exporter.VideoShape.of(tok, prior, {"meta": {"fps": 24}}).fps == 24
    assert not caplog.records
    assert (shape.frames, shape.base_size, shape.stride) == (16, (32, 32), 4)
