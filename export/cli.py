"""`kinetoscope`: the one command line (serve, worker, generate, train, eval, export, bench).

It sits on top of server/, models/ and export/; each subcommand imports what it needs when it
runs, so `kinetoscope serve` works in the runtime image that has no torch.
"""
from __future__ import annotations

import asyncio
import logging
import os
import signal
from pathlib import Path
from typing import Annotated, Optional

import typer

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Kinetoscope: serve masked generative video transformers over HTTP.")
export_app = typer.Typer(no_args_is_help=True, help="Turn checkpoints into a model repository.")
app.add_typer(export_app, name="export")

ModelRepo = Annotated[Path, typer.Option(help="folder of model folders (each with manifest.json)")]


def _settings(**overrides):
    from server.settings import Settings

    return Settings(**{k: v for k, v in overrides.items() if v is not None})


@app.command()
def serve(host: Annotated[Optional[str], typer.Option(help="bind address (default 127.0.0.1)")] = None,
          port: Annotated[Optional[int], typer.Option(help="port (default 8000)")] = None,
          model_repository: Annotated[Optional[Path], typer.Option(help="model repository folder")] = None,
          backend: Annotated[Optional[str], typer.Option(help="onnxruntime | tensorrt | torch")] = None,
          redis_url: Annotated[Optional[str], typer.Option(help="Redis job queue; default: embedded queue and worker")] = None,
          api_key: Annotated[Optional[list[str]], typer.Option(help="require this Bearer key (repeatable)")] = None,
          batching: Annotated[Optional[bool], typer.Option(help="step-level batching across requests")] = None):
    """Run the HTTP API (with an embedded worker unless --redis-url is given)."""
    from server.api.app import PortInUse
    from server.api.app import serve as run
    from server.catalogue import find_repositories

    settings = _settings(host=host, port=port, model_repository=model_repository, backend=backend,
                         redis_url=redis_url, api_keys=api_key or None, batching=batching)
    try:
        find_repositories(settings.model_repository)  # a missing model is one line, before anything starts
        run(settings)
    except (PortInUse, FileNotFoundError) as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(2)


@app.command()
def worker(redis_url: Annotated[Optional[str], typer.Option(help="Redis URL (or KINETOSCOPE_REDIS_URL)")] = None,
           model_repository: Annotated[Optional[Path], typer.Option(help="model repository folder")] = None,
           backend: Annotated[Optional[str], typer.Option(help="onnxruntime | tensorrt | torch")] = None,
           concurrency: Annotated[Optional[int], typer.Option(help="jobs run at once (they share batches)")] = None,
           metrics_port: Annotated[int, typer.Option(help="serve this worker's Prometheus metrics here; 0 = off")] = 0):
    """Take jobs from Redis and run them; start as many as you like, on any machine."""
    from server import metrics
    from server.api.logs import configure_logging
    from server.jobs import open_queue
    from server.runtime import load_runtime
    from server.worker import run_worker

    settings = _settings(redis_url=redis_url, model_repository=model_repository, backend=backend,
                         worker_concurrency=concurrency)
    if not settings.redis_url:
        raise typer.BadParameter("a worker needs --redis-url (or KINETOSCOPE_REDIS_URL)")
    configure_logging(settings.log_level)
    if metrics_port:
        from prometheus_client import start_http_server

        start_http_server(metrics_port, addr=settings.host)

    async def main():
        runtime = load_runtime(settings)
        queue = open_queue(settings, on_event=metrics.on_worker_event)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        try:
            await run_worker(queue, metrics.instrument_generate(runtime.generate),
                             worker_id=f"{os.uname().nodename}-{os.getpid()}", concurrency=settings.worker_concurrency,
                             heartbeat_seconds=settings.heartbeat_seconds, stop=stop, on_event=metrics.on_worker_event)
        finally:
            await queue.close()
            runtime.close()

    asyncio.run(main())


