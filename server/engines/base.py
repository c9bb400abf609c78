"""The one narrow interface every network runs through: feeds in, outputs out.

Everything above an engine (samplers, batching, pipelines) is numpy and plain Python, so it runs
the same on every backend. Implementations: ONNX Runtime (`onnxruntime.py`, the CPU fallback
every test runs on, and the TensorRT / CUDA execution providers where installed), native
TensorRT plans (`tensorrt.py`) and PyTorch exported programs (`torch.py`).

Each backend registers its engine class here with `@register_backend("<name>")`; this module
imports none of them (imports point from the backends to it), and `server/engines/__init__.py`
imports the built-in ones so that they are registered before anyone can call `create_engine`.
A backend module must stay cheap to import: its heavy library (onnxruntime, torch, tensorrt) is
imported when an engine is opened.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, ClassVar, TypeVar

import numpy as np


class EngineError(RuntimeError):
    pass


@dataclass(frozen=True)
class EngineOptions:
    """Settings that open an engine; each backend reads the ones it has."""

    threads: int = 0  # onnxruntime: intra-op threads (0: one per core)
    device: str = "auto"  # torch: "auto" (CUDA when there), "cpu", "cuda", "cuda:N"
    providers: list[str] | None = None  # onnxruntime: execution providers, best first (None: choose)
    plan_max_batch: int | None = None  # tensorrt: the plans built with this max batch (None: the largest)
    plan_precision: str | None = None  # tensorrt: the plans of this precision label (None: any)
    dtype: str = "fp32"  # torch: "fp32", or "bf16" (autocast; float outputs still come back float32)
    compile_mode: str | None = None  # torch: torch.compile mode of the batch-only networks (None: eager)
    cuda_graphs: bool = False  # torch on CUDA: capture the batch-only networks per batch bucket and replay
    spinning: bool = False  # onnxruntime: intra-op threads spin between parallel sections instead of sleeping


class Engine(ABC):
    """One network of a model repository, opened on one backend.

    What the runtime uses: `open` (through `create_engine`), `set_names` once after opening,
    `max_batch` at start-up, then `run` from the batching queues' threads (one call at a time
    per engine)."""

    backend: ClassVar[str]  # set by register_backend
    name: str  # the network: encoder, decoder, prior, ar_prior, sr_WxH
    input_names: list[str]
    output_names: list[str]
    # The largest batch the engine takes (a TensorRT plan's profile), or None for no limit: the
    # runtime refuses at start-up a max_batch_size that could send more rows.
    max_batch: int | None = None

    @classmethod
    @abstractmethod
    def open(cls, repo: Path, name: str, file: str, options: EngineOptions) -> "Engine":
        """Opens network `name`, whose ONNX file is `repo / file`, with `options`."""

    @abstractmethod
    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Runs the network on one batch; every array has the batch as its leading dimension
        (the KV cache of the autoregressive prior has it second, as exported)."""

    def set_names(self, inputs: list[str], outputs: list[str]) -> None:
        """Takes the manifest's input and output names, in the manifest's order. By default they
        must be the graph's own names; a backend whose files keep positions only (exported
        programs) overrides this to adopt them."""
        if set(inputs) != set(self.input_names) or set(outputs) != set(self.output_names):
            raise EngineError(f"{self.name}: the {self.backend} engine has inputs {self.input_names} and outputs "
                              f"{self.output_names}, the manifest says {list(inputs)} and {list(outputs)}")
        self.input_names, self.output_names = list(inputs), list(outputs)


def check_feeds(name: str, expected: list[str], feeds: dict[str, np.ndarray]) -> None:
    missing = set(expected) - set(feeds)
    if missing:
        raise EngineError(f"{name}: missing inputs {sorted(missing)}")


E = TypeVar("E", bound=type[Engine])
_BACKENDS: dict[str, type[Engine]] = {}


def register_backend(backend: str) -> Callable[[E], E]:
    """Class decorator: makes an Engine subclass the implementation of `backend`."""
    def register(cls: E) -> E:
        other = _BACKENDS.get(backend)
        if other is not None and other is not cls:
            raise ValueError(f"backend {backend!r} is already registered by {other.__module__}.{other.__qualname__}")
        cls.backend = backend
        _BACKENDS[backend] = cls
        return cls
    return register


def backends() -> list[str]:
    """The registered backend names, sorted."""
    return sorted(_BACKENDS)


def create_engine(backend: str, repo: Path, name: str, file: str, **options) -> Engine:
    """Opens network `name` of a model repository with the chosen backend. `options`: the fields
    of EngineOptions (each backend reads its own; the defaults are each backend's plain run)."""
    cls = _BACKENDS.get(backend)
    if cls is None:
        raise EngineError(f"unknown backend {backend!r}; choose one of {', '.join(backends())}")
    options = EngineOptions(**options)
    return cls.open(Path(repo), name, file, options)
