"""ONNX Runtime engine: the CPU fallback, and the TensorRT / CUDA execution providers when the
installed onnxruntime build has them (chosen in that order, then CPU)."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from server.engines.base import Engine, EngineError, EngineOptions, check_feeds, register_backend

PROVIDER_ORDER = ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")


def choose_providers(available: list[str]) -> list[str]:
    """The preferred providers among those available, best first; CPU always last."""
    chosen = [p for p in PROVIDER_ORDER if p in available]
    return chosen if "CPUExecutionProvider" in chosen else chosen + ["CPUExecutionProvider"]


def default_threads() -> int:
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1))


@register_backend("onnxruntime")
class OnnxRuntimeEngine(Engine):
    @classmethod
    def open(cls, repo: Path, name: str, file: str, options: EngineOptions) -> "OnnxRuntimeEngine":
        return cls(name, repo / file, threads=options.threads, providers=options.providers, spinning=options.spinning)

    def __init__(self, name: str, path: Path, *, threads: int = 0, providers: list[str] | None = None,
                 spinning: bool = False):
        import onnxruntime as ort

        if not path.is_file():
            raise EngineError(f"{name}: no ONNX file at {path}")
        opts = ort.SessionOptions()
        # Several sessions share the process (encoder, prior, decoder, SR stages), and the
        # batching queues may run two of them at once: busy-waiting worker threads would steal
        # the cores from each other, so by default threads sleep when idle. Spinning (setting
        # onnx_thread_spinning) saves the wake-up between ops: faster on a machine the server
        # has to itself, slower when anything else wants the cores (measured, BENCHMARKS.md).
        opts.intra_op_num_threads = threads or default_threads()
        opts.inter_op_num_threads = 1
        opts.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
        opts.add_session_config_entry("session.inter_op.allow_spinning", "0")
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.name = name
        # onnxruntime-gpu lists the TensorRT provider even where TensorRT's libraries are missing;
        # `providers` (setting onnx_providers) lets a deployment name the ones it really has.
        self.providers = list(providers) if providers else choose_providers(ort.get_available_providers())
        self.session = ort.InferenceSession(str(path), sess_options=opts, providers=self.providers)
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.output_names = [o.name for o in self.session.get_outputs()]
        self._types = {i.name: (np.int64 if "int64" in i.type else np.float32) for i in self.session.get_inputs()}

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        check_feeds(self.name, self.input_names, feeds)
        inputs = {k: np.ascontiguousarray(feeds[k], dtype=self._types[k]) for k in self.input_names}
        outputs = self.session.run(self.output_names, inputs)
        return dict(zip(self.output_names, outputs))
