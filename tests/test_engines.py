"""server/engines/: the backends register themselves, the Engine interface declares what the
runtime uses, and importing the package loads no backend library."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from server.engines import Engine, EngineError, backends, create_engine, register_backend
from server.engines.onnxruntime import OnnxRuntimeEngine
from server.engines.tensorrt import TensorRTEngine
from server.engines.torch import TorchEngine

ROOT = Path(__file__).resolve().parent.parent
# The modules that hold engines and call them (the brief of the interface).
CALLERS = ["server/runtime.py", "server/pipeline.py", "server/decoding.py", "server/benchmarks.py"]


def test_the_built_in_backends_register_themselves():
    assert backends() == ["onnxruntime", "tensorrt", "torch"]
    for name, cls in [("onnxruntime", OnnxRuntimeEngine), ("tensorrt", TensorRTEngine), ("torch", TorchEngine)]:
        assert issubclass(cls, Engine) and cls.backend == name
        assert not getattr(cls, "__abstractmethods__", None), f"{cls.__name__} leaves abstract methods"
    with pytest.raises(EngineError, match="unknown backend 'nope'; choose one of onnxruntime, tensorrt, torch"):
        create_engine("nope", ROOT, "prior", "prior.onnx")


def test_a_backend_name_is_taken_once():
    class Other(Engine):
        @classmethod
        def open(cls, repo, name, file, options):
            raise AssertionError("not opened")

        def run(self, feeds):
            return {}

    with pytest.raises(ValueError, match="'torch' is already registered by server.engines.torch.TorchEngine"):
        register_backend("torch")(Other)
    assert create_engine.__module__ == "server.engines.base" and backends() == ["onnxruntime", "tensorrt", "torch"]


def _engine_attributes(path: Path) -> set[str]:
    """Attributes read on anything named like an engine (`engine`, `engines[...]`, `self.engine`),
    and the names passed to getattr/hasattr on one."""

    def is_engine(node: ast.AST) -> bool:
        if isinstance(node, ast.Subscript):
            node = node.value
        name = node.attr if isinstance(node, ast.Attribute) else getattr(node, "id", "")
        return name in ("engine", "engines")

    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Attribute) and is_engine(node.value):
            found.add(node.attr)
        if (isinstance(node, ast.Call) and getattr(node.func, "id", "") in ("getattr", "hasattr")
                and len(node.args) >= 2 and is_engine(node.args[0]) and isinstance(node.args[1], ast.Constant)):
            found.add(node.args[1].value)
    return found


def test_the_interface_declares_everything_the_runtime_uses_on_an_engine():
    used = set().union(*(_engine_attributes(ROOT / p) for p in CALLERS))
    assert {"run", "set_names", "max_batch"} <= used, used  # the scan sees the calls it is meant to
    declared = set(dir(Engine)) | set(Engine.__annotations__)
    assert used <= declared, f"used on engines but not declared by Engine: {sorted(used - declared)}"


def test_importing_the_engines_loads_no_backend_library():
    code = ("import sys, server.engines, server.engines.base; "
            "print(sorted(m for m in ('torch', 'onnxruntime', 'tensorrt') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_onnxruntime_takes_the_manifests_names_and_refuses_others(tmp_path):
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Sub", ["a", "b"], ["difference"]), helper.make_node("Add", ["a", "b"], ["total"])], "g",
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, ["batch"]) for n in ("a", "b")],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, ["batch"]) for n in ("difference", "total")])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), str(tmp_path / "net.onnx"))

    engine = create_engine("onnxruntime", tmp_path, "net", "net.onnx", threads=1)
    assert isinstance(engine, OnnxRuntimeEngine) and engine.max_batch is None
    engine.set_names(["b", "a"], ["total", "difference"])  # the manifest's order
    assert engine.output_names == ["total", "difference"]
    out = engine.run({"a": np.array([3.0]), "b": np.array([1.0])})
    assert list(out) == ["total", "difference"] and out["total"][0] == 4.0 and out["difference"][0] == 2.0
    with pytest.raises(EngineError, match=r"net: the onnxruntime engine has inputs .* the manifest says \['a', 'c'\]"):
        engine.set_names(["a", "c"], ["total", "difference"])


def test_onnxruntime_thread_spinning_is_a_setting_that_reaches_the_session(tmp_path):
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    from server.runtime import build_pipeline  # noqa: F401  (the settings field is read there)
    from server.settings import Settings

    graph = helper.make_graph([helper.make_node("Neg", ["a"], ["b"])], "g",
                              [helper.make_tensor_value_info("a", TensorProto.FLOAT, ["batch"])],
                              [helper.make_tensor_value_info("b", TensorProto.FLOAT, ["batch"])])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), str(tmp_path / "net.onnx"))
    assert Settings(model_repository=tmp_path).onnx_thread_spinning is False  # off unless asked for
    for spinning, entry in ((False, "0"), (True, "1")):
        engine = create_engine("onnxruntime", tmp_path, "net", "net.onnx", threads=1, spinning=spinning)
        assert engine.session.get_session_options().get_session_config_entry("session.intra_op.allow_spinning") == entry
    with pytest.raises(TypeError):
        create_engine("onnxruntime", tmp_path, "net", "net.onnx", spinnning=True)  # a misspelt option is an error
