"""PyTorch engine for GPUs without TensorRT: runs the `torch.export` programs that
`kinetoscope export onnx` writes beside each ONNX file (`<name>.pt2`), so it needs no model code
from `models/`. Imported only when the torch backend is chosen."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from server.engines.base import Engine, EngineError, EngineOptions, check_feeds, register_backend


@register_backend("torch")
class TorchEngine(Engine):
    @classmethod
    def open(cls, repo: Path, name: str, file: str, options: EngineOptions) -> "TorchEngine":
        return cls(name, repo / Path(file).with_suffix(".pt2"), device=options.device)

    def __init__(self, name: str, path: Path, *, device: str = "auto"):
        import torch

        if not path.is_file():
            raise EngineError(f"{name}: no exported program at {path} (export with the torch programs)")
        self.torch = torch
        self.device = torch.device("cuda" if device == "auto" and torch.cuda.is_available() else
                                   ("cpu" if device == "auto" else device))
        program = torch.export.load(str(path))
        self.module = program.module().to(self.device)
        self.name = name
        self.input_names = [spec.arg.name for spec in program.graph_signature.input_specs
                            if spec.kind.name == "USER_INPUT"]
        self.output_names = list(program.graph_signature.user_outputs)  # set_names puts the manifest's in
        # The graph's input dtypes, by position: feeds are cast to them as ONNX Runtime's engine
        # does, so a caller's int32 tokens or float64 video work on every backend alike.
        placeholders = {n.name: n for n in program.graph.nodes if n.op == "placeholder"}
        self.input_dtypes = [placeholders[n].meta["val"].dtype for n in self.input_names]

    def set_names(self, inputs: list[str], outputs: list[str]) -> None:
        """The manifest's names (exported programs keep positional inputs and outputs)."""
        self.input_names, self.output_names = list(inputs), list(outputs)

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        check_feeds(self.name, self.input_names, feeds)
        torch = self.torch
        with torch.inference_mode():
            args = [torch.from_numpy(np.ascontiguousarray(feeds[k])).to(self.device, dtype)
                    for k, dtype in zip(self.input_names, self.input_dtypes)]
            out = self.module(*args)
        out = out if isinstance(out, (tuple, list)) else (out,)
        return {k: v.detach().cpu().numpy() for k, v in zip(self.output_names, out)}