def parse_mask(mask: str | None) -> dict | None:
    """`center` (a preset) or `x0,y0,x1,y1` (a box in relative coordinates)."""
    if mask is None:
        return None
    if "," in mask:
        try:
            return {"box": [float(v) for v in mask.split(",")]}
        except ValueError:
            raise typer.BadParameter(f"a box is four numbers x0,y0,x1,y1; got {mask!r}")
    return {"preset": mask}


@app.command()
def generate(task: Annotated[str, typer.Option(help="class_conditional, frame_prediction, inpainting, ...")],
             output: Annotated[Path, typer.Option(help="the video to write: .mp4, .webm or .gif")],
             class_label: Annotated[Optional[int], typer.Option(help="class for the class-conditional tasks")] = None,
             input: Annotated[Optional[Path], typer.Option(help="input video (MP4, WebM, GIF, PNG)")] = None,
             mask: Annotated[Optional[str], typer.Option(help="preset (center, vertical, horizontal, dynamic) or x0,y0,x1,y1")] = None,
             condition_frames: Annotated[Optional[int], typer.Option(help="given leading frames (frame tasks)")] = None,
             num_frames: Annotated[Optional[int], typer.Option(help="frames to make; more than the window extends")] = None,
             size: Annotated[Optional[str], typer.Option(help="WxH, one of the model's sizes")] = None,
             seed: Annotated[int, typer.Option(help="the same seed gives the same file")] = 0,
             sampler: Annotated[Optional[str], typer.Option(
                 help="maskgit | autoregressive (default: the model's recommendation for the task)")] = None,
             steps: Annotated[Optional[int], typer.Option(help="MaskGIT steps (default: the model's)")] = None,
             guidance_scale: Annotated[Optional[float], typer.Option(
                 help="classifier-free guidance, 0 = off (default: the model's)")] = None,
             temperature: Annotated[Optional[float], typer.Option(help="sampling temperature (default: the model's)")] = None,
             model: Annotated[Optional[str], typer.Option(help="model id (default: the first)")] = None,
             model_repository: Annotated[Optional[Path], typer.Option(help="model repository folder")] = None,
             backend: Annotated[Optional[str], typer.Option(help="onnxruntime | torch")] = None):
    """Generate one video with no server (ONNX Runtime on the CPU by default)."""
    from pydantic import ValidationError

    from server.api.errors import APIError
    from server.api.schemas import VideoCreateRequest
    from server.api.validation import check_input_frames, choose_manifest, normalize_request
    from server.catalogue import load_catalogue
    from server.jobs.base import InputError, Job
    from server.runtime import load_runtime

    settings = _settings(model_repository=model_repository, backend=backend)
    try:
        catalog = load_catalogue(settings)  # manifests only: a bad request fails before any engine loads
        data = input.read_bytes() if input else None
    except (FileNotFoundError, ValueError, OSError) as e:  # no model there, an unreadable input file
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(2)
    frames = None
    try:
        req = VideoCreateRequest(task=task, class_label=class_label, model=model, mask=parse_mask(mask),
                                 condition_frames=condition_frames, num_frames=num_frames, size=size, seed=seed,
                                 input_video="-" if data else None,
                                 output_format=output.suffix.lstrip(".").lower() if output.suffix.lower() in (
                                     ".webm", ".gif") else "mp4",
                                 sampler={"method": sampler, "steps": steps, "guidance_scale": guidance_scale,
                                          "temperature": temperature})
        manifest = choose_manifest(catalog, model)
        request = normalize_request(req, manifest, settings)
        if data is not None and request.has_input:
            from server.video import decode_input

            frames = decode_input(data, settings).frames
            check_input_frames(request, len(frames))
    except APIError as e:
        typer.echo(f"error: {e.param + ': ' if e.param else ''}{e.message}", err=True)
        raise typer.Exit(2)
    except ValidationError as e:  # a field of the wrong type or value
        first = e.errors()[0]
        typer.echo(f"error: {'.'.join(str(p) for p in first['loc'])}: {first['msg']}; got {first.get('input')!r}", err=True)
        raise typer.Exit(2)
    except Exception as e:  # an unreadable video
        typer.echo(f"error: {getattr(e, 'message', e)}", err=True)
        raise typer.Exit(2)
    job = Job(id="cli", model=manifest.model_id, request=request)
    runtime = load_runtime(settings)
    try:
        encoded = asyncio.run(runtime.generate(job, data, lambda f: None, lambda: False, frames=frames)).video
    except InputError as e:
        typer.echo(f"error: {e.message}", err=True)
        raise typer.Exit(2)
    finally:
        runtime.close()
    output.write_bytes(encoded)
    typer.echo(f"wrote {output} ({request.num_frames} frames, {request.size}, seed {request.seed})")


