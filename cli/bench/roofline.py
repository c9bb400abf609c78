"""The limit a benchmark figure is a share of: floating-point work per clip, counted from the ONNX
graphs, and the machine's measured matmul peak on the same backend and thread count.

    kinetoscope bench-runtime roofline [--repo model_repository] [--threads 0]

Counted: MatMul and Gemm (2 m k n per product, broadcast batches included: attention's
products are MatMuls in these graphs) and Conv / ConvTranspose (2 x output-or-input elements x
kernel volume x channels per group), from shapes that ONNX shape inference derives once every
symbolic dimension (batch, the autoregressive prior's `new` and `past`) is given a value, with
data propagation through Shape -> Reshape.
Element-wise ops, softmax and normalisation are left out (a few percent here); what a graph holds
that could not be counted is named, never silently dropped.

Every benchmark reads against it: `kinetoscope bench` reports, beside videos/s, the FLOPs of the
requests that completed (`RequestWork`: from each request body, as the server resolves it) and the
matmul peak measured in the same run (its `roofline` field and summary line), and `bench-runtime
tasks` adds each case's FLOPs per clip and share of the peak (`tasks_roofline`).
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np


def _dims(value_info) -> list[int] | None:
    shape = value_info.type.tensor_type.shape
    dims = [d.dim_value if d.HasField("dim_value") else None for d in shape.dim]
    return None if any(d is None for d in dims) else dims


def graph_flops(path: Path | str, dims: dict[str, int]) -> tuple[int, list[str]]:
    """FLOPs of one call of the graph at `path` with its symbolic input dimensions set to `dims`
    -> (count, the op types that could not be counted for want of a shape)."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    for tensor in model.graph.input:
        for d in tensor.type.tensor_type.shape.dim:
            if d.dim_param:
                if d.dim_param not in dims:
                    raise ValueError(f"{Path(path).name}: give a value for its dimension {d.dim_param!r}")
                d.dim_value = dims[d.dim_param]
    inferred = onnx.shape_inference.infer_shapes(model, data_prop=True)  # through Shape -> Reshape too
    shapes = {v.name: _dims(v) for v in [*inferred.graph.value_info, *inferred.graph.input, *inferred.graph.output]}
    shapes.update({t.name: list(t.dims) for t in inferred.graph.initializer})
    total, missed = 0, []
    for node in inferred.graph.node:
        if node.op_type not in ("MatMul", "Gemm", "Conv", "ConvTranspose"):
            continue
        a, b = shapes.get(node.input[0]), shapes.get(node.input[1])
        out = shapes.get(node.output[0])
        if a is None or b is None or out is None:
            missed.append(node.op_type)
            continue
        if node.op_type == "MatMul":  # out [..., m, n], inner k = a[-1]
            total += 2 * int(np.prod(out)) * a[-1]
        elif node.op_type == "Gemm":
            trans_a = next((x.i for x in node.attribute if x.name == "transA"), 0)
            total += 2 * int(np.prod(out)) * (a[0] if trans_a else a[1])
        elif node.op_type == "Conv":  # weight [Cout, Cin/g, *k]
            total += 2 * int(np.prod(out)) * int(np.prod(b[1:]))
        else:  # ConvTranspose, weight [Cin, Cout/g, *k]: every input element meets Cout/g x k weights
            total += 2 * int(np.prod(a)) * int(np.prod(b[1:]))
    return total, missed


