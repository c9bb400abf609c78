"""`kinetoscope export onnx`: demo checkpoints -> a model repository the server can load.

One ONNX file per network with a dynamic batch dimension, a parity check of each against
PyTorch on sample inputs (it fails above the tolerances below), and `manifest.json`.

Graph inputs and outputs (the engine contract the server codes against):
  encoder        video (B, 3, T, H, W) float32 in [0, 1]                 -> tokens (B, t, h, w) int64
  decoder        tokens (B, t, h, w) int64                               -> video (B, 3, T, H, W) float32
  prior          tokens, cond, state (B, N) int64; class_id (B,) int64    -> logits (B, N, V) float32
  ar_prior       ids, cond, state (B, n) int64; past_key, past_value
                 (L, B, heads, P, head_dim) float32                       -> logits (B, n, V), present_key,
                                                                             present_value (L, B, heads, P+n, head_dim)
  sr_WxH         video (B, 3, T, h, w) float32; noise_level (B,) float32  -> video (B, 3, T, 2h, 2w)

A factorized vocabulary (models/priors.py): V above becomes sum(factors) in the priors' logits
(each factor's logits concatenated), and the manifest's `token_factors` on the encoder, decoder,
prior and ar_prior entries records the factorization (the tokenizer's 2^b_k per bit group must
equal the priors' factors; absent when unfactorized).
"""
from __future__ import annotations

import json
import logging
import shutil
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import torch

from models.checkpoint import load_network
from models.priors import ARPriorExport
from models.tokenizer import DecoderExport, EncoderExport
from server.manifest import SCHEMA_VERSION, Manifest, NetworkFile, SuperResolutionStage, sha256_file

log = logging.getLogger("kinetoscope.export")

OPSET = 18
# Parity tolerances between PyTorch (fp32, CPU) and ONNX Runtime (CPU). Float outputs: max abs
# difference. Tokens: the share that agree — an LFQ bit whose latent sits within float noise
# of zero may flip, so a tiny disagreement is allowed.
FLOAT_TOLERANCE = 2e-3
TOKEN_AGREEMENT = 0.995
DEMO_CHECKPOINTS = Path(__file__).resolve().parent.parent / "models" / "checkpoints" / "demo"
# The manifest's fps when the tokenizer's json does not record the frame rate of the clips it was
# trained on (`meta.fps`); export warns when it falls back to it.
FALLBACK_FPS = 8


class ParityError(RuntimeError):
    pass


@dataclass
class Parity:
    network: str
    max_abs_diff: float | None = None
    token_agreement: float | None = None

    def check(self) -> None:
        if self.max_abs_diff is not None and not self.max_abs_diff <= FLOAT_TOLERANCE:
            raise ParityError(f"{self.network}: max abs difference {self.max_abs_diff:.2e} > {FLOAT_TOLERANCE:.0e}")
        if self.token_agreement is not None and self.token_agreement < TOKEN_AGREEMENT:
            raise ParityError(f"{self.network}: token agreement {self.token_agreement:.4f} < {TOKEN_AGREEMENT}")


def _export(module: torch.nn.Module, args: tuple, path: Path, inputs: list[str], outputs: list[str],
            dynamic: dict[str, dict[int, str]], torch_program: bool = True) -> None:
    """torch.export with named dynamic axes, then ONNX (weights embedded in one file). The
    exported program itself is saved as `<name>.pt2` for the torch engine backend."""
    from torch.export import Dim

    dims: dict[str, Dim] = {}
    shapes = []
    for name, arg in zip(inputs, args):
        axes = dynamic.get(name, {})
        shapes.append({i: dims.setdefault(label, Dim(label, min=0 if label == "past" else 1, max=4096))
                       for i, label in axes.items()} or None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        onnx_program = torch.onnx.export(module, args, dynamic_shapes=tuple(shapes), input_names=inputs,
                                         output_names=outputs, opset_version=OPSET, dynamo=True, verbose=False)
        if torch_program and onnx_program.exported_program is not None:
            torch.export.save(onnx_program.exported_program, str(path.with_suffix(".pt2")))
    onnx_program.save(str(path), external_data=False)
    onnx.checker.check_model(str(path))


def _session(path: Path):
    import onnxruntime as ort

    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def _max_diff(a, b) -> float:
    return float(np.max(np.abs(np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64))))


