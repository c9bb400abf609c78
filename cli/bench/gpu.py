"""One prepared GPU run (#10 item 4): `kinetoscope serve` on the torch backend under `kinetoscope
bench`, over a matrix of engine settings, with MFU against the GPU's bf16 peak.

    scripts/gpu-bench.sh [--out runs/gpu-bench]          # on a machine with one NVIDIA GPU
    scripts/gpu-bench.sh --device cpu --matrix smoke ...  # the same code path on a CPU (the test)

What it does, in one process, well inside 10 minutes on one GPU:
1. The model repository: assembled from the committed bundle and checkpoints if absent
   (`kinetoscope export assemble`, numpy only), and the torch backend's `<network>.pt2`
   programs exported beside the ONNX files if absent (cli/bench/programs.py: torch.export only).
2. The limit: FLOPs per clip counted from the ONNX graphs (cli/bench/roofline.py), and the peak:
   a bf16 matmul probe on the device (8192^3, median of 10 after 3 warm-ups; on a CPU an fp32
   1024^3 one), beside the datasheet's dense bf16 figure for known GPUs (DATASHEET_BF16).
3. For each server configuration of the matrix (dtype, step-level batching on/off, eager / CUDA
   graphs / torch.compile; server/engines/torch.py), a `kinetoscope serve` subprocess on a free
   port, a warm-up (compiles and captures happen there), then `kinetoscope bench` (closed loop,
   class_conditional 32x32 16 frames, `Prefer: wait`, the video downloaded) with the MaskGIT and
   the autoregressive sampler at each concurrency (1, 16, 64 by default).
4. One JSON with every run and the Markdown table (also printed). MFU = clips/s x FLOPs per clip
   / peak, for both peaks; the autoregressive FLOPs are an upper bound (roofline.py), so its MFU is too.

A configuration that fails (a server that does not start, a capture or compile that breaks) is
recorded with the end of its server's log and the run goes on; configurations that would not
finish within --budget-s are skipped and listed as such.
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "models" / "checkpoints" / "demo"
MODEL_ID = "moving-digits"

# Dense bf16 tensor-core peak (TFLOP/s) by a substring of torch.cuda.get_device_name(), first match
# wins: NVIDIA's datasheets, which give twice these figures "with sparsity".
DATASHEET_BF16 = (
    ("H200 NVL", 835.0),
    ("H200", 989.0),  # H200 SXM (also GH200)
    ("H100 NVL", 835.0),
    ("H100 PCIe", 756.0),
    ("H100", 989.0),  # H100 SXM: "NVIDIA H100 80GB HBM3"
    ("A100", 312.0),
    ("L40S", 362.0),
    ("L4", 121.0),
)


def datasheet_bf16_flops(device_name: str) -> float | None:
    """The datasheet's dense bf16 FLOP/s of a GPU named `device_name`; None if unknown."""
    for key, tflops in DATASHEET_BF16:
        if key.lower() in device_name.lower():
            return tflops * 1e12
    return None


@dataclass
class ServerConfig:
    """One `kinetoscope serve` of the matrix, and the loads run against it."""

    label: str
    dtype: str = "bf16"
    batching: bool = True
    compile: str | None = None  # torch_compile mode
    cuda_graphs: bool = False
    loads: dict[str, list[int]] = field(default_factory=dict)  # sampler -> concurrencies

    @property
    def engine(self) -> str:
        parts = ([f"torch.compile {self.compile}"] if self.compile else []) + (["CUDA graphs"] if self.cuda_graphs else [])
        return " + ".join(parts) or "eager"


