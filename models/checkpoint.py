"""Shipped network files: `<name>.safetensors` (fp16 weights) + `<name>.json` (kind, config, notes).

`save_network` / `load_network` are what export and evaluation use; training's own resumable
state (optimizer, step, RNG) lives in `runs/<stage>/state.pt` and is never shipped.
"""
from __future__ import annotations

import json
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from models.priors import ARPrior, MaskedPrior, PriorConfig
from models.super_resolution import SRConfig, SuperResolution
from models.tokenizer import TokenizerConfig, VideoTokenizer

KINDS: dict[str, tuple[type, type]] = {
    "tokenizer": (VideoTokenizer, TokenizerConfig),
    "masked_prior": (MaskedPrior, PriorConfig),
    "ar_prior": (ARPrior, PriorConfig),
    "super_resolution": (SuperResolution, SRConfig),
}


def config_from_dict(cls: type, data: dict[str, Any]):
    known = {f.name for f in fields(cls)}
    unknown = set(data) - known
    if unknown:
        raise ValueError(f"{cls.__name__} has no fields {sorted(unknown)}")
    return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})


def build(kind: str, config: dict[str, Any]) -> torch.nn.Module:
    if kind not in KINDS:
        raise ValueError(f"unknown network kind {kind!r}; known: {sorted(KINDS)}")
    net_cls, cfg_cls = KINDS[kind]
    return net_cls(config_from_dict(cfg_cls, config))


def save_network(directory: str | Path, name: str, kind: str, module: torch.nn.Module,
                 meta: dict[str, Any] | None = None, half: bool = True) -> Path:
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = {k: (v.half() if half and v.is_floating_point() else v).detach().cpu().contiguous()
             for k, v in module.state_dict().items()}
    save_file(state, str(directory / f"{name}.safetensors"))
    info = {"kind": kind, "config": asdict(module.cfg), "meta": meta or {}}
    (directory / f"{name}.json").write_text(json.dumps(info, indent=2) + "\n")
    return directory / f"{name}.safetensors"


def load_network(directory: str | Path, name: str) -> tuple[torch.nn.Module, dict[str, Any]]:
    """Loads `<name>` as a float32 module in eval mode, and its json info."""
    directory = Path(directory)
    info_path = directory / f"{name}.json"
    if not info_path.is_file():
        raise FileNotFoundError(f"no checkpoint {info_path}")
    info = json.loads(info_path.read_text())
    module = build(info["kind"], info["config"])
    state = {k: v.float() if v.is_floating_point() else v for k, v in load_file(str(directory / f"{name}.safetensors")).items()}
    module.load_state_dict(state)
    return module.eval(), info
