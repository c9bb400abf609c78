"""`kinetoscope export bundle`: an exported model repository -> a weight-free bundle that ships
beside the checkpoints, so that serving needs neither PyTorch nor a second copy of the weights.

Each ONNX graph keeps its small constants; every large initializer that is a checkpoint tensor
(as it is, or transposed: the exporter folds some transposes into the weights) becomes ONNX
external data in `<network>.onnx.data`, and `weights.json` says which safetensors tensor fills
each byte range. `server.repository.assemble` (numpy and safetensors only) rebuilds the data
files from the checkpoints; the manifest's sha256 of every graph and data file proves the result
is the repository that was exported.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper
from safetensors.numpy import load_file

from server.manifest import Manifest, NetworkFile, load_manifest, sha256_file
from server.repository import MIN_EXTERNAL_BYTES, WEIGHTS_TABLE, assemble, checkpoint_of

ALIGN = 64  # byte alignment of each tensor in a data file


def _find(array: np.ndarray, tensors: dict[str, np.ndarray]) -> tuple[str, bool] | None:
    """The checkpoint tensor equal to `array`, as (key, transposed), or None."""
    for key, value in tensors.items():
        if value.shape == array.shape and np.array_equal(value, array):
            return key, False
        if value.ndim == 2 and value.T.shape == array.shape and np.array_equal(value.T, array):
            return key, True
    return None


def write_bundle(repo: str | Path, checkpoints: str | Path, out: str | Path) -> Manifest:
    """`repo`: a repository written by `export_repository` from `checkpoints`. Writes `out`
    (graphs, manifest.json, weights.json), then assembles it once to check it round-trips."""
    repo, checkpoints, out = Path(repo), Path(checkpoints), Path(out)
    manifest = load_manifest(repo)
    tmp = out.with_name(out.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    table: dict[str, dict] = {}
    updated: dict[str, NetworkFile] = {}
    for name, net in manifest.networks().items():
        source = checkpoint_of(name)
        tensors = {k: v.astype(np.float32) for k, v in load_file(str(checkpoints / f"{source}.safetensors")).items()
                   if v.dtype.kind == "f"}
        model = onnx.load(str(repo / net.file))
        data_file = f"{net.file}.data"
        entries, offset = [], 0
        for init in model.graph.initializer:
            array = numpy_helper.to_array(init)
            if array.nbytes < MIN_EXTERNAL_BYTES or array.dtype != np.float32:
                continue
            found = _find(array, tensors)
            if found is None:
                continue  # a folded constant: stays in the graph
            offset = -(-offset // ALIGN) * ALIGN
            init.ClearField("raw_data")
            init.ClearField("float_data")
            init.data_location = onnx.TensorProto.EXTERNAL
            del init.external_data[:]
            for k, v in (("location", data_file), ("offset", str(offset)), ("length", str(array.nbytes))):
                init.external_data.add(key=k, value=v)
            entries.append({"name": init.name, "key": found[0], "transpose": found[1], "offset": offset,
                            "shape": list(array.shape)})
            offset += array.nbytes
        onnx.save(model, str(tmp / net.file))
        table[name] = {"checkpoint": f"{source}.safetensors", "data_file": data_file, "size": offset,
                       "tensors": entries}
        # The graph's hash is the bundle's; the data file's hash is that of the exported weights.
        updated[name] = net.model_copy(update={"sha256": sha256_file(tmp / net.file), "external_data": data_file,
                                               "external_sha256": None})
    (tmp / WEIGHTS_TABLE).write_text(json.dumps(table, indent=1) + "\n")
    fields = {"encoder": updated["encoder"], "decoder": updated["decoder"], "prior": updated["prior"]}
    if "ar_prior" in updated:
        fields["ar_prior"] = updated["ar_prior"]
    stages = [s.model_copy(update=updated[f"sr_{s.out_size[1]}x{s.out_size[0]}"].model_dump(
        include={"sha256", "external_data", "external_sha256"})) for s in manifest.super_resolution]
    bundle_manifest = manifest.model_copy(update={**fields, "super_resolution": stages})
    (tmp / "manifest.json").write_text(bundle_manifest.model_dump_json(indent=2, exclude_none=True) + "\n")
    # Fill in the data files' hashes from one assembly, then check that a second one verifies.
    check = tmp.with_name(tmp.name + ".check")
    assemble(tmp, checkpoints, check, verify=False)
    hashes = {name: sha256_file(check / entry["data_file"]) for name, entry in table.items()}
    shutil.rmtree(check)
    for name, net in bundle_manifest.networks().items():
        net.external_sha256 = hashes[name]
    (tmp / "manifest.json").write_text(bundle_manifest.model_dump_json(indent=2, exclude_none=True) + "\n")
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    return bundle_manifest