SAMPLER_DEFAULTS_FILE = "sampler_defaults.json"


def _sampler_defaults(checkpoints: Path) -> dict:
    """The family's recommended sampler per task (the checkpoint folder's sampler_defaults.json,
    written from what its evaluation measured best), or none: requests then get the built-in ones."""
    path = checkpoints / SAMPLER_DEFAULTS_FILE
    if not path.is_file():
        return {}
    data = json.loads(path.read_text())
    return {task: entry for task, entry in data.items() if not task.startswith("_")}  # "_comment" keys


@dataclass(frozen=True)
class VideoShape:
    """The video a family works on, as its own checkpoints describe it (never a data module's
    constants): the prior's token grid times the tokenizer's stride gives the window and the base
    size, and the tokenizer's json records the frame rate of its training clips."""

    frames: int  # the window: frames per token grid
    base_size: tuple[int, int]  # (H, W) of the prior's video
    stride: int  # frames per latent frame, and pixels per token side
    fps: int
    condition_frames: int  # the default for prediction tasks: one latent frame's worth

    @classmethod
    def of(cls, tokenizer: torch.nn.Module, prior: torch.nn.Module, tokenizer_info: dict) -> "VideoShape":
        stride = tokenizer.cfg.stride
        t, h, w = prior.cfg.grid
        frames = t * stride
        fps = tokenizer_info.get("meta", {}).get("fps")
        if fps is None:
            log.warning("tokenizer.json records no meta.fps (the frame rate of its training clips); "
                        "the manifest says FALLBACK_FPS = %d", FALLBACK_FPS)
            fps = FALLBACK_FPS
        return cls(frames=frames, base_size=(h * stride, w * stride), stride=stride, fps=int(fps),
                   condition_frames=max(1, min(stride, frames - 1)))


def token_factors(tokenizer: torch.nn.Module, prior: torch.nn.Module) -> tuple[int, ...]:
    """The family's token factorization, () when unfactorized; the tokenizer's bit groups (as
    sub-vocabulary sizes 2^b_k) and the prior's factors must be the same."""
    return same_vocabulary(("tokenizer", tokenizer.cfg.vocab_size, tokenizer.cfg.token_factors),
                           ("masked prior", prior.cfg.vocab_size, prior.cfg.factors))


def same_vocabulary(a: tuple[str, int, tuple[int, ...]], b: tuple[str, int, tuple[int, ...]]) -> tuple[int, ...]:
    """Two networks' (name, vocab_size, factors) must be one vocabulary -> its factors; else ValueError."""
    (a_name, a_size, a_factors), (b_name, b_size, b_factors) = a, b
    if tuple(a_factors) != tuple(b_factors) or a_size != b_size:
        raise ValueError(f"the {a_name}'s vocabulary ({a_size}, factors {list(a_factors)}) is not the {b_name}'s "
                         f"({b_size}, factors {list(b_factors)}): not one family")
    return tuple(b_factors)


