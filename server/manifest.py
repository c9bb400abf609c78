"""The model repository manifest: everything the server needs to serve a model.

`export/` writes `manifest.json` beside the ONNX files; the server reads only this, never a
training config. Bump SCHEMA_VERSION when a field changes meaning.

A factorized token vocabulary is recorded on the networks that speak token ids: `token_factors`
(the sub-vocabulary sizes, low factor first, product = vocab_size; server/samplers/factored.py)
on the encoder, decoder, prior and ar_prior entries, the tokenizer's and the priors' alike, or
absent on all of them (one vocabulary: the priors emit V logits). It is optional, so a manifest
without it means what it always meant and SCHEMA_VERSION stays 1.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

from pydantic import BaseModel, Field, model_validator

from server.samplers.factored import check_factors
from server.samplers.options import SAMPLERS, SamplerOptions, TaskSamplerDefaults, resolve_sampler
from server.tasks import ALL_TASKS

SCHEMA_VERSION = 1

TASKS = ALL_TASKS


class NetworkFile(BaseModel):
    file: str
    sha256: str
    inputs: list[str]
    outputs: list[str]
    # ONNX external data beside the graph (a repository assembled from a bundle: server/repository.py)
    external_data: str | None = None
    external_sha256: str | None = None
    # The token vocabulary's factorization (encoder, decoder, prior, ar_prior only): see the
    # module docstring. None = unfactorized; a factorized prior's logits have sum() columns.
    token_factors: list[int] | None = None


class SuperResolutionStage(NetworkFile):
    scale: int = 2
    in_size: tuple[int, int]  # (H, W)
    out_size: tuple[int, int]
    noise_level: float = 0.0  # the noise-conditioning level the stage is run with


class ARSpec(BaseModel):
    """Shapes of the autoregressive prior's explicit KV cache: [layers, batch, heads, past, head_dim]."""

    num_layers: int
    num_heads: int
    head_dim: int


class Manifest(BaseModel):
    schema_version: int = SCHEMA_VERSION
    model_id: str
    description: str = ""
    classes: list[str]
    window_frames: int
    default_condition_frames: int
    base_size: tuple[int, int]  # (H, W) of the prior's video
    fps: int
    token_grid: tuple[int, int, int]  # (t, h, w) tokens per window
    temporal_stride: int  # frames per latent frame
    spatial_stride: int  # pixels per token side
    vocab_size: int
    mask_token_id: int  # == vocab_size: the [MASK] input id of the masked prior
    null_class_id: int  # == len(classes): "no class" for unconditional / guidance
    null_cond_id: int  # == vocab_size: "no condition token" at a position
    tasks: list[str] = Field(default_factory=lambda: list(TASKS))
    samplers: list[str] = Field(default_factory=lambda: list(SAMPLERS))
    encoder: NetworkFile
    decoder: NetworkFile
    prior: NetworkFile
    ar_prior: NetworkFile | None = None
    ar: ARSpec | None = None
    super_resolution: list[SuperResolutionStage] = Field(default_factory=list)
    # The model's recommended sampler per task (see server/samplers/options.py); optional.
    sampler_defaults: dict[str, TaskSamplerDefaults] = Field(default_factory=dict)
    opset: int
    exporter: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _check_token_factors(self) -> "Manifest":
        """The tokenizer's networks and the priors must factorize the vocabulary alike."""
        token_nets = {"encoder": self.encoder, "decoder": self.decoder, "prior": self.prior}
        if self.ar_prior is not None:
            token_nets["ar_prior"] = self.ar_prior
        seen = {name: None if net.token_factors is None else tuple(net.token_factors)
                for name, net in token_nets.items()}
        if len(set(seen.values())) > 1:
            raise ValueError("the networks factorize the token vocabulary differently: "
                             + ", ".join(f"{name} {list(f) if f else 'none'}" for name, f in seen.items()))
        factors = seen["prior"]
        if factors is not None:
            if not factors:
                raise ValueError("token_factors, when recorded, names at least one sub-vocabulary; got []")
            check_factors(factors, self.vocab_size)
        for stage in self.super_resolution:
            if stage.token_factors is not None:
                raise ValueError("token_factors belongs on the token networks, not a super-resolution stage")
        return self

    @property
    def token_factors(self) -> tuple[int, ...]:
        """The vocabulary's sub-vocabulary sizes (what the samplers take); () when unfactorized."""
        return tuple(self.prior.token_factors or ())

    @model_validator(mode="after")
    def _check_sampler_defaults(self) -> "Manifest":
        for task, defaults in self.sampler_defaults.items():
            if task not in self.tasks:
                raise ValueError(f"sampler_defaults names task {task!r}, which the model does not serve")
            for method in [defaults.method, *defaults.methods]:
                if method is not None and method not in self.samplers:
                    raise ValueError(f"sampler_defaults[{task!r}] names sampler {method!r}; the model has {self.samplers}")
        return self

    def sampler_for(self, task: str, requested: dict | None = None) -> SamplerOptions:
        """The sampler a request for `task` runs with, given the fields it set (`requested`)."""
        return resolve_sampler(requested or {}, self.sampler_defaults.get(task), self.samplers)

    @property
    def sizes(self) -> list[str]:
        """Output sizes as "WxH", base first, then each super-resolution stage's output."""
        h, w = self.base_size
        out = [f"{w}x{h}"]
        out += [f"{s.out_size[1]}x{s.out_size[0]}" for s in self.super_resolution]
        return out

    @property
    def num_tokens(self) -> int:
        t, h, w = self.token_grid
        return t * h * w

    def networks(self) -> dict[str, NetworkFile]:
        nets: dict[str, NetworkFile] = {"encoder": self.encoder, "decoder": self.decoder, "prior": self.prior}
        if self.ar_prior is not None:
            nets["ar_prior"] = self.ar_prior
        for stage in self.super_resolution:
            nets[f"sr_{stage.out_size[1]}x{stage.out_size[0]}"] = stage
        return nets


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def load_manifest(repo_dir: str | Path, verify: bool = True) -> Manifest:
    """Reads `manifest.json` in a model repository; with `verify`, checks every file's sha256."""
    repo = Path(repo_dir)
    path = repo / "manifest.json"
    if not path.is_file():
        raise FileNotFoundError(f"no manifest.json in model repository {repo}")
    manifest = Manifest.model_validate(json.loads(path.read_text()))
    if manifest.schema_version != SCHEMA_VERSION:
        raise ValueError(f"{path}: schema_version {manifest.schema_version}, this server reads {SCHEMA_VERSION}")
    if verify:
        for name, net in manifest.networks().items():
            files = [(net.file, net.sha256)]
            if net.external_data is not None:
                files.append((net.external_data, net.external_sha256))
            for file, digest in files:
                f = repo / file
                if not f.is_file():
                    raise FileNotFoundError(f"{name}: {f} is missing")
                if sha256_file(f) != digest:
                    raise ValueError(f"{name}: {f} does not match the sha256 in the manifest (re-export the model)")
    return manifest
