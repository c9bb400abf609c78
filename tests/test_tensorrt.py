"""TensorRT plans and the GPU execution providers.

Everywhere: optimization profiles for every network of a manifest (a tiny fake repository, and
the real one when `make serve`/`make test` has exported it), plan cache keys, the precision plan
per TensorRT version, ONNX Runtime provider order, the error when TensorRT is missing, and the
build loop (cache hits, flags, profiles) against a stand-in `tensorrt` module that records what
it is asked to build. Where TensorRT and a CUDA GPU exist: real plans checked against ONNX
Runtime on the CPU, and the generation pipeline on the tensorrt backend.
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import re
import sys
import types
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from export import tensorrt as export_trt
from export.tensorrt import (ar_axes, build_repository, network_profiles, onnx_input_shapes, precision_plan,
                             profile_shapes)
from server.engines.base import create_engine
from server.engines.onnxruntime import choose_providers
from server.engines.tensorrt import (TensorRTUnavailable, cache_key, choose_plan, nvidia_gpu_visible, plan_path,
                                     read_keys, require_tensorrt)
from server.manifest import (ARSpec, Manifest, NetworkFile, SuperResolutionStage, load_manifest, sha256_file)

REAL_REPO = Path(__file__).resolve().parent.parent / "model_repository" / "moving-digits"
FAKE_TOKENS = (2, 2, 2)  # token grid of the fake repository: 8 tokens
L, H, D = 2, 2, 4  # fake AR prior: layers, heads, head_dim


# ---- A tiny fake repository: the real graphs' inputs and outputs, Identity bodies -----------

def _onnx(path: Path, inputs: dict, outputs: dict) -> NetworkFile:
    """An ONNX file with these (dtype, shape) inputs/outputs; never run, only read for shapes."""
    first = next(iter(inputs))
    nodes = [helper.make_node("Identity", [first], [name]) for name in outputs]
    graph = helper.make_graph(nodes, path.stem,
                              [helper.make_tensor_value_info(k, t, s) for k, (t, s) in inputs.items()],
                              [helper.make_tensor_value_info(k, inputs[first][0], s) for k, (_, s) in outputs.items()])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), str(path))
    return NetworkFile(file=path.name, sha256=sha256_file(path), inputs=list(inputs), outputs=list(outputs))


def make_fake_repo(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    i64, f32 = TensorProto.INT64, TensorProto.FLOAT
    t, h, w = FAKE_TOKENS
    n = t * h * w
    video = (f32, ["batch", 3, 4 * t, 4 * h, 4 * w])
    tokens = (i64, ["batch", t, h, w])
    seq = (i64, ["batch", n])
    new = (i64, ["batch", "new"])
    cache = (f32, [L, "batch", H, "past", D])
    enc = _onnx(folder / "encoder.onnx", {"video": video}, {"tokens": tokens})
    dec = _onnx(folder / "decoder.onnx", {"tokens": tokens}, {"video": video})
    prior = _onnx(folder / "prior.onnx", {"tokens": seq, "cond": seq, "state": seq, "class_id": (i64, ["batch"])},
                  {"logits": (f32, ["batch", n, 16])})
    ar = _onnx(folder / "ar_prior.onnx",
               {"ids": new, "cond": new, "state": new, "past_key": cache, "past_value": cache},
               {"logits": (f32, ["batch", "new", 16]), "present_key": (f32, [L, "batch", H, "new + past", D]),
                "present_value": (f32, [L, "batch", H, "new + past", D])})
    sr = _onnx(folder / "sr_16x16.onnx", {"video": video, "noise_level": (f32, ["batch"])},
               {"video_hr": (f32, ["batch", 3, 4 * t, 16, 16])})
    stage = SuperResolutionStage(**sr.model_dump(), in_size=(8, 8), out_size=(16, 16))
    manifest = Manifest(model_id="fake", classes=["a", "b"], window_frames=4 * t, default_condition_frames=4,
                        base_size=(4 * h, 4 * w), fps=8, token_grid=FAKE_TOKENS, temporal_stride=4, spatial_stride=4,
                        vocab_size=16, mask_token_id=16, null_class_id=2, null_cond_id=16, encoder=enc, decoder=dec,
                        prior=prior, ar_prior=ar, ar=ARSpec(num_layers=L, num_heads=H, head_dim=D),
                        super_resolution=[stage], opset=18)
    (folder / "manifest.json").write_text(manifest.model_dump_json(indent=2))
    return folder


@pytest.fixture(scope="module")
def fake_repo(tmp_path_factory) -> Path:
    return make_fake_repo(tmp_path_factory.mktemp("trt") / "fake")


@pytest.fixture(params=["fake", "real"])
def any_repo(request, fake_repo) -> Path:
    if request.param == "real":
        if not (REAL_REPO / "manifest.json").is_file():
            pytest.skip("no exported model_repository/moving-digits (make serve / make test exports it)")
        return REAL_REPO
    return fake_repo


# ---- Optimization profiles ------------------------------------------------------------------

def test_every_input_of_every_network_has_a_profile_over_batch_1_to_max(any_repo):
    manifest = load_manifest(any_repo, verify=False)
    n = manifest.num_tokens
    profiles = network_profiles(any_repo, manifest, max_batch=32, opt_batch=8)
    assert set(profiles) == set(manifest.networks())
    for name, net in manifest.networks().items():
        shapes = onnx_input_shapes(any_repo / net.file)
        assert set(profiles[name]) == set(net.inputs) == set(shapes), name
        for tensor, (low, opt, high) in profiles[name].items():
            dims = shapes[tensor]
            assert len(low) == len(opt) == len(high) == len(dims)
            for d, lo, mid, hi in zip(dims, low, opt, high):
                assert lo <= mid <= hi
                if isinstance(d, int):
                    assert lo == mid == hi == d, (name, tensor)
                elif d == "batch":
                    assert (lo, mid, hi) == (1, 8, 32), (name, tensor)
    if manifest.ar_prior is not None:
        ar = profiles["ar_prior"]
        spec = manifest.ar
        for tensor in ("ids", "cond", "state"):
            assert ar[tensor] == ((1, 1), (8, 1), (32, n))  # (batch, new): new is 1..num_tokens
        for tensor in ("past_key", "past_value"):  # batch on axis 1, past on axis 3
            k = (spec.num_layers, spec.num_heads, spec.head_dim)
            assert ar[tensor] == ((k[0], 1, k[1], 0, k[2]), (k[0], 8, k[1], n // 2, k[2]), (k[0], 32, k[1], n, k[2]))
    assert profiles["prior"]["class_id"] == ((1,), (8,), (32,))


def test_profile_defaults_and_errors():
    shapes = {"x": ["batch", 3], "cache": [2, "batch", "past"]}
    got = profile_shapes(shapes, max_batch=16, axes={"past": (0, 4, 8)})
    assert got["x"] == ((1, 3), (8, 3), (16, 3))  # opt batch defaults to half the max
    assert got["cache"] == ((2, 1, 0), (2, 8, 4), (2, 16, 8))
    assert profile_shapes({"x": ["batch"]}, max_batch=1)["x"] == ((1,), (1,), (1,))
    with pytest.raises(ValueError, match="'past'"):
        profile_shapes(shapes, max_batch=4)  # no range for past
    with pytest.raises(ValueError, match="opt_batch"):
        profile_shapes(shapes, max_batch=4, opt_batch=5, axes={"past": (0, 1, 2)})
    with pytest.raises(ValueError, match="max_batch"):
        profile_shapes(shapes, max_batch=0, axes={"past": (0, 1, 2)})
    assert ar_axes(256) == {"new": (1, 1, 256), "past": (0, 128, 256)}


# ---- Plan cache keys ------------------------------------------------------------------------

KEY_ARGS = dict(gpu_name="NVIDIA H100 80GB HBM3", compute_capability=(9, 0), trt_version="10.13.0.35",
                onnx_sha256="ab" * 32, max_batch=32, precision="typed")


def test_cache_key_is_stable_and_normalises_the_capability():
    key = cache_key(**KEY_ARGS)
    assert key == cache_key(**KEY_ARGS) == cache_key(**{**KEY_ARGS, "compute_capability": "9.0"})
    # Pinned: a key that changed between releases would orphan every built plan.
    assert key == "nvidia-h100-80gb-hbm3-sm90-trt10.13.0.35-abababababab-b32-typed-385debef6bbc"


def test_cache_key_differs_when_any_component_differs():
    changes = {"gpu_name": "NVIDIA H100 PCIe", "compute_capability": (8, 0), "trt_version": "10.13.0.36",
               "onnx_sha256": "ab" * 31 + "ac", "max_batch": 16, "precision": "fp16"}
    keys = {cache_key(**KEY_ARGS)} | {cache_key(**{**KEY_ARGS, k: v}) for k, v in changes.items()}
    assert len(keys) == 1 + len(changes)
    # Names whose slugs coincide still get different keys.
    assert cache_key(**{**KEY_ARGS, "gpu_name": "NVIDIA H100"}) != cache_key(**{**KEY_ARGS, "gpu_name": "nvidia_h100"})


@pytest.mark.parametrize("gpu,trt", [("NVIDIA A100-SXM4/80GB (MIG 1g.10gb)", "10.12.0.36+cuda12.9"),
                                     ("..\\..//\x00 GeForce RTX 4090 ☃", "8.6.1.post1"), ("", "11.0")])
def test_cache_key_is_filesystem_safe(gpu, trt, tmp_path):
    key = cache_key(**{**KEY_ARGS, "gpu_name": gpu, "trt_version": trt})
    assert re.fullmatch(r"[a-z0-9][a-z0-9.-]*", key) and ".." not in key and len(key) < 160
    path = plan_path(tmp_path, key, "prior")
    assert path == tmp_path / "tensorrt" / key / "prior.plan"
    path.parent.mkdir(parents=True)  # a real folder on this filesystem
    assert path.parent.is_dir()


def test_choose_plan_matches_this_machine_and_prefers_the_largest_batch():
    base = {k: v for k, v in KEY_ARGS.items() if k not in ("max_batch", "precision")}
    row = {"gpu_name": base["gpu_name"], "compute_capability": "9.0", "trt_version": base["trt_version"],
           "onnx_sha256": base["onnx_sha256"]}
    entries = [{**row, "max_batch": 8, "precision": "typed", "key": "a"},
               {**row, "max_batch": 32, "precision": "typed", "key": "b"},
               {**row, "gpu_name": "NVIDIA A100", "max_batch": 64, "precision": "typed", "key": "c"},
               {**row, "trt_version": "10.12.0", "max_batch": 64, "precision": "typed", "key": "d"},
               {**row, "onnx_sha256": "cd" * 32, "max_batch": 64, "precision": "typed", "key": "e"}]
    assert choose_plan(entries, **base)["key"] == "b"
    assert choose_plan(entries, **base, max_batch=8)["key"] == "a"
    assert choose_plan(entries, **base, precision="fp16") is None
    assert choose_plan(entries, **{**base, "gpu_name": "NVIDIA L4"}) is None


# ---- Precision ------------------------------------------------------------------------------

@pytest.mark.parametrize("version,requested,typed,flags,label", [
    ("8.6.1.post1", "auto", False, ("FP16",), "fp16"),
    ("8.6.1", "fp32", False, (), "fp32"),
    ("9.3.0", "bf16", False, ("BF16",), "bf16"),
    ("10.0.1", "fp16", False, ("FP16",), "fp16"),
    ("10.11.0.33", "auto", False, ("FP16",), "fp16"),
    ("10.12.0.36", "auto", True, (), "typed"),
    ("10.13.3", "fp32", True, (), "typed"),
    ("11.0.0", "auto", True, (), "typed"),
])
def test_precision_plan_by_tensorrt_version(version, requested, typed, flags, label):
    plan = precision_plan(version, requested)
    assert (plan.strongly_typed, plan.builder_flags, plan.label) == (typed, flags, label)


def test_precision_plan_refuses_what_the_version_cannot_do():
    with pytest.raises(ValueError, match="ONNX"):  # strongly typed: an fp16 ONNX variant, not a flag
        precision_plan("10.12.0", "fp16")
    with pytest.raises(ValueError, match="ONNX"):
        precision_plan("11.1", "bf16")
    with pytest.raises(ValueError, match="bf16"):
        precision_plan("8.6.1", "bf16")
    with pytest.raises(ValueError, match="choose one of"):
        precision_plan("10.0", "int8")


# ---- ONNX Runtime providers -----------------------------------------------------------------

@pytest.mark.parametrize("available,chosen", [
    (["CPUExecutionProvider", "CUDAExecutionProvider", "TensorrtExecutionProvider"],
     ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]),
    (["CUDAExecutionProvider", "CPUExecutionProvider"], ["CUDAExecutionProvider", "CPUExecutionProvider"]),
    (["AzureExecutionProvider", "CPUExecutionProvider"], ["CPUExecutionProvider"]),
    (["TensorrtExecutionProvider"], ["TensorrtExecutionProvider", "CPUExecutionProvider"]),  # CPU always last
    ([], ["CPUExecutionProvider"]),
])
def test_onnxruntime_prefers_tensorrt_then_cuda_then_cpu(available, chosen):
    assert choose_providers(available) == chosen


# ---- Without TensorRT -----------------------------------------------------------------------

def test_missing_tensorrt_is_a_clear_error(monkeypatch, fake_repo):
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # import tensorrt -> ImportError, installed or not
    no_gpu = not nvidia_gpu_visible()
    for call in (require_tensorrt, lambda: build_repository(fake_repo, max_batch=2),
                 lambda: create_engine("tensorrt", fake_repo, "prior", "prior.onnx")):
        with pytest.raises(TensorRTUnavailable, match=r"TensorRT is not installed: pip install tensorrt") as err:
            call()
        assert ("no NVIDIA GPU found" in str(err.value)) == no_gpu
    assert not (fake_repo / "tensorrt").exists()


def _cuda_available() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


# ---- The build loop, against a stand-in tensorrt module -------------------------------------

class FakeTensorRT(types.ModuleType):
    """Just the builder API build_repository uses; a "plan" is JSON of what it was asked."""

    def __init__(self, version: str):
        super().__init__("tensorrt")
        self.__version__, self.builds = version, []
        self.Logger = type("Logger", (), {"WARNING": 2, "__init__": lambda self, level=2: None})
        creation = {"STRONGLY_TYPED": 1} if version.startswith("11") else {"EXPLICIT_BATCH": 0, "STRONGLY_TYPED": 1}
        self.NetworkDefinitionCreationFlag = types.SimpleNamespace(**creation)
        self.BuilderFlag = types.SimpleNamespace(FP16="FP16", BF16="BF16")
        self.MemoryPoolType = types.SimpleNamespace(WORKSPACE="WORKSPACE")
        fake = self

        class Network:
            def __init__(self, flags):
                self.flags, self.inputs = flags, []

            @property
            def num_inputs(self):
                return len(self.inputs)

            def get_input(self, i):
                return types.SimpleNamespace(name=self.inputs[i])

        class Parser:
            num_errors = 0

            def __init__(self, network, logger):
                self.network = network

            def parse_from_file(self, path):
                self.network.inputs = list(onnx_input_shapes(Path(path)))
                self.network.file = Path(path).name
                return True

        class Config:
            def __init__(self):
                self.flags, self.profiles, self.pools = [], [], {}

            def set_memory_pool_limit(self, pool, size):
                self.pools[pool] = size

            def set_flag(self, flag):
                self.flags.append(flag)

            def add_optimization_profile(self, profile):
                self.profiles.append(profile)

        class Profile(dict):
            def set_shape(self, name, low, opt, high):
                self[name] = [list(low), list(opt), list(high)]

        class Builder:
            def __init__(self, logger):
                pass

            create_network = staticmethod(Network)
            create_builder_config = staticmethod(Config)
            create_optimization_profile = staticmethod(Profile)

            def build_serialized_network(self, network, config):
                record = {"file": network.file, "network_flags": network.flags, "builder_flags": config.flags,
                          "profiles": config.profiles, "workspace": config.pools["WORKSPACE"]}
                fake.builds.append(record)
                return json.dumps(record).encode()

        self.Builder, self.OnnxParser = Builder, Parser


GPU = ("NVIDIA H100 80GB HBM3", (9, 0))


def _fake_machine(monkeypatch, version: str) -> FakeTensorRT:
    trt = FakeTensorRT(version)
    monkeypatch.setattr(export_trt, "require_tensorrt", lambda: trt)
    monkeypatch.setattr(export_trt, "gpu_identity", lambda device=0: GPU)
    monkeypatch.setattr(export_trt, "on_device", lambda device: contextlib.nullcontext())
    return trt


def test_build_repository_builds_each_network_once_then_hits_the_cache(monkeypatch, tmp_path):
    repo = make_fake_repo(tmp_path / "fake")
    manifest = load_manifest(repo)
    trt = _fake_machine(monkeypatch, "10.13.0.35")
    paths = build_repository(repo, max_batch=4, opt_batch=2)
    assert len(trt.builds) == len(paths) == len(manifest.networks())
    want_profiles = network_profiles(repo, manifest, 4, 2)
    for (name, net), path, build in zip(manifest.networks().items(), paths, trt.builds):
        key = cache_key(*GPU, "10.13.0.35", net.sha256, 4, "typed")
        assert path == plan_path(repo, key, name) and path.is_file()
        assert build["file"] == net.file
        assert build["network_flags"] == 1 << 1 and build["builder_flags"] == []  # strongly typed, no flags
        assert build["profiles"] == [{k: [list(s) for s in v] for k, v in want_profiles[name].items()}]
        record = json.loads((path.parent / "key.json").read_text())
        assert record["opt_batch"] == 2 and record["max_batch"] == 4 and record["precision"] == "typed"
        # The server finds exactly this plan for this machine.
        assert choose_plan(read_keys(repo, name), *GPU, "10.13.0.35", sha256_file(repo / net.file))["key"] == key
    assert build_repository(repo, max_batch=4, opt_batch=2) == paths
    assert len(trt.builds) == len(paths)  # every plan came from the cache
    build_repository(repo, max_batch=4, opt_batch=3)  # another tuning point rebuilds in place
    assert len(trt.builds) == 2 * len(paths)
    assert len(list((repo / "tensorrt").glob("*/*.plan"))) == len(paths)


@pytest.mark.parametrize("version,precision,network_flags,builder_flags", [
    ("10.0.1", "auto", 0, ["FP16"]),  # explicit batch is the default from 10.0
    ("8.6.1", "fp32", 1 << 0, []),  # before 10.0 ONNX needs EXPLICIT_BATCH
    ("9.2.0", "bf16", 1 << 0, ["BF16"]),
    ("11.0.0", "auto", 1 << 1, []),  # STRONGLY_TYPED (accepted, and the only mode, in 11)
])
def test_build_flags_follow_the_tensorrt_version(monkeypatch, tmp_path, version, precision, network_flags,
                                                 builder_flags):
    repo = make_fake_repo(tmp_path / "fake")
    trt = _fake_machine(monkeypatch, version)
    paths = build_repository(repo, max_batch=2, precision=precision)
    assert {b["network_flags"] for b in trt.builds} == {network_flags}
    assert all(b["builder_flags"] == builder_flags for b in trt.builds)
    assert all(f"trt{version}" in p.parent.name for p in paths)


def test_server_without_a_plan_for_this_machine_names_the_build_command(monkeypatch, tmp_path):
    from server.engines import tensorrt as server_trt

    repo = make_fake_repo(tmp_path / "fake")
    _fake_machine(monkeypatch, "10.13.0.35")
    build_repository(repo, max_batch=2)  # plans for an H100 ...
    monkeypatch.setattr(server_trt, "require_tensorrt", lambda: FakeTensorRT("10.13.0.35"))
    monkeypatch.setattr(server_trt, "gpu_identity", lambda device=0: ("NVIDIA L4", (8, 9)))  # ... served on an L4
    with pytest.raises(server_trt.EngineError, match="no TensorRT plan .* NVIDIA L4 .*kinetoscope export tensorrt"):
        create_engine("tensorrt", repo, "prior", "prior.onnx")


def test_the_server_can_ask_for_plans_of_one_max_batch(monkeypatch, tmp_path):
    """Settings.tensorrt_max_batch reaches the engine: plans of another max batch do not count."""
    from server.engines import tensorrt as server_trt

    repo = make_fake_repo(tmp_path / "fake")
    _fake_machine(monkeypatch, "10.13.0.35")
    build_repository(repo, max_batch=2)
    monkeypatch.setattr(server_trt, "require_tensorrt", lambda: FakeTensorRT("10.13.0.35"))
    monkeypatch.setattr(server_trt, "gpu_identity", lambda device=0: GPU)
    with pytest.raises(server_trt.EngineError, match="no TensorRT plan with max batch 4 .*--max-batch 4`"):
        create_engine("tensorrt", repo, "prior", "prior.onnx", plan_max_batch=4)


def test_the_server_refuses_plans_smaller_than_its_batches(monkeypatch, tmp_path):
    """A plan must take max_batch_size rows, twice that for the priors (guidance rows): refused at
    start-up, naming the fix, instead of failing every job of a full batch under load."""
    import server.runtime as runtime
    from server.settings import Settings

    repo = make_fake_repo(tmp_path / "fake")
    opened = []

    def plan(backend, repo, name, file, **kw):
        opened.append((name, kw["plan_max_batch"], kw["plan_precision"]))
        return types.SimpleNamespace(max_batch=16, run=None, set_names=lambda inputs, outputs: None)

    monkeypatch.setattr(runtime, "create_engine", plan)
    settings = Settings(model_repository=repo, backend="tensorrt", max_batch_size=16, tensorrt_max_batch=16,
                        tensorrt_precision="fp16")
    with pytest.raises(ValueError, match=r"prior: .* at most 16, .* 32 rows \(guidance doubles them\).*--max-batch 32"):
        runtime.load_runtime(settings)
    assert opened[0] == ("encoder", 16, "fp16")  # the settings reach the engine
    runtime.load_runtime(settings.model_copy(update={"max_batch_size": 8})).close()  # 16 rows fit


def test_export_tensorrt_command_refuses_a_precision_this_version_cannot_build(monkeypatch, tmp_path):
    from typer.testing import CliRunner

    from cli import app

    repo = make_fake_repo(tmp_path / "fake")
    _fake_machine(monkeypatch, "10.13.0.35")  # strongly typed: precision comes from the ONNX types
    result = CliRunner().invoke(app, ["export", "tensorrt", "--repo", str(repo), "--precision", "fp16"])
    assert result.exit_code == 2 and "error:" in result.output and "ONNX" in result.output, result.output
    result = CliRunner().invoke(app, ["export", "tensorrt", "--repo", str(repo), "--max-batch", "4",
                                      "--opt-batch", "3"])
    assert result.exit_code == 0, result.output
    keys = [json.loads(p.read_text()) for p in (repo / "tensorrt").glob("*/key.json")]
    assert keys and all(k["max_batch"] == 4 and k["opt_batch"] == 3 for k in keys)


# ---- With TensorRT and a GPU ----------------------------------------------------------------

def _need_tensorrt_gpu():
    pytest.importorskip("tensorrt", reason="TensorRT is not installed (pip install tensorrt)")
    if not _cuda_available():
        pytest.skip("no CUDA GPU (torch.cuda.is_available() is False)")
    if not (REAL_REPO / "manifest.json").is_file():
        pytest.skip("no exported model_repository/moving-digits (make serve / make test exports it)")


@pytest.fixture(scope="module")
def built_repo(tmp_path_factory) -> Path:
    """A copy of the real repository (ONNX files linked, not copied) with fp32 plans for batch 1..4."""
    _need_tensorrt_gpu()
    repo = tmp_path_factory.mktemp("trt_real") / "moving-digits"
    repo.mkdir()
    for f in REAL_REPO.iterdir():
        if f.is_file():
            (repo / f.name).symlink_to(f)
    build_repository(repo, max_batch=4, opt_batch=2, precision="fp32")
    return repo


def _sample_feeds(manifest: Manifest, name: str, batch: int, rng, past: int = 3, new: int = 2) -> dict:
    n, v = manifest.num_tokens, manifest.vocab_size
    t, h, w = manifest.token_grid
    if name == "encoder":
        return {"video": rng.random((batch, 3, manifest.window_frames, *manifest.base_size), dtype=np.float32)}
    if name == "decoder":
        return {"tokens": rng.integers(0, v, (batch, t, h, w))}
    if name == "prior":
        return {"tokens": rng.integers(0, v + 1, (batch, n)), "cond": np.full((batch, n), v),
                "state": np.zeros((batch, n), np.int64), "class_id": rng.integers(0, len(manifest.classes), batch)}
    if name == "ar_prior":
        a = manifest.ar
        cache = (a.num_layers, batch, a.num_heads, past, a.head_dim)
        return {"ids": rng.integers(0, v, (batch, new)), "cond": np.full((batch, new), v),
                "state": np.zeros((batch, new), np.int64),
                "past_key": rng.standard_normal(cache, dtype=np.float32),
                "past_value": rng.standard_normal(cache, dtype=np.float32)}
    stage = next(s for s in manifest.super_resolution if name == f"sr_{s.out_size[1]}x{s.out_size[0]}")
    return {"video": rng.random((batch, 3, manifest.window_frames, *stage.in_size), dtype=np.float32),
            "noise_level": np.full(batch, stage.noise_level, np.float32)}


def test_tensorrt_plans_match_onnxruntime_on_the_cpu(built_repo):
    import onnxruntime as ort

    from server.engines.tensorrt import TensorRTEngine

    manifest = load_manifest(built_repo)
    rng = np.random.default_rng(0)
    for name, net in manifest.networks().items():
        engine = TensorRTEngine(name, built_repo, net.file)
        engine.set_names(net.inputs, net.outputs)
        cpu = ort.InferenceSession(str(built_repo / net.file), providers=["CPUExecutionProvider"])
        cases = [dict(batch=3)] + ([dict(batch=2, past=0, new=5), dict(batch=1, past=7, new=1)]
                                   if name == "ar_prior" else [])
        for case in cases:
            feeds = _sample_feeds(manifest, name, rng=rng, **case)
            got = engine.run(feeds)
            want = dict(zip(net.outputs, cpu.run(net.outputs, feeds)))
            for k in net.outputs:
                assert got[k].shape == want[k].shape and got[k].dtype == want[k].dtype, (name, k)
                if np.issubdtype(want[k].dtype, np.integer):  # an LFQ bit near zero may flip
                    assert (got[k] == want[k]).mean() >= 0.99, (name, k)
                else:  # fp32 plan; TF32 where the GPU has it
                    scale = max(1.0, float(np.abs(want[k]).max()))
                    assert float(np.abs(got[k] - want[k]).max()) <= 2e-2 * scale, (name, k, case)
        with pytest.raises(Exception, match="rebuild with a larger --max-batch"):
            engine.run(_sample_feeds(manifest, name, batch=5, rng=rng))


def test_generation_pipeline_runs_on_the_tensorrt_backend(built_repo):
    from concurrent.futures import ThreadPoolExecutor

    from server.engines.tensorrt import TensorRTEngine
    from server.api.validation import validate_request
    from server.runtime import build_pipeline
    from server.settings import Settings

    manifest = load_manifest(built_repo)
    assert isinstance(create_engine("tensorrt", built_repo, "prior", manifest.prior.file), TensorRTEngine)
    with ThreadPoolExecutor(4) as executor:
        pipeline = build_pipeline(built_repo, manifest, Settings(backend="tensorrt", max_batch_size=2), executor)
        request = validate_request({"task": "class_conditional", "class_label": 3, "seed": 1,
                                    "sampler": {"method": "maskgit", "steps": 4}}, manifest, Settings())
        video = asyncio.run(pipeline.generate(request, None))
    h, w = manifest.base_size
    assert video.shape == (manifest.window_frames, h, w, 3) and video.dtype == np.uint8
    assert video.std() > 0  # a picture, not a blank
