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
