"""The one narrow interface every network runs through: feeds in, outputs out.

Everything above an engine (samplers, batching, pipelines) is numpy and plain Python, so it runs
the same on every backend. Implementations: ONNX Runtime (`onnxruntime.py`, the CPU fallback
every test runs on, and the TensorRT / CUDA execution providers where installed), native
TensorRT plans (`tensorrt.py`) and PyTorch exported programs (`torch.py`).
"""
from __future__ import annotations

from pathlib import Path
from typing import Protocol

import numpy as np

BACKENDS = ("onnxruntime", "tensorrt", "torch")


class Engine(Protocol):
    name: str
    input_names: list[str]
    output_names: list[str]

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Runs the network on one batch; every array has the batch as its leading dimension
        (the KV cache of the autoregressive prior has it second, as exported)."""
        ...


class EngineError(RuntimeError):
    pass


def check_feeds(name: str, expected: list[str], feeds: dict[str, np.ndarray]) -> None:
    missing = set(expected) - set(feeds)
    if missing:
        raise EngineError(f"{name}: missing inputs {sorted(missing)}")


def create_engine(backend: str, repo: Path, name: str, file: str, *, threads: int = 0, device: str = "auto",
                  providers: list[str] | None = None, plan_max_batch: int | None = None,
                  plan_precision: str | None = None) -> Engine:
    """Opens network `name` of a model repository with the chosen backend. `plan_max_batch`,
    `plan_precision` (TensorRT): use the plans built with this max batch / precision label;
    default the largest max batch built, any precision."""
    if backend == "onnxruntime":
        from server.engines.onnxruntime import OnnxRuntimeEngine

        return OnnxRuntimeEngine(name, repo / file, threads=threads, providers=providers)
    if backend == "torch":
        from server.engines.torch import TorchEngine  # imports torch only when chosen

        return TorchEngine(name, repo / Path(file).with_suffix(".pt2"), device=device)
    if backend == "tensorrt":
        from server.engines.tensorrt import TensorRTEngine

        return TensorRTEngine(name, repo, file, max_batch=plan_max_batch, precision=plan_precision)
    raise EngineError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