def matrix(name: str, concurrency: list[int]) -> list[ServerConfig]:
    """The configurations, most important first (a short budget drops the last). "full": bf16
    and fp32, batching on and off, eager, CUDA graphs and torch.compile; "smoke": two cheap ones
    (the CPU test)."""
    both = {"maskgit": list(concurrency), "autoregressive": list(concurrency)}
    if name == "smoke":
        return [ServerConfig("fp32 eager", dtype="fp32", loads=both),
                ServerConfig("bf16 eager, batching off", dtype="bf16", batching=False,
                             loads={"maskgit": [max(concurrency)]})]
    if name != "full":
        raise ValueError(f"matrix is full or smoke, not {name!r}")
    # Batching off serialises every call: the autoregressive sampler's 256 calls a clip at the
    # highest concurrency would take minutes, so it stops one step lower.
    off = {"maskgit": list(concurrency), "autoregressive": [c for c in concurrency if c < max(concurrency)] or [1]}
    return [
        ServerConfig("bf16 eager", loads=both),
        ServerConfig("bf16 eager, batching off", batching=False, loads=off),
        ServerConfig("fp32 eager", dtype="fp32", loads=both),
        ServerConfig("bf16 CUDA graphs", cuda_graphs=True, loads=both),
        ServerConfig("bf16 torch.compile", compile="default", loads=both),
        ServerConfig("fp32 CUDA graphs", dtype="fp32", cuda_graphs=True, loads=both),
        ServerConfig("bf16 torch.compile + CUDA graphs", compile="default", cuda_graphs=True, loads=both),
    ]


# -- the device ---------------------------------------------------------------------------------

def device_info(device: str) -> dict[str, Any]:
    import torch

    info: dict[str, Any] = {"device": device, "python": platform.python_version(), "torch": torch.__version__,
                            "cpu_count": os.cpu_count(), "platform": platform.platform()}
    if device.startswith("cuda"):
        props = torch.cuda.get_device_properties(torch.device(device))
        info.update(name=torch.cuda.get_device_name(torch.device(device)), cuda=torch.version.cuda,
                    multiprocessors=props.multi_processor_count, memory_gib=round(props.total_memory / 2**30, 1))
    else:
        info["name"] = f"CPU ({platform.processor() or platform.machine()}, {os.cpu_count()} cores)"
    return info