@app.command()
def train(stage: Annotated[str, typer.Argument(help="tokenizer | prior | ar | sr | family (every stage in order)")],
          set: Annotated[Optional[list[str]], typer.Option("--set", help="config override key=value (repeatable)")] = None,
          demo_cpu: Annotated[bool, typer.Option(help="the CPU demo configuration of the stage")] = False,
          run_dir: Annotated[str, typer.Option(help="run folder (default runs/<network>; family: runs/family)")] = "",
          publish: Annotated[Optional[str], typer.Option(help="copy the trained network here (family: required)")] = None,
          budget_minutes: Annotated[Optional[float], typer.Option(help="family: the whole run's time budget")] = None,
          preset: Annotated[str, typer.Option(help="family: cpu | gpu | tiny")] = "cpu"):
    """Train one stage, or the whole family within --budget-minutes (each resumes from its run
    folder). GPU when present."""
    if stage == "family":
        from models.family import train_family

        if budget_minutes is None or publish is None:
            typer.echo("error: train family needs --budget-minutes and --publish (the checkpoint folder)", err=True)
            raise typer.Exit(2)
        train_family(publish, budget_minutes, preset=preset, runs_dir=run_dir or "runs/family", overrides=set or [])
        return
    from models.train import main

    args = [stage] + [a for kv in (set or []) for a in ("--set", kv)] + (["--demo-cpu"] if demo_cpu else [])
    args += (["--run-dir", run_dir] if run_dir else []) + (["--publish", publish] if publish else [])
    main(args)


@app.command("eval")
def evaluate(model_repository: Annotated[Path, typer.Option(help="exported model repository")] = Path("model_repository/moving-digits"),
             clips: Annotated[int, typer.Option(help="held-out clips per measurement")] = 64,
             output: Annotated[Optional[Path], typer.Option(help="write the results as JSON here")] = None,
             eval_seed: Annotated[Optional[int], typer.Option(help="which held-out clips (another seed: another sample); default 20240")] = None,
             request_seed: Annotated[Optional[int], typer.Option(help="request i gets this seed + i; default 7000")] = None):
    """Measure the served model on the held-out Moving Digits split (prints a Markdown table)."""
    from models.evaluate import main

    seeds = {k: v for k, v in (("eval_seed", eval_seed), ("request_seed", request_seed)) if v is not None}
    main(model_repository, clips=clips, output=output, **seeds)


@export_app.command("onnx")
def export_onnx(checkpoints: Annotated[Optional[Path], typer.Option(help="folder of <network>.safetensors/json")] = None,
                out: Annotated[Path, typer.Option(help="model folder to write")] = Path("model_repository/moving-digits"),
                model_id: Annotated[str, typer.Option(help="model id in the manifest")] = "moving-digits",
                check: Annotated[bool, typer.Option(help="parity check against PyTorch")] = True):
    """Export every network to ONNX (and torch.export programs), check parity, write manifest.json."""
    from export.onnx import DEMO_CHECKPOINTS, export_repository

    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    logging.getLogger("kinetoscope.export").setLevel(logging.INFO)  # our progress, not the exporter's chatter
    manifest = export_repository(checkpoints or DEMO_CHECKPOINTS, out, model_id=model_id, check=check)
    typer.echo(f"wrote {out} ({len(manifest.networks())} networks); parity: {manifest.exporter.get('parity')}")