def matmul_peak(threads: int = 0, n: int = 1024, repeat: int = 20) -> float:
    """FLOP/s of an n x n float32 MatMul on ONNX Runtime's CPU provider with `threads` intra-op
    threads (0 = its default), the best of `repeat` timed runs after a warm-up."""
    import onnxruntime as ort
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("MatMul", ["a", "b"], ["c"])], "probe",
                              [helper.make_tensor_value_info("a", TensorProto.FLOAT, [n, n]),
                               helper.make_tensor_value_info("b", TensorProto.FLOAT, [n, n])],
                              [helper.make_tensor_value_info("c", TensorProto.FLOAT, [n, n])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = min(model.ir_version, 9)
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    session = ort.InferenceSession(model.SerializeToString(),
                                   options, providers=["CPUExecutionProvider"])
    feeds = {"a": np.random.default_rng(0).random((n, n), np.float32), "b": np.random.default_rng(1).random((n, n), np.float32)}
    session.run(None, feeds)
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        session.run(None, feeds)
        best = min(best, time.perf_counter() - start)
    return 2 * n ** 3 / best


@dataclass
class ClipWork:
    name: str
    flops: float  # per clip
    missed: list[str]


def clip_work(repo: Path, manifest, steps: int = 12) -> list[ClipWork]:
    """FLOPs per clip of one window at the base size for the demo's samplers: MaskGIT (12 steps, with and
    without guidance's second row), autoregressive (one token per call, the KV cache growing), the
    encoder of a conditioned task, and each super-resolution stage."""
    n = manifest.num_tokens
    per = {}
    for name in ("encoder", "decoder", "prior"):
        per[name] = graph_flops(repo / getattr(manifest, name).file, {"batch": 1})
    # Decoding one token at a time with the KV cache does the work of one teacher-forced pass over
    # the n tokens, less the upper triangle of each attention product that the cache never forms:
    # the pass is counted (shape inference also follows it through every op), a bound a little high.
    first = graph_flops(repo / manifest.ar_prior.file, {"batch": 1, "new": n, "past": 0})
    ar_total = first[0]
    rows = []
    dec, prior = per["decoder"][0], per["prior"][0]
    rows.append(ClipWork(f"MaskGIT {steps} steps, class-conditional", steps * prior + dec, per["prior"][1]))
    rows.append(ClipWork(f"MaskGIT {steps} steps, guidance (2 rows)", 2 * steps * prior + dec, per["prior"][1]))
    rows.append(ClipWork("autoregressive, class-conditional (bound)", ar_total + dec, first[1]))
    rows.append(ClipWork("autoregressive, guidance (2 rows, bound)", 2 * ar_total + dec, first[1]))
    rows.append(ClipWork("+ encoder (tasks with an input video)", per["encoder"][0], per["encoder"][1]))
    for stage in manifest.super_resolution:
        flops, missed = graph_flops(repo / stage.file, {"batch": 1})
        rows.append(ClipWork(f"+ super-resolution to {stage.out_size[1]}x{stage.out_size[0]}", flops, missed))
    return rows


def roofline_table(repo: Path, threads: int = 0) -> str:
    from server.manifest import load_manifest

    repo = Path(repo)
    if not (repo / "manifest.json").is_file():
        repo = next(p.parent for p in repo.glob("*/manifest.json"))
    manifest = load_manifest(repo, verify=False)
    peak = matmul_peak(threads)
    lines = [f"measured matmul peak (ONNX Runtime CPU, 1024x1024 float32, threads={threads or 'default'}): "
             f"{peak / 1e9:.1f} GFLOP/s", "",
             f"| per {manifest.window_frames}-frame {manifest.base_size[1]}x{manifest.base_size[0]} clip | GFLOP | "
             "ceiling at the peak (clips/s) | not counted |",
             "| --- | ---: | ---: | --- |"]
    for row in clip_work(repo, manifest):
        lines.append(f"| {row.name} | {row.flops / 1e9:.2f} | {peak / row.flops:.1f} | "
                     f"{', '.join(sorted(set(row.missed))) or '-'} |")
    return "\n".join(lines)


class RequestWork:
    """FLOPs of one request's network calls, from the request body as the server reads it.

    The body goes through the API's own validation (server.api.validation, with the served model's
    sampler defaults), so the sampler counted is the one the server runs. Per window (the plan of
    `server.conditioning.plan_windows`): the encoder when anything is given (the first window of a
    task with an input; every later window, whose overlap frames are given), MaskGIT's `steps`
    prior calls or the autoregressive bound (see `clip_work`), doubled by guidance's null-class row
    when there is a class to guide towards, and one decoder call; then each super-resolution stage
    once per window-sized chunk of frames. Previews' extra decoder calls are not counted."""

    def __init__(self, repo: Path, manifest):
        from server.settings import Settings

        self.repo, self.manifest = Path(repo), manifest
        self.per = {name: graph_flops(self.repo / getattr(manifest, name).file, {"batch": 1})[0]
                    for name in ("encoder", "decoder", "prior")}
        if manifest.ar_prior is not None:
            self.per["ar_prior"] = graph_flops(self.repo / manifest.ar_prior.file,
                                               {"batch": 1, "new": manifest.num_tokens, "past": 0})[0]
        self.sr = {tuple(s.out_size): graph_flops(self.repo / s.file, {"batch": 1})[0] for s in manifest.super_resolution}
        self.settings = Settings(model_repository=".", max_steps=1 << 20, max_num_frames=1 << 20)

    def flops(self, body: dict) -> float:
        from server.api.validation import validate_request
        from server.conditioning import plan_windows
        from server.request import needs_input

        m = self.manifest
        body = {k: v for k, v in body.items() if k not in ("input_video", "input_video_id")}
        if needs_input(body.get("task", "")):
            body["input_video_id"] = "direct"
        req = validate_request(body, m, self.settings)
        windows = len(plan_windows(req.num_frames, m.window_frames, m.default_condition_frames))
        s = req.sampler
        rows = 2 if s.guidance_scale != 0 and req.class_label is not None else 1
        sampling = s.steps * self.per["prior"] if s.method == "maskgit" else self.per["ar_prior"]
        encoder_calls = windows if needs_input(req.task) else windows - 1
        total = windows * (rows * sampling + self.per["decoder"]) + encoder_calls * self.per["encoder"]
        chunks = -(-req.num_frames // m.window_frames)
        for stage in m.super_resolution:
            if tuple(req.size.hw) == tuple(m.base_size):
                break
            total += chunks * self.sr[tuple(stage.out_size)]
            if tuple(stage.out_size) == tuple(req.size.hw):
                break
        return float(total)


def find_repository(model_id: str | None, repo: Path | None = None) -> Path | None:
    """The local model repository of `model_id`: `repo` itself or `repo/<model_id>` (default
    `model_repository`), when its manifest names that model."""
    from server.manifest import load_manifest

    root = Path(repo) if repo is not None else Path("model_repository")
    for candidate in ([root] if (root / "manifest.json").is_file() else []) + ([root / model_id] if model_id else []):
        if (candidate / "manifest.json").is_file():
            try:
                if model_id is None or load_manifest(candidate, verify=False).model_id == model_id:
                    return candidate
            except Exception:  # a broken manifest is no roofline, never a failed benchmark
                continue
    return None


def roofline_report(work: "RequestWork", bodies: list[dict], wall_s: float, peak: float) -> dict:
    """The report's `roofline`: the completed requests' FLOPs against the wall time and the peak."""
    flops = [work.flops(b) for b in bodies]
    if not flops or wall_s <= 0:
        return {"peak_gflop_per_s": peak / 1e9, "reason": "no completed request"}
    per_clip = float(np.mean(flops))
    achieved = sum(flops) / wall_s
    return {"peak_gflop_per_s": peak / 1e9, "gflop_per_clip": per_clip / 1e9, "achieved_gflop_per_s": achieved / 1e9,
            "share_of_peak": achieved / peak, "ceiling_videos_per_second": peak / per_clip,
            "repository": str(work.repo),
            "peak_probe": "1024x1024 float32 MatMul, ONNX Runtime CPU, default threads, on the machine running the bench"}


def tasks_roofline(repo: Path, rows: list[dict]) -> str:
    """`bench-runtime tasks`' rows (one request at a time) as shares of the limit: each case's
    FLOPs per clip (RequestWork) and its seconds per clip against the peak measured now, on the
    ONNX Runtime CPU backend only (the peak probe's)."""
    from server.benchmarks import all_cases, case_body
    from server.manifest import load_manifest

    repo = Path(repo)
    if not (repo / "manifest.json").is_file():
        repo = next(p.parent for p in repo.glob("*/manifest.json"))
    work = RequestWork(repo, load_manifest(repo, verify=False))
    peak = matmul_peak()
    flops = {name: work.flops(case_body(task, kw, sampler, size, frames)) for name, task, kw, sampler, size, frames in all_cases()}
    lines = [f"measured matmul peak (ONNX Runtime CPU, 1024x1024 float32, default threads): {peak / 1e9:.1f} GFLOP/s", "",
             "| case (onnxruntime, one request at a time) | GFLOP per clip | GFLOP/s | share of peak |",
             "| --- | ---: | ---: | ---: |"]
    for row in rows:
        if row["backend"] == "onnxruntime" and row["case"] in flops:
            f = flops[row["case"]]
            rate = f / row["seconds_per_clip"]
            lines.append(f"| {row['case']} | {f / 1e9:.2f} | {rate / 1e9:.1f} | {rate / peak:.0%} |")
    return "\n".join(lines)