def matmul_peak(device: str, dtype: str | None = None, n: int | None = None, repeat: int = 10) -> dict[str, Any]:
    """FLOP/s of an n x n x n matmul on `device`: the median of `repeat` timed products after 3
    warm-ups (CUDA events on a GPU). Default bf16 at 8192 on a GPU, fp32 at 1024 on a CPU."""
    import torch

    cuda = device.startswith("cuda")
    dtype = dtype or ("bf16" if cuda else "fp32")
    n = n or (8192 if cuda else 1024)
    dt = {"bf16": torch.bfloat16, "fp32": torch.float32}[dtype]
    gen = torch.Generator(device=device).manual_seed(0)
    a = torch.randn(n, n, device=device, dtype=dt, generator=gen)
    b = torch.randn(n, n, device=device, dtype=dt, generator=gen)
    times = []
    for i in range(3 + repeat):
        if cuda:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            torch.matmul(a, b)
            end.record()
            end.synchronize()
            seconds = start.elapsed_time(end) / 1e3
        else:
            t0 = time.perf_counter()
            torch.matmul(a, b)
            seconds = time.perf_counter() - t0
        if i >= 3:
            times.append(seconds)
    times.sort()
    median = times[len(times) // 2]
    return {"flops_per_second": 2 * n ** 3 / median, "dtype": dtype, "n": n, "repeat": repeat,
            "median_seconds": median, "best_flops_per_second": 2 * n ** 3 / times[0]}


# -- the model repository -----------------------------------------------------------------------

def prepare_repository(repo_root: Path, checkpoints: Path = DEMO) -> dict[str, Any]:
    """`repo_root/moving-digits` with its ONNX files (assembled if absent) and every `.pt2`
    program (exported if absent) -> what was done and how long it took."""
    from cli.bench.programs import export_programs, missing_programs
    from server.manifest import load_manifest
    from server.repository import assemble

    repo = repo_root / MODEL_ID
    done: dict[str, Any] = {"repo": str(repo), "assembled": False, "exported": {}}
    start = time.perf_counter()
    if not (repo / "manifest.json").is_file():
        assemble(checkpoints / "onnx", checkpoints, repo)
        done["assembled"] = True
    manifest = load_manifest(repo, verify=False)
    missing = missing_programs(repo, manifest)
    if missing:
        done["exported"] = export_programs(checkpoints, repo, manifest, only=missing)
    done["seconds"] = round(time.perf_counter() - start, 2)
    return done


def flops_per_clip(repo: Path, steps: int, guidance: float) -> dict[str, Any]:
    """FLOPs of one 16-frame clip at the base size, per sampler (cli/bench/roofline.py's count)."""
    try:
        from cli.bench.roofline import clip_work
        from server.manifest import load_manifest

        rows = clip_work(repo, load_manifest(repo, verify=False), steps=steps)
    except ImportError as exc:  # no onnx package: no count, no MFU
        return {"maskgit": None, "autoregressive": None, "note": f"not counted: {exc}"}
    guided = guidance > 0
    maskgit = next(r for r in rows if r.name.startswith("MaskGIT") and ("guidance" in r.name) == guided)
    ar = next(r for r in rows if r.name.startswith("autoregressive") and ("guidance" in r.name) == guided)
    return {"maskgit": maskgit.flops, "autoregressive": ar.flops, "rows": [maskgit.name, ar.name],
            "note": "MatMul/Gemm/Conv FLOPs from the ONNX graphs; the autoregressive figure is an upper bound "
                    "(a teacher-forced pass), so its MFU is too"}


# -- servers and loads --------------------------------------------------------------------------

def output_format(choice: str) -> str:
    """mp4 where the server can run ffmpeg (imageio-ffmpeg's binary), else gif (Pillow)."""
    if choice != "auto":
        return choice
    try:
        import imageio_ffmpeg

        imageio_ffmpeg.get_ffmpeg_exe()
        return "mp4"
    except Exception:  # noqa: BLE001 - not installed, or no binary
        return "gif"


@contextlib.contextmanager
def live_server(repo_root: Path, config: ServerConfig, device: str, max_batch: int, workers: int, log_path: Path,
                ready_timeout_s: float = 300.0):
    """A `kinetoscope serve` subprocess (embedded queue and worker, jobs in memory) on the torch
    backend with `config`'s engine settings; yields (url, seconds to ready)."""
    import httpx

    from cli.bench.peers.launch import free_port

    port = free_port()
    cmd = [sys.executable, "-m", "cli", "serve", "--port", str(port), "--model-repository", str(repo_root),
           "--backend", "torch", "--torch-device", device, "--torch-dtype", config.dtype,
           "--batching" if config.batching else "--no-batching", "--max-batch-size", str(max_batch),
           "--worker-concurrency", str(workers), "--max-queue-length", str(max(256, 4 * workers)),
           "--job-store-dir", "", "--log-level", "warning",
           "--torch-cuda-graphs" if config.cuda_graphs else "--no-torch-cuda-graphs"]
    if config.compile:
        cmd += ["--torch-compile", config.compile]
    log = open(log_path, "wb")
    start = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
    url = f"http://127.0.0.1:{port}"
    try:
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"the server exited with status {proc.returncode} before it was ready")
            if time.monotonic() - start > ready_timeout_s:
                raise RuntimeError(f"the server was not ready after {ready_timeout_s:.0f} s")
            try:
                if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.25)
        yield url, time.monotonic() - start
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def sampler_fields(sampler: str, steps: int, guidance: float) -> dict[str, Any]:
    if sampler == "maskgit":
        return {"method": "maskgit", "steps": steps, "guidance_scale": guidance}
    return {"method": "autoregressive", "guidance_scale": guidance}


