"""The GPU benchmark (scripts/gpu-bench.sh, cli/bench/gpu.py) on the CPU, and the torch engine's
options it measures (server/engines/torch.py: bf16 autocast, torch.compile, CUDA graphs, batches
padded to powers of two).

The smoke run goes through the script's whole code path with `--device cpu` and a tiny load:
the model repository assembled from the committed bundle and its .pt2 programs exported, the
matmul probe, the FLOP count, two `kinetoscope serve` processes on the torch backend and
`kinetoscope bench` against them, the JSON and the table. Nothing here depends on a timing: only
that the fields are there, the counts add up and the figures are positive.
"""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from cli.bench import gpu  # noqa: E402
from server.engines.base import EngineOptions, create_engine  # noqa: E402
from server.engines.torch import TorchEngine, bucket  # noqa: E402
from server.settings import Settings  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
NETWORKS = ["encoder", "decoder", "prior", "ar_prior", "sr_64x64", "sr_128x128"]


# -- the torch engine's options -------------------------------------------------------------------

class BatchNet(torch.nn.Module):
    """ids (B, 4) int64, x (B, 8) float -> logits (B, 16) float, argmax (B,) int64."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.emb = torch.nn.Embedding(16, 8)
        self.lin = torch.nn.Linear(8, 16)

    def forward(self, ids, x):
        logits = self.lin(self.emb(ids).mean(1) + x)
        return logits, logits.argmax(-1)


class CacheNet(torch.nn.Module):
    """Like the autoregressive prior: ids (B, n) and a cache (L, B, P, 8) that grows by n."""

    def forward(self, ids, past):
        new = ids.float()[None, :, :, None].expand(past.shape[0], -1, -1, past.shape[-1])
        return torch.cat([past, new], dim=2)


@pytest.fixture(scope="module")
def programs(tmp_path_factory):
    from torch.export import Dim

    root = tmp_path_factory.mktemp("programs")
    batch = Dim("batch", min=1, max=4096)
    ids, x = torch.randint(0, 16, (2, 4)), torch.randn(2, 8)
    torch.export.save(torch.export.export(BatchNet().eval(), (ids, x), dynamic_shapes=({0: batch}, {0: batch})),
                      str(root / "batch.pt2"))
    new, past = Dim("new", min=1, max=4096), Dim("past", min=0, max=4096)
    args = (torch.zeros(2, 3, dtype=torch.long), torch.zeros(2, 2, 5, 8))
    torch.export.save(torch.export.export(CacheNet(), args, dynamic_shapes=({0: batch, 1: new}, {1: batch, 2: past})),
                      str(root / "cache.pt2"))
    return root


def feeds(rows: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(rows)
    return {"ids": rng.integers(0, 16, (rows, 4)).astype(np.int32), "x": rng.standard_normal((rows, 8))}


def open_batch_net(programs, **options) -> TorchEngine:
    engine = TorchEngine("batch", programs / "batch.pt2", device="cpu", **options)
    engine.set_names(["ids", "x"], ["logits", "argmax"])
    return engine


def test_bf16_comes_back_as_float32_and_close_to_fp32(programs):
    fp32, bf16 = open_batch_net(programs), open_batch_net(programs, dtype="bf16")
    a, b = fp32.run(feeds(3)), bf16.run(feeds(3))
    assert b["logits"].dtype == np.float32 and a["logits"].dtype == np.float32  # never bfloat16 numpy
    assert b["argmax"].dtype == a["argmax"].dtype == np.int64
    assert b["logits"].shape == a["logits"].shape == (3, 16)
    assert not np.array_equal(a["logits"], b["logits"])  # bf16 did run
    np.testing.assert_allclose(b["logits"], a["logits"], atol=0.05, rtol=0.05)
    assert bf16.describe()["dtype"] == "bf16" and fp32.describe()["dtype"] == "fp32"


def test_default_options_are_todays_engine(programs):
    engine = open_batch_net(programs)
    assert EngineOptions().dtype == "fp32" and EngineOptions().compile_mode is None and not EngineOptions().cuda_graphs
    assert (engine.dtype, engine.compile_mode, engine.cuda_graphs, engine.pad_batches) == ("fp32", None, False, False)
    assert engine.forward is engine.module and engine.batch_only


def test_batches_pad_to_powers_of_two_and_the_padding_is_dropped(programs):
    assert [bucket(n) for n in (1, 2, 3, 4, 5, 16, 17, 64, 65)] == [1, 2, 4, 4, 8, 16, 32, 64, 128]
    plain, padded = open_batch_net(programs), open_batch_net(programs)
    padded.pad_batches = True  # what compile and CUDA graphs turn on
    seen = []
    call = padded._call
    padded._call = lambda args: seen.append(int(args[0].shape[0])) or call(args)
    for rows in (1, 3, 5):
        want, got = plain.run(feeds(rows)), padded.run(feeds(rows))
        assert got["logits"].shape == (rows, 16)
        np.testing.assert_allclose(got["logits"], want["logits"], atol=1e-6)
        np.testing.assert_array_equal(got["argmax"], want["argmax"])
    assert seen == [1, 4, 8]


def test_compile_applies_to_batch_only_networks(programs, monkeypatch):
    """torch.compile itself is replaced by a recorder: a real inductor compile of even this net
    takes tens of seconds on two CPU cores (a C++ toolchain run per graph), and what is checked
    here is which networks get compiled, that batches are then padded, and that outputs stay right."""
    compiled = []

    def fake_compile(module, mode=None, **kw):
        compiled.append(mode)
        return module

    monkeypatch.setattr(torch, "compile", fake_compile)
    engine = open_batch_net(programs, compile_mode="default")
    assert compiled == ["default"] and engine.compile_mode == "default" and engine.pad_batches
    np.testing.assert_allclose(engine.run(feeds(3))["logits"], open_batch_net(programs).run(feeds(3))["logits"], atol=1e-6)

    cache = TorchEngine("cache", programs / "cache.pt2", device="cpu", compile_mode="default", cuda_graphs=True)
    assert compiled == ["default"]  # the growing cache: never compiled, never captured
    assert not cache.batch_only and cache.compile_mode is None and not cache.cuda_graphs and not cache.pad_batches
    cache.set_names(["ids", "past"], ["present"])
    out = cache.run({"ids": np.ones((3, 2), np.int64), "past": np.zeros((2, 3, 4, 8), np.float32)})
    assert out["present"].shape == (2, 3, 6, 8)


@pytest.mark.skipif(not (os.environ.get("KINETOSCOPE_TEST_COMPILE") or torch.cuda.is_available()),
                    reason="a real torch.compile (inductor) of even this 2-layer net took 26 s on the 2-core CPU "
                           "(a C++ compile per graph, then a second one when the batch turns dynamic): too slow "
                           "for every run; KINETOSCOPE_TEST_COMPILE=1 runs it here, a GPU machine always")
def test_a_real_compile_matches_eager(programs):
    device = "cuda" if torch.cuda.is_available() else "cpu"
    eager = TorchEngine("batch", programs / "batch.pt2", device=device)
    compiled = TorchEngine("batch", programs / "batch.pt2", device=device, compile_mode="default", dtype="fp32")
    for engine in (eager, compiled):
        engine.set_names(["ids", "x"], ["logits", "argmax"])
    for rows in (1, 3, 5, 2):
        np.testing.assert_allclose(compiled.run(feeds(rows))["logits"], eager.run(feeds(rows))["logits"], atol=1e-5)
    assert compiled.compile_mode == "default"  # it did not fall back to eager


def test_cuda_graphs_need_cuda_and_refuse_compiles_with_graphs_of_their_own(programs):
    engine = open_batch_net(programs, cuda_graphs=True)  # on the CPU: off, with a warning
    assert not engine.cuda_graphs and not engine.pad_batches
    from server.engines.base import EngineError

    with pytest.raises(EngineError, match="makes CUDA graphs of its own"):
        open_batch_net(programs, compile_mode="reduce-overhead", cuda_graphs=True)
    with pytest.raises(EngineError, match="torch dtype must be one of fp32, bf16"):
        open_batch_net(programs, dtype="fp16")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need an NVIDIA GPU")
def test_cuda_graphs_replay_what_eager_computes(programs):
    eager = TorchEngine("batch", programs / "batch.pt2", device="cuda")
    graphed = TorchEngine("batch", programs / "batch.pt2", device="cuda", cuda_graphs=True)
    for engine in (eager, graphed):
        engine.set_names(["ids", "x"], ["logits", "argmax"])
    for rows in (1, 3, 3, 5):
        np.testing.assert_allclose(graphed.run(feeds(rows))["logits"], eager.run(feeds(rows))["logits"], atol=1e-5)
    assert graphed.describe()["graphs_captured"] == [1, 4, 8]


def test_the_settings_reach_the_engines(monkeypatch):
    import server.runtime as runtime
    from server.manifest import load_manifest

    settings = Settings(backend="torch", torch_device="cpu", torch_dtype="bf16", torch_compile="default",
                        torch_cuda_graphs=True)
    assert Settings().torch_dtype == "fp32" and Settings().torch_compile is None and not Settings().torch_cuda_graphs
    assert Settings(torch_compile="none").torch_compile is None
    with pytest.raises(ValueError, match="torch_compile is one of"):
        Settings(torch_compile="fast")
    opened = []

    def engine(backend, repo, name, file, **kw):
        opened.append((backend, name, kw["device"], kw["dtype"], kw["compile_mode"], kw["cuda_graphs"]))
        return types.SimpleNamespace(max_batch=None, run=None, set_names=lambda inputs, outputs: None)

    monkeypatch.setattr(runtime, "create_engine", engine)
    bundle = ROOT / "models" / "checkpoints" / "demo" / "onnx"
    runtime.build_pipeline(bundle, load_manifest(bundle, verify=False), settings, executor=None)
    assert opened and all(o == ("torch", o[1], "cpu", "bf16", "default", True) for o in opened)
    assert {o[1] for o in opened} == set(NETWORKS)


def test_create_engine_passes_the_torch_options(programs):
    engine = create_engine("torch", programs, "batch", "batch.onnx", device="cpu", dtype="bf16")
    assert isinstance(engine, TorchEngine) and engine.dtype == "bf16" and engine.device.type == "cpu"


# -- the script's pieces ----------------------------------------------------------------------------

def test_datasheet_peaks_by_device_name():
    assert gpu.datasheet_bf16_flops("NVIDIA H200") == 989e12
    assert gpu.datasheet_bf16_flops("NVIDIA H100 80GB HBM3") == 989e12
    assert gpu.datasheet_bf16_flops("NVIDIA H100 PCIe") == 756e12
    assert gpu.datasheet_bf16_flops("NVIDIA L40S") == 362e12  # not the L4's
    assert gpu.datasheet_bf16_flops("NVIDIA A100-SXM4-80GB") == 312e12
    assert gpu.datasheet_bf16_flops("Some Other Card") is None


def test_the_full_matrix_covers_the_issue():
    configs = gpu.matrix("full", [1, 16, 64])
    assert {c.dtype for c in configs} == {"bf16", "fp32"} and {c.batching for c in configs} == {True, False}
    assert {c.engine for c in configs} >= {"eager", "CUDA graphs", "torch.compile default"}
    first = configs[0]
    assert first.loads == {"maskgit": [1, 16, 64], "autoregressive": [1, 16, 64]}
    off = next(c for c in configs if not c.batching)
    assert off.loads["maskgit"] == [1, 16, 64] and off.loads["autoregressive"] == [1, 16]
    with pytest.raises(ValueError):
        gpu.matrix("huge", [1])


def test_engine_fallbacks_are_read_from_the_servers_log(tmp_path):
    log = tmp_path / "server.log"
    log.write_text("ts=1 level=info logger=uvicorn msg='started'\n"
                   "ts=2 level=warning logger=server.engines.torch msg='prior: CUDA graph capture at batch 4 failed "
                   "(RuntimeError: x); running eagerly'\n" * 2)
    assert gpu.engine_warnings(log) == ["prior: CUDA graph capture at batch 4 failed (RuntimeError: x); running eagerly"]
    assert gpu.engine_warnings(tmp_path / "absent.log") == []


def test_the_wheel_list_is_the_serving_closure_without_what_the_gpu_has():
    from cli.bench.wheels import wheel_pins

    names = {pin.split("==")[0] for pin in wheel_pins("3.12")}
    assert {"fastapi", "uvicorn", "pydantic", "pydantic-core", "pydantic-settings", "starlette", "httpx",
            "httpx-sse", "sse-starlette", "fastapi-offline", "python-multipart", "typer", "redis"} <= names
    assert not names & {"numpy", "torch", "onnxruntime", "pillow", "safetensors", "imageio-ffmpeg"}


# -- the smoke run ----------------------------------------------------------------------------------

@pytest.mark.slow
def test_the_script_runs_on_the_cpu_and_writes_the_json_and_the_table(tmp_path):
    """scripts/gpu-bench.sh --device cpu, smoke matrix: two servers (fp32 with batching; bf16
    without), MaskGIT at 2 steps and the autoregressive sampler, one request each, GIF output
    (what a GPU machine without imageio-ffmpeg's binary gets)."""
    out = tmp_path / "out"
    env = {**os.environ, "PYTHON": sys.executable}
    proc = subprocess.run(
        ["bash", str(ROOT / "scripts" / "gpu-bench.sh"), "--device", "cpu", "--matrix", "smoke", "--concurrency", "1",
         "--steps", "2", "--rounds", "1", "--min-requests", "1", "--warmup-requests", "0", "--output-format", "gif",
         "--repo", str(tmp_path / "repo"), "--out", str(out)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    result = json.loads((out / "gpu-bench.json").read_text())

    assert result["kind"] == "kinetoscope gpu-bench" and result["machine"]["device"] == "cpu"
    assert result["prepare"]["assembled"] and sorted(result["prepare"]["exported"]) == sorted(NETWORKS)
    assert all((tmp_path / "repo" / "moving-digits" / f"{n}.pt2").is_file() for n in NETWORKS)
    assert result["peak"]["measured"]["flops_per_second"] > 0 and result["peak"]["datasheet_bf16_flops_per_second"] is None
    flops = result["flops_per_clip"]
    assert flops["maskgit"] > 0 and flops["autoregressive"] > 0
    assert result["settings"]["output_format"] == "gif" and result["settings"]["steps"] == 2

    assert [(c["label"], c["status"]) for c in result["configs"]] == [("fp32 eager", "ok"),
                                                                      ("bf16 eager, batching off", "ok")]
    assert all(c["startup_seconds"] > 0 and c["engine_warnings"] == [] for c in result["configs"])
    runs = result["runs"]
    assert [(r["config"], r["sampler"], r["concurrency"]) for r in runs] == [
        ("fp32 eager", "maskgit", 1), ("fp32 eager", "autoregressive", 1), ("bf16 eager, batching off", "maskgit", 1)]
    for run in runs:
        assert run["requests"] == run["completed"] == 1 and run["errors"] == 0, run
        assert run["videos_per_second"] > 0 and run["latency_p50_s"] > 0
        assert run["achieved_flops_per_second"] > 0 and math.isfinite(run["mfu_measured_peak"]) and run["mfu_measured_peak"] > 0
        assert run["mfu_datasheet_peak"] is None  # no datasheet figure for a CPU
        net = "prior" if run["sampler"] == "maskgit" else "ar_prior"
        assert run["mean_batch_size"][net] == 1.0  # one request at a time
    assert runs[0]["dtype"] == "fp32" and runs[2]["dtype"] == "bf16" and runs[2]["batching"] is False

    table = (out / "gpu-bench.md").read_text()
    assert "| configuration | engine | dtype | batching | sampler |" in table
    assert len([line for line in table.splitlines() if line.startswith("| fp32 eager") or line.startswith("| bf16 eager")]) == 3
    assert table.strip() in proc.stdout  # printed too
