"""`kinetoscope export tensorrt`: ONNX files of a model repository -> TensorRT plans.

One plan per network, each with one optimization profile over batch sizes 1..max_batch (and,
for the autoregressive prior, feed lengths 1..num_tokens and cache lengths 0..num_tokens). Plans
are cached under `<repo>/tensorrt/<cache_key>/<name>.plan`, keyed by GPU model, compute
capability, TensorRT version, ONNX hash, max_batch and precision; a cache hit skips the build.
The key and the folder layout are the server's (server/engines/tensorrt.py), since the server
finds the plans and imports point server <- export.

Precision. TensorRT >= 10.12 (and 11, where it is the only mode) builds *strongly typed*
networks: every tensor keeps the type the ONNX graph gives it and the FP16/BF16 builder flags
do not apply (TensorRT 11 removed them). The repository's ONNX files are fp32, so there the plans
are fp32 (TF32 on GPUs that have it); reduced precision comes from exporting an fp16/bf16 ONNX
variant (e.g. with ModelOpt AutoCast) and building from that. Older TensorRT builds weakly typed
networks where `auto` and `fp16` set BuilderFlag.FP16 (and `bf16` BuilderFlag.BF16, TensorRT >= 9)
and TensorRT picks per layer.

tensorrt (and torch, for the GPU's identity) are imported only when a build runs; everything
else here is pure and tested without a GPU.
"""
from __future__ import annotations

import json
import logging
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

from server.engines.tensorrt import KEY_FILE, cache_key, gpu_identity, key_fields, plan_path, require_tensorrt
from server.manifest import Manifest, load_manifest

log = logging.getLogger("kinetoscope.export")

DEFAULT_MAX_BATCH = 32  # the server's max_batch_size (16) doubled by classifier-free guidance rows
WORKSPACE_BYTES = 4 << 30  # scratch memory TensorRT may use while choosing kernels
PRECISIONS = ("auto", "fp32", "fp16", "bf16")
BATCH_AXIS = "batch"  # the name export/onnx.py gives every batch dimension
STRONGLY_TYPED_SINCE = (10, 12)
BF16_FLAG_SINCE = (9, 0)

Shape = tuple[int, ...]


# ---- Precision (pure) -----------------------------------------------------------------------

@dataclass(frozen=True)
class PrecisionPlan:
    strongly_typed: bool  # NetworkDefinitionCreationFlag.STRONGLY_TYPED
    builder_flags: tuple[str, ...]  # BuilderFlag names to set (weakly typed builds only)
    label: str  # the precision part of the cache key: builds with one label are the same plan
    note: str


def parse_version(version: str) -> tuple[int, int]:
    """"10.12.0.36" -> (10, 12); "8.6.1.post1" -> (8, 6)."""
    m = re.match(r"\s*(\d+)(?:\.(\d+))?", str(version))
    if not m:
        raise ValueError(f"unrecognised TensorRT version {version!r}")
    return int(m.group(1)), int(m.group(2) or 0)


def precision_plan(trt_version: str, requested: str = "auto") -> PrecisionPlan:
    """How to get the requested precision from this TensorRT version."""
    if requested not in PRECISIONS:
        raise ValueError(f"precision {requested!r}; choose one of {', '.join(PRECISIONS)}")
    version = parse_version(trt_version)
    if version >= STRONGLY_TYPED_SINCE:
        if requested in ("fp16", "bf16"):
            raise ValueError(
                f"TensorRT {trt_version} builds strongly typed networks: precision comes from the ONNX types, "
                f"not a flag. Export a {requested} ONNX variant and build from it, or use precision 'auto'.")
        return PrecisionPlan(True, (), "typed", "strongly typed: each tensor keeps its ONNX type")
    if requested == "fp32":
        return PrecisionPlan(False, (), "fp32", "weakly typed, fp32 (TF32 where the GPU has it)")
    if requested == "bf16":
        if version < BF16_FLAG_SINCE:
            raise ValueError(f"TensorRT {trt_version} has no bf16 builder flag (TensorRT >= 9.0); use fp16 or fp32")
        return PrecisionPlan(False, ("BF16",), "bf16", "weakly typed, bf16 kernels where faster")
    return PrecisionPlan(False, ("FP16",), "fp16", "weakly typed, fp16 kernels where faster")


