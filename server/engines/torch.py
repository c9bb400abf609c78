"""PyTorch engine for GPUs without TensorRT: runs the `torch.export` programs that
`kinetoscope export onnx` writes beside each ONNX file (`<name>.pt2`), so it needs no model code
from `models/`. Imported only when the torch backend is chosen.

Options (the `torch_*` settings, through EngineOptions); the defaults run every program eagerly
in float32, as this engine always did:
- dtype "bf16": every call runs under bfloat16 autocast (matrix products and convolutions in
  bf16, reductions and softmax in fp32, as autocast decides); float outputs come back as float32
  numpy arrays whatever the autocast made of them, so nothing above the engine changes.
- compile_mode: `torch.compile(mode=...)` of the programs whose only dynamic dimension is the
  batch ("default", "reduce-overhead", "max-autotune", ...); compiled on the first call.
- cuda_graphs (CUDA only): each such program is captured once per batch bucket into a CUDA
  graph and replayed, which removes the per-kernel launch cost that dominates small batches.
With compile or graphs on, a batch is padded up to a power of two (its first row repeated, the
padding's outputs dropped), so that at most log2(max batch) + 1 shapes are compiled or captured.
The autoregressive prior, whose KV cache grows by one position per call (a new shape every
call), always runs eagerly: a graph or compiled shape per cache length would cost more than it saves.
"""
from __future__ import annotations

import contextlib
import logging
import threading
from pathlib import Path

import numpy as np

from server.engines.base import Engine, EngineError, EngineOptions, check_feeds, register_backend

log = logging.getLogger(__name__)

DTYPES = ("fp32", "bf16")
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
_CAPTURE_LOCK = threading.Lock()  # one CUDA graph capture at a time in the process


def bucket(rows: int) -> int:
    """The power of two a batch of `rows` is padded to when shapes are compiled or captured."""
    return 1 << max(0, int(rows) - 1).bit_length()


