"""The torch backend's programs (`<network>.pt2` beside each ONNX file) written with torch.export
alone, for a model repository that has the ONNX files but not the programs (one assembled by
`kinetoscope export assemble`, as `make model` and the GPU benchmark do).

`kinetoscope export onnx` writes the same programs as a by-product of its ONNX export (the same
modules, example shapes and dynamic dimensions as export/onnx.py); this module skips the ONNX
conversion (about a minute for the demo family on two cores, and onnx + onnxscript installed),
which a machine that only serves through the torch backend does not need. The programs are
checked against the manifest: one input per manifest input, in its order.
"""
from __future__ import annotations

import time
import warnings
from pathlib import Path


def _dims(torch, inputs: list[str], dynamic: dict[str, dict[int, str]]) -> tuple:
    from torch.export import Dim

    made: dict = {}
    return tuple({axis: made.setdefault(label, Dim(label, min=0 if label == "past" else 1, max=4096))
                  for axis, label in dynamic.get(name, {}).items()} or None for name in inputs)


def _export(torch, module, args: tuple, shapes: tuple):
    """torch.export as torch.onnx.export's first strategy runs it (so the programs are those that
    `kinetoscope export onnx` saves): non-strict, 0/1 sizes kept symbolic, and once more with the
    dimensions refined as the exporter suggests when a guard does not hold over a whole range
    (the autoregressive prior's `new` != 256)."""
    import contextlib

    config = getattr(torch.fx.experimental, "_config", None)
    oblivious = (config.patch(backed_size_oblivious=True) if config is not None and hasattr(config, "backed_size_oblivious")
                 else contextlib.nullcontext())
    with warnings.catch_warnings(), oblivious:
        warnings.simplefilter("ignore")
        try:
            return torch.export.export(module, args, dynamic_shapes=shapes, strict=False)
        except torch._dynamo.exc.UserError as exc:
            refined = torch.export.dynamic_shapes.refine_dynamic_shapes_from_suggested_fixes(exc.msg, shapes)
            return torch.export.export(module, args, dynamic_shapes=refined, strict=False)


def missing_programs(repo: Path, manifest) -> list[str]:
    """The networks of `manifest` with no `<file>.pt2` in `repo`."""
    return [name for name, net in manifest.networks().items() if not (repo / net.file).with_suffix(".pt2").is_file()]


def export_programs(checkpoints: str | Path, repo: str | Path, manifest, only: list[str] | None = None) -> dict[str, float]:
    """Writes `<network>.pt2` in `repo` for every network of `manifest` (or those in `only`) from
    the checkpoints the repository was made from -> seconds per network."""
    import torch

    from models.checkpoint import load_network
    from models.priors import ARPriorExport
    from models.tokenizer import DecoderExport, EncoderExport

    checkpoints, repo = Path(checkpoints), Path(repo)
    wanted = set(manifest.networks()) if only is None else set(only)
    torch.manual_seed(0)
    tok, _ = load_network(checkpoints, "tokenizer")
    prior, _ = load_network(checkpoints, "masked_prior")
    pcfg = prior.cfg
    frames = manifest.window_frames
    height, width = manifest.base_size
    video = torch.rand(2, 3, frames, height, width)
    cls = torch.arange(2) % pcfg.num_classes
    tokens = tok.encode(video)
    flat = tokens.reshape(2, -1)
    cond = torch.full_like(flat, pcfg.mask_id)
    state = torch.zeros_like(flat)
    batch = {0: "batch"}
    seconds: dict[str, float] = {}

    def export(name: str, module, args: tuple, dynamic: dict) -> None:
        if name not in wanted:
            return
        net = manifest.networks()[name]
        if len(args) != len(net.inputs):
            raise ValueError(f"{name}: the manifest names {len(net.inputs)} inputs {net.inputs}, the program takes {len(args)}")
        start = time.perf_counter()
        program = _export(torch, module.eval(), args, _dims(torch, net.inputs, dynamic))
        torch.export.save(program, str((repo / net.file).with_suffix(".pt2")))
        seconds[name] = round(time.perf_counter() - start, 2)

    export("encoder", EncoderExport(tok), (video,), {"video": batch})
    export("decoder", DecoderExport(tok), (tokens,), {"tokens": batch})
    masked = torch.where(torch.rand(2, flat.shape[1]) < 0.5, torch.full_like(flat, pcfg.mask_id), flat)
    export("prior", prior, (masked, cond, state, cls), {k: batch for k in ("tokens", "cond", "state", "class_id")})
    if "ar_prior" in manifest.networks() and "ar_prior" in wanted:
        ar, _ = load_network(checkpoints, "ar_prior")
        ids = ar.input_ids(flat, cls)
        with torch.no_grad():
            _, pk, pv = ar(ids[:, :3], cond[:, :3], state[:, :3])
        seq, cache = {0: "batch", 1: "new"}, {1: "batch", 3: "past"}
        export("ar_prior", ARPriorExport(ar), (ids[:, 3:7], cond[:, 3:7], state[:, 3:7], pk, pv),
               {"ids": seq, "cond": seq, "state": seq, "past_key": cache, "past_value": cache})
    low = video
    for stage in manifest.super_resolution:
        name = f"sr_{stage.out_size[1]}x{stage.out_size[0]}"  # as Manifest.networks() names it
        sr, _ = load_network(checkpoints, f"sr_{stage.out_size[1]}")  # checkpoints: by output width
        level = torch.full((2,), float(stage.noise_level))
        export(name, sr, (low, level), {"video": batch, "noise_level": batch})
        with torch.no_grad():
            low = sr(low, level).clamp(0, 1)
    return seconds