def bench(url: str, concurrency: int, requests: int, fields: dict, run_seconds: float | None,
          request_timeout_s: float) -> dict[str, Any]:
    """`kinetoscope bench` (cli/bench/client.py's run_bench): closed loop, class_conditional
    32x32, 16 frames, `Prefer: wait`."""
    from cli.bench.client import run_bench

    report = asyncio.run(run_bench(url, mode="closed", concurrency=concurrency, num_requests=requests,
                                   duration_s=run_seconds, task_mix={"class_conditional": 1.0}, size="32x32",
                                   num_frames=16, seed=0, wait="prefer", fields=fields,
                                   request_timeout_s=request_timeout_s))
    report.pop("records", None)
    return report


def requests_for(concurrency: int, rounds: int, min_requests: int) -> int:
    return max(min_requests, rounds * concurrency)


class DeadlinePassed(RuntimeError):
    pass


def engine_warnings(log_path: Path, limit: int = 10) -> list[str]:
    """The torch engine's warnings in a server's log (a capture or compile that fell back to eager)."""
    found: list[str] = []
    for line in tail(log_path, 100_000).splitlines():
        if "server.engines.torch" in line and "warning" in line.lower():
            message = line.split("msg=", 1)[-1].strip("'\"")
            if message not in found:
                found.append(message)
    return found[:limit]


