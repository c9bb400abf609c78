"""The FLOP count behind the roofline figures, on a tiny graph counted by hand, and the probe."""
from __future__ import annotations

import onnx
import pytest
from onnx import TensorProto, helper

from cli.bench.roofline import graph_flops, matmul_peak


def test_a_tiny_graph_is_counted_as_by_hand(tmp_path):
    w = helper.make_tensor("w", TensorProto.FLOAT, [3, 2, 3, 3], [0.0] * 54)  # Conv: Cout 3, Cin 2, 3x3
    g = helper.make_tensor("g", TensorProto.FLOAT, [5, 4], [0.0] * 20)
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["y"], pads=[1, 1, 1, 1]),  # (batch, 3, 4, 4)
        helper.make_node("Flatten", ["y"], ["f"], axis=2),  # (batch, 3, 16)
        helper.make_node("MatMul", ["f", "m"], ["z"]),  # (batch, 3, 16) x (16, 5) -> (batch, 3, 5)
        helper.make_node("Flatten", ["z"], ["zz"], axis=2),
        helper.make_node("Relu", ["zz"], ["r"]),  # not counted: element-wise
        helper.make_node("Gemm", ["q", "g"], ["out"]),  # (2, 5) x (5, 4)
    ]
    graph = helper.make_graph(nodes, "tiny",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 2, 4, 4]),
                               helper.make_tensor_value_info("m", TensorProto.FLOAT, [16, 5]),
                               helper.make_tensor_value_info("q", TensorProto.FLOAT, [2, 5])],
                              [helper.make_tensor_value_info("r", TensorProto.FLOAT, None),
                               helper.make_tensor_value_info("out", TensorProto.FLOAT, None)], initializer=[w, g])
    path = tmp_path / "tiny.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    conv = 2 * (3 * 4 * 4) * (2 * 3 * 3)  # 2 x output elements x (Cin x kernel)
    matmul = 2 * (3 * 5) * 16  # 2 x output elements x inner dimension
    gemm = 2 * (2 * 4) * 5
    assert graph_flops(path, {"batch": 1}) == (conv + matmul + gemm, [])
    assert graph_flops(path, {"batch": 2})[0] == 2 * (conv + matmul) + gemm
    with pytest.raises(ValueError, match="batch"):
        graph_flops(path, {})


def test_the_matmul_probe_measures_a_positive_rate():
    assert matmul_peak(threads=1, n=128, repeat=3) > 1e8  # any CPU does 0.1 GFLOP/s


def test_a_requests_flops_follow_its_sampler_windows_and_size():
    """RequestWork counts what the server runs for a body: the sampler the model's defaults
    resolve to, guidance's second row, the encoder of given frames, windows and SR stages."""
    from pathlib import Path

    from cli.bench.roofline import RequestWork
    from server.manifest import load_manifest

    repo = Path(__file__).resolve().parents[1] / "model_repository" / "moving-digits"
    if not (repo / "manifest.json").is_file():
        pytest.skip("no exported demo model repository (make model)")
    m = load_manifest(repo, verify=False)
    work = RequestWork(repo, m)
    per = {name: graph_flops(repo / f"{name}.onnx", {"batch": 1})[0] for name in ("prior", "decoder", "encoder")}
    p, d, e = per["prior"], per["decoder"], per["encoder"]
    maskgit = {"method": "maskgit", "steps": 12, "guidance_scale": 0}
    assert work.flops({"task": "class_conditional", "class_label": 1, "sampler": maskgit}) == 12 * p + d
    assert work.flops({"task": "class_conditional", "class_label": 1,
                       "sampler": {**maskgit, "guidance_scale": 3}}) == 24 * p + d  # the null-class row
    # frame prediction: the given frames go through the encoder; guidance without a class adds nothing
    assert work.flops({"task": "frame_prediction", "input_video": b"x",
                       "sampler": {**maskgit, "guidance_scale": 3}}) == 12 * p + d + e
    # 24 frames: two windows, the second conditioned on the first's last frames (one more encoder call)
    assert work.flops({"task": "class_conditional", "class_label": 1, "num_frames": 24,
                       "sampler": maskgit}) == 2 * (12 * p + d) + e
    # 128x128: both super-resolution stages once
    sr = sum(graph_flops(repo / s.file, {"batch": 1})[0] for s in m.super_resolution)
    assert work.flops({"task": "class_conditional", "class_label": 1, "size": "128x128",
                       "sampler": maskgit}) == 12 * p + d + sr
    # the model's own default for the task (autoregressive with guidance for class_conditional)
    ar = graph_flops(repo / "ar_prior.onnx", {"batch": 1, "new": m.num_tokens, "past": 0})[0]
    assert work.flops({"task": "class_conditional", "class_label": 1}) == 2 * ar + d


def test_the_tasks_benchmark_reads_as_shares_of_the_peak():
    from pathlib import Path

    from cli.bench.roofline import tasks_roofline

    repo = Path(__file__).resolve().parents[1] / "model_repository"
    if not (repo / "moving-digits" / "manifest.json").is_file():
        pytest.skip("no exported demo model repository (make model)")
    p = graph_flops(repo / "moving-digits" / "prior.onnx", {"batch": 1})[0]
    d = graph_flops(repo / "moving-digits" / "decoder.onnx", {"batch": 1})[0]
    text = tasks_roofline(repo, [{"case": "class_conditional", "backend": "onnxruntime", "seconds_per_clip": 2.0},
                                 {"case": "class_conditional", "backend": "torch", "seconds_per_clip": 2.0}])
    [row] = [line for line in text.splitlines() if line.startswith("| class_conditional |")]  # onnxruntime only
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert float(cells[1]) == pytest.approx((12 * p + d) / 1e9, abs=0.005)
    assert float(cells[2]) == pytest.approx((12 * p + d) / 2.0 / 1e9, abs=0.05)
    assert cells[3].endswith("%") and 0 < int(cells[3][:-1]) <= 100


def test_the_serving_benchmark_sends_the_in_process_runs_sampler():
    """bench-runtime serving compares HTTP with the in-process pipeline (SamplerOptions()): its
    requests must decode with exactly that sampler, not the model's default for the task."""
    from pathlib import Path

    from cli.bench.serving import sampler_fields
    from server.api.validation import validate_request
    from server.manifest import load_manifest
    from server.samplers import SamplerOptions
    from server.settings import Settings

    repo = Path(__file__).resolve().parents[1] / "model_repository" / "moving-digits"
    if not (repo / "manifest.json").is_file():
        pytest.skip("no exported demo model repository (make model)")
    m = load_manifest(repo, verify=False)
    body = {"task": "class_conditional", "class_label": 3, **sampler_fields(SamplerOptions())}
    assert validate_request(body, m, Settings(model_repository=repo.parent)).sampler == SamplerOptions()
    ar = {"task": "class_conditional", "class_label": 3, **sampler_fields(SamplerOptions(method="autoregressive"))}
    assert validate_request(ar, m, Settings(model_repository=repo.parent)).sampler == SamplerOptions(method="autoregressive")
