"""Assemble a servable model repository from a weight-free bundle and the safetensors
checkpoints, with numpy alone (no PyTorch, no onnx package): what `make serve` runs.

A bundle (written by `kinetoscope export bundle`) holds each network's ONNX graph, whose large
initializers are ONNX external data, `weights.json` (for each data file: the checkpoint, and
which tensor, transposed or not, fills each byte range) and the manifest, which carries the
sha256 of every graph and data file. `kinetoscope export assemble BUNDLE CHECKPOINTS OUT`.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np

WEIGHTS_TABLE = "weights.json"
MIN_EXTERNAL_BYTES = 1024  # smaller initializers stay inside the graph


def checkpoint_of(network: str) -> str:
    """The checkpoint (safetensors stem) a network's weights come from."""
    if network in ("encoder", "decoder"):
        return "tokenizer"
    if network == "prior":
        return "masked_prior"
    if network.startswith("sr_"):  # sr_64x64 -> sr_64
        return network.split("x")[0]
    return network


def assemble(bundle: str | Path, checkpoints: str | Path, out: str | Path, verify: bool = True) -> Path:
    """Writes `out`: the bundle's graphs and manifest plus every data file rebuilt from the
    checkpoints; with `verify`, checks every file against the manifest's sha256."""
    from safetensors.numpy import safe_open  # a small runtime dependency, read lazily

    bundle, checkpoints, out = Path(bundle), Path(checkpoints), Path(out)
    table = json.loads((bundle / WEIGHTS_TABLE).read_text())
    tmp = out.with_name(out.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for item in bundle.iterdir():
        if item.suffix in (".onnx", ".json") and item.name != WEIGHTS_TABLE:
            shutil.copyfile(item, tmp / item.name)
    for network, entry in table.items():
        data = np.zeros(entry["size"], dtype=np.uint8)
        with safe_open(str(checkpoints / entry["checkpoint"]), framework="np") as weights:
            for tensor in entry["tensors"]:
                array = weights.get_tensor(tensor["key"]).astype(np.float32)  # the export's fp32 weights
                if tensor["transpose"]:
                    array = array.T
                if list(array.shape) != tensor["shape"]:
                    raise ValueError(f"{network}: {tensor['key']} has shape {list(array.shape)}, the graph wants "
                                     f"{tensor['shape']}: the bundle is from other checkpoints (re-run export bundle)")
                raw = np.ascontiguousarray(array).view(np.uint8).reshape(-1)
                data[tensor["offset"]:tensor["offset"] + raw.size] = raw
        data.tofile(tmp / entry["data_file"])
    if verify:
        from server.manifest import load_manifest

        try:
            load_manifest(tmp)
        except ValueError as exc:
            raise ValueError(f"{exc}: the checkpoints in {checkpoints} are not the ones the bundle {bundle} "
                             "was exported from (re-run `kinetoscope export bundle`)") from None
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    return out

