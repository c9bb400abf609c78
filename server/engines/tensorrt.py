"""Native TensorRT engine: runs the plans that `kinetoscope export tensorrt` builds.

A plan is only valid on the GPU model and TensorRT version it was built with, so plans live in
a cache beside the ONNX files, one folder per build:

    <repo>/tensorrt/<cache_key>/<network>.plan    the serialized engine
    <repo>/tensorrt/<cache_key>/key.json          what the key was made of (read to find a plan)

`cache_key` and `plan_path` are defined here, not in export/, because imports point one way
(server <- export): the builder imports them from this module. The server never builds a plan;
a missing one is a clear error that names the command that builds it.

Device memory: torch CUDA tensors (the GPU machines have torch; its caching allocator makes a
per-call allocation cheap and it gives us streams without a second CUDA binding such as
cuda-python or cupy). torch and tensorrt are imported only when this backend is chosen.
"""
from __future__ import annotations

import hashlib
import json
import logging
import re
import sys
import threading
from pathlib import Path

import numpy as np

from server.engines.base import Engine, EngineError, EngineOptions, check_feeds, register_backend
from server.manifest import sha256_file

log = logging.getLogger("kinetoscope.engines.tensorrt")

PLAN_FOLDER = "tensorrt"
KEY_FILE = "key.json"
INSTALL_HINT = "pip install tensorrt (the wheel for your CUDA major version, e.g. tensorrt-cu12)"


class TensorRTUnavailable(EngineError):
    """TensorRT, torch or an NVIDIA GPU is missing on this machine."""


# ---- The plan cache (pure) ------------------------------------------------------------------

def _slug(text: str, limit: int = 40) -> str:
    """Lower-case letters, digits, '.' and '-' only: safe as a path component everywhere."""
    return re.sub(r"[^a-z0-9.]+", "-", text.lower()).strip("-.")[:limit] or "x"


def _capability(compute_capability) -> str:
    """(9, 0) | "9.0" | "90" | "sm_90" -> "9.0"."""
    if isinstance(compute_capability, (tuple, list)):
        major, minor = compute_capability
        return f"{int(major)}.{int(minor)}"
    text = str(compute_capability).lower().removeprefix("sm_").removeprefix("sm")
    if "." in text:
        major, minor = text.split(".", 1)
        return f"{int(major)}.{int(minor)}"
    return f"{int(text[:-1])}.{int(text[-1])}"


def key_fields(gpu_name: str, compute_capability, trt_version: str, onnx_sha256: str, max_batch: int,
               precision: str) -> dict:
    """The components of a cache key, normalised (also written to key.json)."""
    return {"gpu_name": str(gpu_name), "compute_capability": _capability(compute_capability),
            "trt_version": str(trt_version), "onnx_sha256": str(onnx_sha256).lower(),
            "max_batch": int(max_batch), "precision": str(precision)}


def cache_key(gpu_name: str, compute_capability, trt_version: str, onnx_sha256: str, max_batch: int,
              precision: str) -> str:
    """A stable, filesystem-safe folder name for one plan build.

    A readable prefix (GPU, sm, TensorRT, ONNX hash, batch, precision) followed by a digest of
    every component in full, so two builds that differ anywhere get different keys even when
    their readable prefixes coincide (slugs and the short ONNX hash lose information)."""
    f = key_fields(gpu_name, compute_capability, trt_version, onnx_sha256, max_batch, precision)
    digest = hashlib.sha256(json.dumps(f, sort_keys=True).encode()).hexdigest()[:12]
    sm = f["compute_capability"].replace(".", "")
    return (f"{_slug(f['gpu_name'])}-sm{sm}-trt{_slug(f['trt_version'], 20)}-{_slug(f['onnx_sha256'], 12)}"
            f"-b{f['max_batch']}-{_slug(f['precision'], 20)}-{digest}")


def plan_path(repo: Path, key: str, name: str) -> Path:
    return Path(repo) / PLAN_FOLDER / key / f"{name}.plan"


def choose_plan(entries: list[dict], gpu_name: str, compute_capability, trt_version: str, onnx_sha256: str,
                max_batch: int | None = None, precision: str | None = None) -> dict | None:
    """Among key.json records, the one built for this GPU, TensorRT and ONNX file (and the given
    max_batch / precision when set); the largest max_batch wins, then the key, so the choice is
    deterministic. None when nothing fits."""
    want = key_fields(gpu_name, compute_capability, trt_version, onnx_sha256, max_batch or 0, precision or "")
    fits = [e for e in entries
            if all(e.get(k) == want[k] for k in ("gpu_name", "compute_capability", "trt_version", "onnx_sha256"))
            and (max_batch is None or e.get("max_batch") == max_batch)
            and (precision is None or e.get("precision") == precision)]
    return max(fits, key=lambda e: (e.get("max_batch", 0), e.get("key", "")), default=None)


