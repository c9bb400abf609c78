"""`kinetoscope export onnx|bundle|tensorrt|assemble`: checkpoints -> a model repository.

`assemble` is the torch-free one (numpy and safetensors: what `make serve` runs); the others need
the training extras (PyTorch, onnx) or TensorRT, imported when they run."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated, Optional

import typer

app = typer.Typer(no_args_is_help=True, help="Turn checkpoints into a model repository.")


@app.command("onnx")
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


@app.command("bundle")
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
               f"assemble with: kinetoscope export assemble {out} {checkpoints} OUT")


@app.command("assemble")
def export_assemble(bundle: Annotated[Path, typer.Argument(help="weight-free bundle (from `export bundle`)")],
                    checkpoints: Annotated[Path, typer.Argument(help="folder of the <network>.safetensors")],
                    out: Annotated[Path, typer.Argument(help="model folder to write")]):
    """Fill a bundle's graphs from the checkpoints (numpy only, no PyTorch), checked against the
    manifest's sha256: the servable model folder."""
    import time

    from server.repository import assemble

    start = time.perf_counter()
    try:
        assemble(bundle, checkpoints, out)
    except (OSError, ValueError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2)
    typer.echo(f"assembled {out} from {bundle} and {checkpoints} in {time.perf_counter() - start:.1f} s")


@app.command("tensorrt")
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