def export_repository(checkpoints: str | Path = DEMO_CHECKPOINTS, out_dir: str | Path = "model_repository/moving-digits",
                      model_id: str = "moving-digits", check: bool = True) -> Manifest:
    """Exports every network in `checkpoints` to `out_dir` and writes the manifest."""
    checkpoints, out = Path(checkpoints), Path(out_dir)
    tmp = out.with_name(out.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    torch.manual_seed(0)
    tok, tok_info = load_network(checkpoints, "tokenizer")
    prior, _ = load_network(checkpoints, "masked_prior")
    pcfg = prior.cfg
    shape = VideoShape.of(tok, prior, tok_info)
    stride, grid = shape.stride, pcfg.grid
    # Parity inputs: any clips of the window's shape will do (the check compares PyTorch with
    # ONNX Runtime on the same input), so seeded noise, not a data set's clips.
    video = torch.rand(2, 3, shape.frames, *shape.base_size)
    cls = torch.arange(2) % pcfg.num_classes  # class ids of the two clips
    reports: list[Parity] = []
    files: dict[str, NetworkFile] = {}

    def add(name: str, module, args, inputs, outputs, dynamic) -> Path:
        path = tmp / f"{name}.onnx"
        log.info("exporting %s", name)
        _export(module, args, path, inputs, outputs, dynamic)
        files[name] = NetworkFile(file=path.name, sha256=sha256_file(path), inputs=inputs, outputs=outputs)
        return path

    batch = {0: "batch"}
    # 1. Tokenizer encoder and decoder.
    enc = add("encoder", EncoderExport(tok).eval(), (video,), ["video"], ["tokens"], {"video": batch})
    tokens = tok.encode(video)
    if tuple(tokens.shape[1:]) != tuple(grid):
        raise ValueError(f"the tokenizer encodes a window of {shape.frames} frames at {shape.base_size} to a token grid "
                         f"{tuple(tokens.shape[1:])}, but the masked prior's grid is {tuple(grid)}: not one family")
    factors = token_factors(tok, prior)
    dec = add("decoder", DecoderExport(tok).eval(), (tokens,), ["tokens"], ["video"], {"tokens": batch})
    if check:
        got = _session(enc).run(None, {"video": video.numpy()})[0]
        reports.append(Parity("encoder", token_agreement=float((got == tokens.numpy()).mean())))
        with torch.no_grad():
            want = tok.decode(tokens).numpy()
        reports.append(Parity("decoder", max_abs_diff=_max_diff(_session(dec).run(None, {"tokens": tokens.numpy()})[0], want)))

    # 2. Masked prior.
    n = pcfg.num_tokens
    flat = tokens.reshape(2, -1)
    masked = torch.where(torch.rand(2, n) < 0.5, torch.full_like(flat, pcfg.mask_id), flat)
    cond = torch.full_like(flat, pcfg.mask_id)
    state = torch.zeros_like(flat)
    p = add("prior", prior, (masked, cond, state, cls), ["tokens", "cond", "state", "class_id"], ["logits"],
            {k: batch for k in ("tokens", "cond", "state", "class_id")})
    if check:
        with torch.no_grad():
            want = prior(masked, cond, state, cls).numpy()
        got = _session(p).run(None, {"tokens": masked.numpy(), "cond": cond.numpy(), "state": state.numpy(), "class_id": cls.numpy()})[0]
        reports.append(Parity("prior", max_abs_diff=_max_diff(got, want)))

    # 3. Autoregressive prior with an explicit KV cache.
    ar_spec = None
    if (checkpoints / "ar_prior.json").is_file():
        ar, _ = load_network(checkpoints, "ar_prior")
        same_vocabulary(("autoregressive prior", ar.cfg.vocab_size, ar.cfg.factors),
                        ("masked prior", pcfg.vocab_size, pcfg.factors))
        L, H, D = len(ar.blocks), ar.cfg.heads, ar.cfg.dim // ar.cfg.heads
        ids = ar.input_ids(flat, cls)
        seq = {0: "batch", 1: "new"}
        cache = {1: "batch", 3: "past"}
        with torch.no_grad():
            _, pk, pv = ar(ids[:, :3], cond[:, :3], state[:, :3])
        a = add("ar_prior", ARPriorExport(ar).eval(), (ids[:, 3:7], cond[:, 3:7], state[:, 3:7], pk, pv),
                ["ids", "cond", "state", "past_key", "past_value"], ["logits", "present_key", "present_value"],
                {"ids": seq, "cond": seq, "state": seq, "past_key": cache, "past_value": cache})
        if check:
            sess = _session(a)
            with torch.no_grad():
                full = ar(ids, cond, state)[0].numpy()
            # Prefill 5 positions from an empty cache, then one position at a time: must match
            # the full causal pass.
            empty = np.zeros((L, 2, H, 0, D), np.float32)
            logits, k, v = sess.run(None, {"ids": ids[:, :5].numpy(), "cond": cond[:, :5].numpy(), "state": state[:, :5].numpy(),
                                           "past_key": empty, "past_value": empty})
            diffs = [_max_diff(logits, full[:, :5])]
            for i in range(5, 9):
                logits, k, v = sess.run(None, {"ids": ids[:, i:i + 1].numpy(), "cond": cond[:, i:i + 1].numpy(),
                                               "state": state[:, i:i + 1].numpy(), "past_key": k, "past_value": v})
                diffs.append(_max_diff(logits, full[:, i:i + 1]))
            reports.append(Parity("ar_prior", max_abs_diff=max(diffs)))
        ar_spec = {"num_layers": L, "num_heads": H, "head_dim": D}

    # 4. Super-resolution stages, in order of size.
    stages: list[SuperResolutionStage] = []
    low = video
    (height, width) = shape.base_size
    while (checkpoints / f"sr_{width * 2}.json").is_file():  # named by output width, as checkpoint_of reads them
        sr, _ = load_network(checkpoints, f"sr_{width * 2}")
        name = f"sr_{width * 2}x{height * 2}"
        level = torch.full((2,), sr.cfg.serve_noise)
        path = add(name, sr, (low, level), ["video", "noise_level"], ["video_hr"], {"video": batch, "noise_level": batch})
        with torch.no_grad():
            high = sr(low, level)
        if check:
            got = _session(path).run(None, {"video": low.numpy(), "noise_level": level.numpy()})[0]
            reports.append(Parity(name, max_abs_diff=_max_diff(got, high.numpy())))
        f = files.pop(name)
        stages.append(SuperResolutionStage(**f.model_dump(), scale=2, in_size=(height, width),
                                           out_size=(height * 2, width * 2), noise_level=sr.cfg.serve_noise))
        low, height, width = high.clamp(0, 1), height * 2, width * 2

    for report in reports:
        log.info("parity %s", report)
        report.check()
    if factors:  # on the networks that speak token ids (server/manifest.py)
        for name in ("encoder", "decoder", "prior", "ar_prior"):
            if name in files:
                files[name].token_factors = list(factors)
    manifest = Manifest(
        schema_version=SCHEMA_VERSION, model_id=model_id,
        description="Moving Digits demo family: causal LFQ tokenizer, masked and autoregressive priors, x2 super-resolution cascade",
        classes=[str(i) for i in range(pcfg.num_classes)], window_frames=shape.frames,
        default_condition_frames=shape.condition_frames, base_size=shape.base_size, fps=shape.fps, token_grid=grid,
        temporal_stride=stride, spatial_stride=stride,
        vocab_size=pcfg.vocab_size, mask_token_id=pcfg.mask_id, null_class_id=pcfg.null_class, null_cond_id=pcfg.mask_id,
        encoder=files["encoder"], decoder=files["decoder"], prior=files["prior"], ar_prior=files.get("ar_prior"),
        ar=ar_spec, samplers=["maskgit", "autoregressive"] if ar_spec else ["maskgit"],
        super_resolution=stages, sampler_defaults=_sampler_defaults(checkpoints), opset=OPSET,
        exporter={"torch": torch.__version__, "onnx": onnx.__version__, "parity": json.dumps([r.__dict__ for r in reports])},
    )
    (tmp / "manifest.json").write_text(manifest.model_dump_json(indent=2, exclude_none=True) + "\n")
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)  # a half-written repository never replaces a good one
    return manifest