@register_backend("torch")
class TorchEngine(Engine):
    @classmethod
    def open(cls, repo: Path, name: str, file: str, options: EngineOptions) -> "TorchEngine":
        return cls(name, repo / Path(file).with_suffix(".pt2"), device=options.device, dtype=options.dtype,
                   compile_mode=options.compile_mode, cuda_graphs=options.cuda_graphs)

    def __init__(self, name: str, path: Path, *, device: str = "auto", dtype: str = "fp32",
                 compile_mode: str | None = None, cuda_graphs: bool = False):
        import torch

        if not path.is_file():
            raise EngineError(f"{name}: no exported program at {path} (export with the torch programs)")
        if dtype not in DTYPES:
            raise EngineError(f"{name}: torch dtype must be one of {', '.join(DTYPES)}; got {dtype!r}")
        if compile_mode is not None and compile_mode not in COMPILE_MODES:
            raise EngineError(f"{name}: torch compile mode must be one of {', '.join(COMPILE_MODES)} or none; "
                              f"got {compile_mode!r}")
        if cuda_graphs and compile_mode in ("reduce-overhead", "max-autotune"):
            raise EngineError(f"{name}: torch compile mode {compile_mode!r} makes CUDA graphs of its own; "
                              "turn cuda_graphs off, or compile with 'default' or 'max-autotune-no-cudagraphs'")
        self.torch = torch
        self.device = torch.device("cuda" if device == "auto" and torch.cuda.is_available() else
                                   ("cpu" if device == "auto" else device))
        program = torch.export.load(str(path))
        self.module = program.module().to(self.device)
        for parameter in self.module.parameters():
            parameter.requires_grad_(False)
        self.name = name
        self.input_names = [spec.arg.name for spec in program.graph_signature.input_specs
                            if spec.kind.name == "USER_INPUT"]
        self.output_names = list(program.graph_signature.user_outputs)  # set_names puts the manifest's in
        # The graph's input dtypes, by position: feeds are cast to them as ONNX Runtime's engine
        # does, so a caller's int32 tokens or float64 video work on every backend alike.
        placeholders = {n.name: n for n in program.graph.nodes if n.op == "placeholder"}
        values = [placeholders[n].meta["val"] for n in self.input_names]
        self.input_dtypes = [v.dtype for v in values]
        self.dtype = dtype
        # Only a network whose inputs vary in the batch alone (dimension 0, one symbol) gets
        # fixed shapes: compiled or captured per bucket.
        self.batch_only = _batch_only(torch, values)
        self.compile_mode = compile_mode if self.batch_only else None
        self.cuda_graphs = bool(cuda_graphs and self.batch_only and self.device.type == "cuda")
        if cuda_graphs and self.device.type != "cuda":
            log.warning("%s: CUDA graphs need a CUDA device; running on %s without them", name, self.device)
        self.pad_batches = self.compile_mode is not None or self.cuda_graphs
        self.forward = self.module
        if self.compile_mode is not None:
            self.forward = torch.compile(self.module, mode=self.compile_mode)
        self._graphs: dict[int, tuple] = {}  # bucket -> (graph, static inputs, static outputs)
        self._lock = threading.Lock()

    def set_names(self, inputs: list[str], outputs: list[str]) -> None:
        """The manifest's names (exported programs keep positional inputs and outputs)."""
        self.input_names, self.output_names = list(inputs), list(outputs)

    def describe(self) -> dict:
        """What this engine runs: for logs and benchmark reports."""
        return {"network": self.name, "device": str(self.device), "dtype": self.dtype,
                "compile_mode": self.compile_mode, "cuda_graphs": self.cuda_graphs,
                "batch_only": self.batch_only, "graphs_captured": sorted(self._graphs)}

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        check_feeds(self.name, self.input_names, feeds)
        torch = self.torch
        with self._lock, torch.inference_mode():
            args = [torch.from_numpy(np.ascontiguousarray(feeds[k])).to(self.device, dtype)
                    for k, dtype in zip(self.input_names, self.input_dtypes)]
            rows = int(args[0].shape[0]) if args and args[0].dim() else 0
            if self.pad_batches and rows:
                size = bucket(rows)
                if size > rows:  # repeat the first row: valid ids and values, dropped below
                    args = [torch.cat([a, a[:1].expand(size - rows, *a.shape[1:])]) for a in args]
                out = self._graph_call(size, args) if self.cuda_graphs else self._call(args)
                out = [o[:rows] for o in out]
            else:
                out = self._call(args)
            return {k: _numpy(torch, v) for k, v in zip(self.output_names, out)}

    def _call(self, args: list) -> list:
        torch = self.torch
        # cache_enabled=False: autocast's cast cache must not outlive a call (nor a graph capture).
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.dtype == "bf16", cache_enabled=False):
            try:
                out = self.forward(*args)
            except Exception as exc:  # noqa: BLE001 - a compile that fails falls back to the eager program
                if self.forward is self.module:
                    raise
                log.warning("%s: torch.compile (mode %s) failed (%s: %s); running eagerly", self.name,
                            self.compile_mode, type(exc).__name__, str(exc).splitlines()[0] if str(exc) else "")
                self.forward, self.compile_mode = self.module, None
                out = self.forward(*args)
        return list(out) if isinstance(out, (tuple, list)) else [out]

    def _graph_call(self, size: int, args: list) -> list:
        """Replays the CUDA graph of this bucket (captured on its first use) on `args`. A capture
        that fails turns graphs off for this engine, which then runs eagerly (logged once)."""
        torch = self.torch
        entry = self._graphs.get(size)
        if entry is None:
            try:
                entry = self._capture(size, args)
            except Exception as exc:  # noqa: BLE001 - any capture failure falls back to eager calls
                log.warning("%s: CUDA graph capture at batch %d failed (%s: %s); running eagerly",
                            self.name, size, type(exc).__name__, exc)
                self.cuda_graphs = False
                with contextlib.suppress(Exception):
                    torch.cuda.synchronize(self.device)
                return self._call(args)
            self._graphs[size] = entry
        graph, static_in, static_out = entry
        for dst, src in zip(static_in, args):
            dst.copy_(src)
        graph.replay()
        return static_out  # overwritten by the next replay: run() copies them to numpy first

    def _capture(self, size: int, args: list) -> tuple:
        torch = self.torch
        static_in = [a.clone() for a in args]
        with _CAPTURE_LOCK:
            stream = torch.cuda.Stream(self.device)
            stream.wait_stream(torch.cuda.current_stream(self.device))
            with torch.cuda.stream(stream):
                for _ in range(2):  # warm-up: lazy initialisation, compilation, autotuning
                    self._call(static_in)
            torch.cuda.current_stream(self.device).wait_stream(stream)
            graph = torch.cuda.CUDAGraph()
            # A memory pool of its own per graph (no replay order to keep); thread_local: other
            # engines' threads keep running (and allocating) during the capture.
            with torch.cuda.graph(graph, capture_error_mode="thread_local"):
                static_out = self._call(static_in)
        log.info("%s: captured a CUDA graph at batch %d", self.name, size)
        return graph, static_in, static_out


def _numpy(torch, value) -> np.ndarray:
    value = value.detach()
    if value.is_floating_point() and value.dtype != torch.float32:
        value = value.float()  # bf16 (autocast) -> float32: numpy has no bfloat16
    return value.cpu().numpy()


def _batch_only(torch, values) -> bool:
    """True when every symbolic dimension of the inputs is dimension 0, and all are one symbol."""
    symbols = set()
    for value in values:
        for axis, dim in enumerate(value.shape):
            if isinstance(dim, torch.SymInt):
                if axis != 0:
                    return False
                symbols.add(str(dim))
    return len(symbols) <= 1