def read_keys(repo: Path, name: str) -> list[dict]:
    """key.json of every cache folder under <repo>/tensorrt that holds a plan for `name`."""
    entries = []
    for key_file in sorted((Path(repo) / PLAN_FOLDER).glob(f"*/{KEY_FILE}")):
        if (key_file.parent / f"{name}.plan").is_file():
            try:
                entries.append({**json.loads(key_file.read_text()), "key": key_file.parent.name})
            except (OSError, ValueError):
                log.warning("unreadable %s; ignored", key_file)
    return entries


# ---- The machine ----------------------------------------------------------------------------

def nvidia_gpu_visible() -> bool:
    """Whether the NVIDIA driver lists a GPU, without importing a CUDA library (cheap). Off Linux,
    where /proc has no driver folder, the answer is left to torch.cuda."""
    if not sys.platform.startswith("linux"):
        return True
    gpus = Path("/proc/driver/nvidia/gpus")
    return gpus.is_dir() and any(gpus.iterdir())


def require_tensorrt():
    """The tensorrt module, after checking that an NVIDIA GPU is there and that torch can use it;
    otherwise one clear error that lists everything missing."""
    problems, trt = [], None
    try:
        import tensorrt as trt  # noqa: F811
    except ImportError:
        problems.append(f"TensorRT is not installed: {INSTALL_HINT}")
    if not nvidia_gpu_visible():
        problems.append("no NVIDIA GPU found (TensorRT runs only on one); use the onnxruntime backend here")
    if not problems:  # torch is slow to import: only once the rest is there
        try:
            import torch
        except ImportError:
            problems.append("torch is not installed (the TensorRT backend keeps its buffers in torch CUDA "
                            "tensors): pip install torch")
        else:
            if not torch.cuda.is_available():
                problems.append("torch cannot use the GPU (torch.cuda.is_available() is False: a CPU-only torch "
                                "build, or CUDA_VISIBLE_DEVICES hides it)")
    if problems:
        raise TensorRTUnavailable("; ".join(problems))
    return trt


def gpu_identity(device: int = 0) -> tuple[str, tuple[int, int]]:
    """(GPU name, compute capability) of a CUDA device, as the cache key wants them."""
    import torch

    return torch.cuda.get_device_name(device), tuple(torch.cuda.get_device_capability(device))


def _torch_dtype(torch, trt_dtype):
    names = {"FLOAT": torch.float32, "HALF": torch.float16, "BF16": torch.bfloat16, "INT32": torch.int32,
             "INT64": torch.int64, "INT8": torch.int8, "UINT8": torch.uint8, "BOOL": torch.bool}
    name = getattr(trt_dtype, "name", str(trt_dtype).rsplit(".", 1)[-1])
    if name not in names:
        raise EngineError(f"TensorRT tensor type {name} is not supported by this engine")
    return names[name]


def output_numpy_dtype(torch_dtype) -> type:
    """What callers get back: the ONNX contract's int64 and float32, whatever the plan computed in
    (an fp16/bf16 plan, or TensorRT 8 narrowing int64 to int32), so samplers see one type."""
    if torch_dtype.is_floating_point:
        return np.float32
    return np.bool_ if str(torch_dtype) == "torch.bool" else np.int64


def to_numpy(x) -> np.ndarray:
    """A host torch tensor as the numpy array callers expect (numpy has no bfloat16, so floats go
    through float32 in torch first)."""
    want = output_numpy_dtype(x.dtype)
    return (x.float() if x.is_floating_point() else x).numpy().astype(want, copy=False)


# ---- The engine -----------------------------------------------------------------------------