def run_config(config: ServerConfig, args, repo_root: Path, flops: dict, peaks: dict, fmt: str,
               log_dir: Path, progress, deadline: float = float("inf")) -> tuple[dict, list[dict]]:
    """One configuration: start, warm up, every load -> (config record, run records). No bench
    call starts after `deadline` (time.monotonic()); the configuration is then cut short."""
    record: dict[str, Any] = {**asdict(config), "engine": config.engine, "status": "ok"}

    def timeout() -> float:
        left = deadline - time.monotonic()
        if left <= 0:
            raise DeadlinePassed("the run's deadline passed (--deadline-s)")
        return min(args.request_timeout_s, left + 30.0)

    runs: list[dict] = []
    top = max(c for loads in config.loads.values() for c in loads)
    max_batch = top if config.batching else 1
    log_path = log_dir / f"server-{len(list(log_dir.glob('server-*.log')))}.log"
    record["server_log"] = str(log_path)
    start = time.monotonic()
    try:
        ready_timeout = min(300.0, max(30.0, deadline - time.monotonic()))
        with live_server(repo_root, config, args.device, max(max_batch, 1), top, log_path,
                         ready_timeout_s=ready_timeout) as (url, ready_s):
            record["startup_seconds"] = round(ready_s, 2)
            t0 = time.monotonic()
            for sampler, levels in config.loads.items():
                fields = {"sampler": sampler_fields(sampler, args.steps, args.guidance), "output_format": fmt}
                # Warm-up: one request alone (the batch-1 shape), then one round at the top
                # concurrency (every bucket up to it): compiles and graph captures happen here.
                if args.warmup_requests < 1:
                    continue
                warm = [bench(url, 1, max(1, args.warmup_requests // 2), fields, None, timeout())]
                peak_c = max(levels)
                if peak_c > 1:
                    warm.append(bench(url, peak_c, max(peak_c, args.warmup_requests), fields, None, timeout()))
                for report in warm:  # a compile or capture that breaks jobs shows here first
                    for key, count in report["error_counts"].items():
                        errors = record.setdefault("warmup_errors", {})
                        errors[f"{sampler} {key}"] = errors.get(f"{sampler} {key}", 0) + count
            record["warmup_seconds"] = round(time.monotonic() - t0, 2)
            for sampler, levels in config.loads.items():
                fields = {"sampler": sampler_fields(sampler, args.steps, args.guidance), "output_format": fmt}
                for c in levels:
                    report = bench(url, c, requests_for(c, args.rounds, args.min_requests), fields,
                                   args.run_seconds, timeout())
                    run = summarize_run(config, sampler, c, report, flops, peaks)
                    runs.append(run)
                    progress(f"  {config.label}: {sampler} c={c}: {run['videos_per_second'] or 0:.2f} clips/s, "
                             f"p50 {run['latency_p50_s'] or float('nan'):.3f} s, "
                             f"{run['completed']}/{run['requests']} ok")
    except DeadlinePassed as exc:
        record.update(status="cut short", error=str(exc))
        progress(f"  {config.label}: cut short ({exc})")
    except Exception as exc:  # noqa: BLE001 - a failed configuration is a result, and the run goes on
        record.update(status="failed", error=f"{type(exc).__name__}: {exc}", server_log_tail=tail(log_path))
        progress(f"  {config.label}: FAILED {record['error']}")
    record["seconds"] = round(time.monotonic() - start, 2)
    record["engine_warnings"] = engine_warnings(log_path)
    if any("running eagerly" in w for w in record["engine_warnings"]):
        record["fell_back_to_eager"] = True
        for run in runs:
            run["engine"] += " (fell back to eager: see engine_warnings)"
    if any(r["errors"] for r in runs) or record.get("warmup_errors"):
        record["server_log_tail"] = tail(log_path)
    return record, runs


def summarize_run(config: ServerConfig, sampler: str, concurrency: int, report: dict, flops: dict,
                  peaks: dict) -> dict[str, Any]:
    vps = report["videos_per_second"]
    per_clip = flops.get(sampler)
    achieved = vps * per_clip if vps and per_clip else None
    lat = report["latency_s"]
    return {
        "config": config.label, "dtype": config.dtype, "batching": config.batching, "engine": config.engine,
        "sampler": sampler, "concurrency": concurrency, "requests": report["requests"],
        "completed": report["completed"], "errors": report["errors"], "error_counts": report["error_counts"],
        "wall_s": report["wall_s"], "videos_per_second": vps, "latency_p50_s": lat["p50"],
        "latency_p90_s": lat["p90"], "latency_p99_s": lat["p99"], "mean_queue_s": report["mean_queue_s"],
        "mean_compute_s": report["mean_compute_s"], "mean_batch_size": report["mean_batch_size"],
        "achieved_flops_per_second": achieved,
        "mfu_measured_peak": achieved / peaks["measured"] if achieved and peaks.get("measured") else None,
        "mfu_datasheet_peak": achieved / peaks["datasheet"] if achieved and peaks.get("datasheet") else None,
    }


# -- the report ---------------------------------------------------------------------------------

def _f(value, fmt: str, none: str = "-") -> str:
    return none if value is None else format(value, fmt)


def _flops(value: float) -> str:
    return f"{value / 1e12:.1f} TFLOP/s" if value >= 1e12 else f"{value / 1e9:.1f} GFLOP/s"


def _pct(value) -> str:
    return "-" if value is None else f"{100 * value:.2f}%"


def markdown(result: dict) -> str:
    machine, peak = result["machine"], result["peak"]
    flops = result["flops_per_clip"]
    datasheet = peak.get("datasheet_bf16_flops_per_second")
    lines = [
        f"Machine: {machine.get('name')} ({machine['device']}), PyTorch {machine['torch']}"
        + (f", CUDA {machine['cuda']}" if machine.get("cuda") else "") + f", Python {machine['python']}; "
        f"{result['started']}; the whole run took {result['total_seconds']:.0f} s.",
        f"Peak: measured {_flops(peak['measured']['flops_per_second'])} ({peak['measured']['dtype']} "
        f"{peak['measured']['n']}^3 matmul, median of {peak['measured']['repeat']})"
        + (f"; datasheet dense bf16 {datasheet / 1e12:.0f} TFLOP/s" if datasheet else "; no datasheet figure") + ".",
        f"FLOPs per clip: MaskGIT {_f(flops.get('maskgit') and flops['maskgit'] / 1e9, '.2f')} GFLOP, "
        f"autoregressive {_f(flops.get('autoregressive') and flops['autoregressive'] / 1e9, '.2f')} GFLOP (upper bound). "
        f"Load: class_conditional 32x32, 16 frames, MaskGIT {result['settings']['steps']} steps, guidance "
        f"{result['settings']['guidance']:g}, output {result['settings']['output_format']}.",
        "",
        "| configuration | engine | dtype | batching | sampler | c | ok / sent | clips/s | p50 (s) | p99 (s) "
        "| mean batch (its prior) | TFLOP/s | MFU (measured peak) | MFU (datasheet) |",
        "| --- | --- | --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for run in result["runs"]:
        batch = run["mean_batch_size"] or {}
        net = "prior" if run["sampler"] == "maskgit" else "ar_prior"
        lines.append(
            f"| {run['config']} | {run['engine']} | {run['dtype']} | {'on' if run['batching'] else 'off'} | "
            f"{run['sampler']} | {run['concurrency']} | {run['completed']} / {run['requests']} | "
            f"{_f(run['videos_per_second'], '.2f')} | {_f(run['latency_p50_s'], '.3f')} | "
            f"{_f(run['latency_p99_s'], '.3f')} | {_f(batch.get(net), '.1f')} | "
            f"{_f(run['achieved_flops_per_second'] and run['achieved_flops_per_second'] / 1e12, '.2f')} | "
            f"{_pct(run['mfu_measured_peak'])} | {_pct(run['mfu_datasheet_peak'])} |")
    for config in result["configs"]:
        if config["status"] != "ok":
            lines.append(f"\n{config['label']}: {config['status']}" + (f" ({config.get('error')})" if config.get("error") else ""))
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="scripts/gpu-bench.sh", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda", help="cuda, cuda:N or cpu (the CPU smoke run)")
    p.add_argument("--repo", type=Path, default=ROOT / "model_repository",
                   help="model repository root; moving-digits is assembled and its programs exported there if absent")
    p.add_argument("--matrix", default="full", choices=("full", "smoke"))
    p.add_argument("--concurrency", default="1,16,64", help="closed-loop concurrencies, comma-separated")
    p.add_argument("--rounds", type=int, default=2, help="requests per measurement: rounds x concurrency ...")
    p.add_argument("--min-requests", type=int, default=8, help="... and at least this many")
    p.add_argument("--warmup-requests", type=int, default=4,
                   help="warm-up requests per sampler (half alone, then a round at the top concurrency); 0: none")
    p.add_argument("--run-seconds", type=float, default=20.0, help="a measurement sends no new request after this")
    p.add_argument("--request-timeout-s", type=float, default=120.0)
    p.add_argument("--steps", type=int, default=12, help="MaskGIT steps")
    p.add_argument("--guidance", type=float, default=0.0, help="classifier-free guidance scale of both samplers")
    p.add_argument("--output-format", default="auto", choices=("auto", "mp4", "gif", "webm"),
                   help="auto: mp4 where imageio-ffmpeg's binary is installed, else gif")
    p.add_argument("--budget-s", type=float, default=360.0,
                   help="a configuration that would end after this many seconds (by the mean of those run) "
                        "is skipped")
    p.add_argument("--deadline-s", type=float, default=450.0,
                   help="no measurement starts after this many seconds; the configuration running then is cut short")
    p.add_argument("--out", type=Path, default=ROOT / "runs" / "gpu-bench", help="folder for the JSON, the table, the logs")
    p.add_argument("--pack-logs", action="store_true",
                   help="put the servers' logs in one server-logs.tar.gz in --out (a lent machine sends few files back)")
    args = p.parse_args(argv)
    args.concurrency = [int(c) for c in args.concurrency.split(",") if c.strip()]
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started, t_start = time.strftime("%Y-%m-%d %H:%M:%S %Z"), time.monotonic()
    progress = lambda line: print(line, file=sys.stderr, flush=True)  # noqa: E731
    import torch

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        progress("gpu-bench: no CUDA device visible to PyTorch (--device cpu for the CPU smoke run)")
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    logs = args.out / "logs"
    logs.mkdir(exist_ok=True)
    for old in logs.glob("server-*.log"):
        old.unlink()
    machine = device_info(args.device)
    progress(f"gpu-bench: {machine['name']} ({args.device}), torch {machine['torch']}")
    prepare = prepare_repository(args.repo)
    progress(f"gpu-bench: model repository ready in {prepare['seconds']} s (assembled: {prepare['assembled']}, "
             f"exported: {sorted(prepare['exported']) or 'none'})")
    repo = args.repo / MODEL_ID
    measured = matmul_peak(args.device)
    datasheet = datasheet_bf16_flops(machine["name"]) if args.device.startswith("cuda") else None
    peaks = {"measured": measured["flops_per_second"], "datasheet": datasheet}
    progress(f"gpu-bench: peak measured {_flops(measured['flops_per_second'])} ({measured['dtype']}), "
             f"datasheet {'-' if datasheet is None else f'{datasheet / 1e12:.0f} TFLOP/s'}")
    flops = flops_per_clip(repo, args.steps, args.guidance)
    fmt = output_format(args.output_format)
    configs, runs = [], []
    durations: list[float] = []
    for config in matrix(args.matrix, args.concurrency):
        elapsed = time.monotonic() - t_start
        expected = (sum(durations) / len(durations) if durations else 0.0) * (2 if config.compile else 1)
        if elapsed + expected > args.budget_s:
            configs.append({**asdict(config), "engine": config.engine, "status": "skipped",
                            "error": f"time budget: {elapsed:.0f} s spent, about {expected:.0f} s more needed, "
                                     f"budget {args.budget_s:.0f} s"})
            progress(f"  {config.label}: skipped (time budget)")
            continue
        progress(f"gpu-bench: {config.label} ({config.engine}, {config.dtype}, batching "
                 f"{'on' if config.batching else 'off'})")
        record, config_runs = run_config(config, args, args.repo, flops, peaks, fmt, logs, progress,
                                         deadline=t_start + args.deadline_s)
        configs.append(record)
        runs.extend(config_runs)
        if record["status"] == "ok":
            durations.append(record["seconds"])
    result = {
        "kind": "kinetoscope gpu-bench", "version": 1, "started": started, "command": sys.argv,
        "machine": machine, "prepare": prepare,
        "settings": {"steps": args.steps, "guidance": args.guidance, "output_format": fmt, "matrix": args.matrix,
                     "concurrency": args.concurrency, "rounds": args.rounds, "min_requests": args.min_requests,
                     "run_seconds": args.run_seconds, "budget_s": args.budget_s, "deadline_s": args.deadline_s},
        "peak": {"measured": measured, "datasheet_bf16_flops_per_second": datasheet,
                 "datasheet_source": "NVIDIA datasheet, dense (half the with-sparsity figure)" if datasheet else None},
        "flops_per_clip": flops, "configs": configs, "runs": runs,
    }
    result["total_seconds"] = round(time.monotonic() - t_start, 1)
    table = markdown(result)
    (args.out / "gpu-bench.json").write_text(json.dumps(result, indent=2, default=str) + "\n")
    (args.out / "gpu-bench.md").write_text(table + "\n")
    if args.pack_logs:
        import shutil
        import tarfile

        with tarfile.open(args.out / "server-logs.tar.gz", "w:gz") as tar:
            tar.add(logs, arcname="logs")
        shutil.rmtree(logs)
    print(table, flush=True)
    progress(f"gpu-bench: wrote {args.out / 'gpu-bench.json'} and {args.out / 'gpu-bench.md'} "
             f"in {result['total_seconds']:.0f} s")
    return 0 if any(c["status"] == "ok" for c in configs) else 1


if __name__ == "__main__":
    sys.exit(main())