# ---- Optimization profiles (pure) -----------------------------------------------------------

def ar_axes(num_tokens: int) -> dict[str, Shape]:
    """(min, opt, max) of the autoregressive prior's sequence axes. `new`: positions fed in one
    call, from one (a decoding step, the common call, hence opt 1) to a whole window's prefill;
    `past`: cached positions, from none (the first call) to a whole window."""
    return {"new": (1, 1, num_tokens), "past": (0, num_tokens // 2, num_tokens)}


def profile_shapes(input_shapes: dict[str, list[int | str]], max_batch: int, opt_batch: int | None = None,
                   axes: dict[str, Shape] | None = None) -> dict[str, tuple[Shape, Shape, Shape]]:
    """(min, opt, max) shape of every input. Fixed axes keep their size; the axis named `batch`
    (wherever it sits: axis 0, or axis 1 of the KV cache) spans 1..max_batch with opt_batch
    (default max_batch // 2) as the tuning point; any other named axis takes its (min, opt, max)
    from `axes`."""
    if max_batch < 1:
        raise ValueError(f"max_batch must be at least 1, got {max_batch}")
    opt_batch = max(1, max_batch // 2) if opt_batch is None else opt_batch
    if not 1 <= opt_batch <= max_batch:
        raise ValueError(f"opt_batch must be in 1..{max_batch}, got {opt_batch}")
    ranges = {**(axes or {}), BATCH_AXIS: (1, opt_batch, max_batch)}
    out = {}
    for name, dims in input_shapes.items():
        low, mid, high = [], [], []
        for i, d in enumerate(dims):
            if isinstance(d, int) and d > 0:
                r = (d, d, d)
            elif isinstance(d, str) and d in ranges:
                r = ranges[d]
            else:
                raise ValueError(f"input {name} axis {i} is dynamic ({d!r}) and has no range; "
                                 f"known axes: {sorted(ranges)}")
            if not 0 <= r[0] <= r[1] <= r[2]:
                raise ValueError(f"axis {d!r}: need 0 <= min <= opt <= max, got {r}")
            low.append(r[0]), mid.append(r[1]), high.append(r[2])
        out[name] = (tuple(low), tuple(mid), tuple(high))
    return out


def onnx_input_shapes(path: Path) -> dict[str, list[int | str]]:
    """Graph inputs of an ONNX file: fixed sizes as ints, dynamic ones by their symbol ("" when
    unnamed). Initializers listed as inputs (old exporters) are skipped."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    weights = {w.name for w in graph.initializer}
    return {i.name: [d.dim_param if d.HasField("dim_param") else (d.dim_value if d.HasField("dim_value") else "")
                     for d in i.type.tensor_type.shape.dim]
            for i in graph.input if i.name not in weights}


def network_profiles(repo: Path, manifest: Manifest, max_batch: int,
                     opt_batch: int | None = None) -> dict[str, dict[str, tuple[Shape, Shape, Shape]]]:
    """The optimization profile of every network of a repository (reads the ONNX headers)."""
    axes = ar_axes(manifest.num_tokens)
    return {name: profile_shapes(onnx_input_shapes(Path(repo) / net.file), max_batch, opt_batch, axes)
            for name, net in manifest.networks().items()}


# ---- Building (needs TensorRT and a GPU) ----------------------------------------------------

def _network_flags(trt, plan: PrecisionPlan) -> int:
    flags = 0
    creation = trt.NetworkDefinitionCreationFlag
    if parse_version(trt.__version__) < (10, 0) and hasattr(creation, "EXPLICIT_BATCH"):
        flags |= 1 << int(creation.EXPLICIT_BATCH)  # ONNX needs it before TensorRT 10 (the default since)
    if plan.strongly_typed and hasattr(creation, "STRONGLY_TYPED"):  # TensorRT 11: always on, flag ignored
        flags |= 1 << int(creation.STRONGLY_TYPED)
    return flags


def build_plan(trt, logger, onnx_path: Path, profile: dict[str, tuple[Shape, Shape, Shape]], plan: PrecisionPlan,
               workspace_bytes: int = WORKSPACE_BYTES) -> bytes:
    """Parses one ONNX file and returns the serialized engine."""
    builder = trt.Builder(logger)
    network = builder.create_network(_network_flags(trt, plan))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise RuntimeError(f"TensorRT could not parse {onnx_path}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_bytes)
    for flag in plan.builder_flags:
        config.set_flag(getattr(trt.BuilderFlag, flag))
    optimization = builder.create_optimization_profile()
    for i in range(network.num_inputs):
        name = network.get_input(i).name
        if name not in profile:
            raise RuntimeError(f"{onnx_path}: input {name} has no profile shape")
        optimization.set_shape(name, *profile[name])
    config.add_optimization_profile(optimization)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise RuntimeError(f"TensorRT could not build {onnx_path} (see the TensorRT log above)")
    return bytes(serialized)


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + f".{os.getpid()}.partial")
    tmp.write_bytes(data)
    os.replace(tmp, path)  # a reader never sees half a plan


def _cached(plan: Path, opt_batch: int) -> bool:
    """A plan counts once its key.json is written, for the same tuning batch (opt_batch is not
    part of the key: it changes speed, not what the plan accepts; a different one rebuilds)."""
    key_file = plan.parent / KEY_FILE
    if not (plan.is_file() and key_file.is_file()):
        return False
    try:
        return json.loads(key_file.read_text()).get("opt_batch") == opt_batch
    except ValueError:
        return False


def on_device(device: int):
    """Makes `device` the current CUDA device while TensorRT builds on it."""
    import torch

    return torch.cuda.device(device)


def build_repository(repo: Path, max_batch: int = DEFAULT_MAX_BATCH, opt_batch: int | None = None,
                     precision: str = "auto", *, workspace_bytes: int = WORKSPACE_BYTES, device: int = 0) -> list[Path]:
    """Builds (or finds in the cache) a plan for every network of the repository; returns their paths."""
    repo = Path(repo)
    trt = require_tensorrt()
    manifest = load_manifest(repo, verify=True)  # the key uses the manifest's hashes: they must be true
    plan = precision_plan(trt.__version__, precision)
    opt_batch = max(1, max_batch // 2) if opt_batch is None else opt_batch
    profiles = network_profiles(repo, manifest, max_batch, opt_batch)
    gpu, cc = gpu_identity(device)
    logger = trt.Logger(trt.Logger.WARNING)
    log.info("TensorRT %s on %s (sm %d.%d): %s", trt.__version__, gpu, cc[0], cc[1], plan.note)
    paths = []
    for name, net in manifest.networks().items():
        key = cache_key(gpu, cc, trt.__version__, net.sha256, max_batch, plan.label)
        path = plan_path(repo, key, name)
        if _cached(path, opt_batch):
            log.info("%s: cached %s", name, path)
            paths.append(path)
            continue
        start = time.perf_counter()
        with on_device(device):
            data = build_plan(trt, logger, repo / net.file, profiles[name], plan, workspace_bytes)
        path.parent.mkdir(parents=True, exist_ok=True)
        _write_atomic(path, data)
        fields = key_fields(gpu, cc, trt.__version__, net.sha256, max_batch, plan.label)
        record = {**fields, "opt_batch": opt_batch, "requested_precision": precision, "note": plan.note}
        _write_atomic(path.parent / KEY_FILE, (json.dumps(record, indent=2) + "\n").encode())
        log.info("%s: built %s in %.1f s (%.1f MB)", name, path, time.perf_counter() - start, len(data) / 1e6)
        paths.append(path)
    return paths