@register_backend("tensorrt")
class TensorRTEngine(Engine):
    """Engine over one cached plan. `max_batch` / `precision` pick a specific build; by default
    the build for this GPU, TensorRT version and ONNX file with the largest max_batch."""

    @classmethod
    def open(cls, repo: Path, name: str, file: str, options: EngineOptions) -> "TensorRTEngine":
        return cls(name, repo, file, max_batch=options.plan_max_batch, precision=options.plan_precision)

    def __init__(self, name: str, repo: Path, file: str, *, device: int = 0, max_batch: int | None = None,
                 precision: str | None = None):
        trt = require_tensorrt()
        import torch

        self.trt, self.torch, self.name = trt, torch, name
        repo = Path(repo)
        onnx_file = repo / file
        if not onnx_file.is_file():
            raise EngineError(f"{name}: no ONNX file at {onnx_file} (the plan cache is keyed by its hash)")
        gpu, cc = gpu_identity(device)
        entry = choose_plan(read_keys(repo, name), gpu, cc, trt.__version__, sha256_file(onnx_file),
                            max_batch, precision)
        if entry is None:
            wanted = "" if max_batch is None else f" with max batch {max_batch}"
            flag = "" if max_batch is None else f" --max-batch {max_batch}"
            raise EngineError(f"{name}: no TensorRT plan{wanted} in {repo / PLAN_FOLDER} for {gpu} (sm {_capability(cc)}), "
                              f"TensorRT {trt.__version__} and this {file}; build one with "
                              f"`kinetoscope export tensorrt --repo {repo}{flag}`")
        self.plan = plan_path(repo, entry["key"], name)
        self.device = torch.device("cuda", device)
        with torch.cuda.device(self.device):
            self._logger = trt.Logger(trt.Logger.WARNING)
            self._runtime = trt.Runtime(self._logger)
            self.engine = self._runtime.deserialize_cuda_engine(self.plan.read_bytes())
            if self.engine is None:
                raise EngineError(f"{name}: TensorRT could not load {self.plan} (rebuild it)")
            self.context = self.engine.create_execution_context()
            self.stream = torch.cuda.Stream(self.device)
        tensors = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        is_input = {t: self.engine.get_tensor_mode(t) == trt.TensorIOMode.INPUT for t in tensors}
        self.input_names = [t for t in tensors if is_input[t]]
        self.output_names = [t for t in tensors if not is_input[t]]
        self._dtypes = {t: _torch_dtype(torch, self.engine.get_tensor_dtype(t)) for t in tensors}
        # (min, opt, max) of profile 0 per input: checked before a call so the error names the limit.
        self.profile = {t: [tuple(s) for s in self.engine.get_tensor_profile_shape(t, 0)] for t in self.input_names}
        self.max_batch = entry.get("max_batch")
        # One execution context: calls on this engine are serialised (the batching queue runs
        # one call at a time anyway; the lock makes that a guarantee).
        self._lock = threading.Lock()
        log.info("%s: TensorRT plan %s", name, self.plan)

    def set_names(self, inputs: list[str], outputs: list[str]) -> None:
        """The manifest's names and order; they must be the plan's tensors."""
        if set(inputs) != set(self.input_names) or set(outputs) != set(self.output_names):
            raise EngineError(f"{self.name}: plan {self.plan} has inputs {self.input_names} and outputs "
                              f"{self.output_names}, the manifest says {inputs} and {outputs} (rebuild the plan)")
        self.input_names, self.output_names = list(inputs), list(outputs)

    def _check_shape(self, tensor: str, shape: tuple[int, ...]) -> None:
        low, _, high = self.profile[tensor]
        if len(shape) != len(low) or any(not lo <= s <= hi for s, lo, hi in zip(shape, low, high)):
            raise EngineError(f"{self.name}: input {tensor} has shape {list(shape)}, the plan takes "
                              f"{list(low)}..{list(high)} (rebuild with a larger --max-batch, or lower "
                              f"max_batch_size)")

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        check_feeds(self.name, self.input_names, feeds)
        torch = self.torch
        with self._lock, torch.cuda.device(self.device), torch.cuda.stream(self.stream):
            keep = []  # device tensors must outlive the asynchronous call
            for t in self.input_names:
                array = np.ascontiguousarray(feeds[t])
                self._check_shape(t, array.shape)
                x = torch.from_numpy(array).to(self.device, non_blocking=True).to(self._dtypes[t]).contiguous()
                if not self.context.set_input_shape(t, tuple(array.shape)):
                    raise EngineError(f"{self.name}: TensorRT rejected shape {list(array.shape)} for {t}")
                keep.append(x)
                self.context.set_tensor_address(t, self._address(x, keep))
            outputs = {}
            for t in self.output_names:
                shape = tuple(self.context.get_tensor_shape(t))
                if any(s < 0 for s in shape):
                    raise EngineError(f"{self.name}: output {t} has an unresolved shape {list(shape)}")
                y = torch.empty(shape, dtype=self._dtypes[t], device=self.device)
                outputs[t] = y
                self.context.set_tensor_address(t, self._address(y, keep))
            if not self.context.execute_async_v3(self.stream.cuda_stream):
                raise EngineError(f"{self.name}: TensorRT execution failed (see the TensorRT log)")
            host = {t: y.to("cpu", non_blocking=False) for t, y in outputs.items()}
            self.stream.synchronize()
        return {t: to_numpy(host[t]) for t in self.output_names}

    def _address(self, x, keep: list) -> int:
        """A tensor's device address. An empty tensor (the AR prior's cache before the first step)
        may have address 0, which TensorRT refuses, so it gets a one-element stand-in."""
        if x.numel() > 0:
            return x.data_ptr()
        stand_in = self.torch.empty(1, dtype=x.dtype, device=self.device)
        keep.append(stand_in)
        return stand_in.data_ptr()