@export_app.command("bundle")
def export_bundle(checkpoints: Annotated[Optional[Path], typer.Option(help="folder of <network>.safetensors/json")] = None,
                  out: Annotated[Optional[Path], typer.Option(help="bundle folder (default: CHECKPOINTS/onnx)")] = None,
                  model_id: Annotated[str, typer.Option(help="model id in the manifest")] = "moving-digits"):
    """Export, then write the weight-free bundle that `make serve` assembles without PyTorch
    (run after training, commit the bundle beside the checkpoints)."""
    import tempfile

    from export.bundle import write_bundle
    from export.onnx import DEMO_CHECKPOINTS, export_repository

    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    checkpoints = checkpoints or DEMO_CHECKPOINTS
    out = out or checkpoints / "onnx"
    with tempfile.TemporaryDirectory() as tmp:
        export_repository(checkpoints, Path(tmp) / model_id, model_id=model_id, check=True)
        manifest = write_bundle(Path(tmp) / model_id, checkpoints, out)
    size = sum(f.stat().st_size for f in out.iterdir())
    typer.echo(f"wrote {out} ({len(manifest.networks())} graphs, {size / 1e6:.1f} MB); "
               f"assemble with: python -m server.repository {out} {checkpoints} OUT")


@export_app.command("tensorrt")
def export_tensorrt(repo: Annotated[Path, typer.Option(help="exported model repository")] = Path("model_repository/moving-digits"),
                    max_batch: Annotated[int, typer.Option(help="largest batch of the optimization profile")] = 32,
                    opt_batch: Annotated[Optional[int], typer.Option(help="batch TensorRT tunes for (default max/2)")] = None,
                    precision: Annotated[str, typer.Option(help="auto | fp32 | fp16 | bf16 (what this TensorRT version can build)")] = "auto"):
    """Build TensorRT plans from the ONNX files (needs an NVIDIA GPU and TensorRT)."""
    from export.tensorrt import build_repository

    try:
        paths = build_repository(repo, max_batch=max_batch, opt_batch=opt_batch, precision=precision)
    except ValueError as e:  # a precision this TensorRT cannot build, a batch out of range
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(2)
    for path in paths:
        typer.echo(f"plan {path}")


@app.command()
def bench(url: Annotated[str, typer.Option(help="base URL of a deployment")] = "http://127.0.0.1:8000",
          mode: Annotated[str, typer.Option(help="closed (concurrency N) | open (Poisson arrivals at --rate)")] = "closed",
          concurrency: int = 4, rate: float = 1.0,
          duration: Annotated[Optional[float], typer.Option(help="seconds to send requests")] = None,
          requests: Annotated[Optional[int], typer.Option(help="requests to send")] = None,
          task_mix: Annotated[str, typer.Option(help="e.g. class_conditional=0.5,frame_prediction=0.5")] = "class_conditional=1",
          size: Optional[str] = None, frames: Optional[int] = None,
          output_json: Optional[Path] = None, output_png: Optional[Path] = None,
          api_key: Optional[str] = None, seed: int = 0):
    """Load-test a deployment: videos/s, latency percentiles, queue/compute split, batch size."""
    from server.bench import BenchError, bench_command, format_summary

    try:
        report = bench_command(url=url, mode=mode, concurrency=concurrency, rate=rate, duration=duration,
                               requests=requests, task_mix=task_mix, size=size, frames=frames, output_json=output_json,
                               output_png=output_png, api_key=api_key, seed=seed)
    except BenchError as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(2)
    typer.echo(format_summary(report))


if __name__ == "__main__":
    app()
