"""`kinetoscope generate`: one video with no server, run as the API runs a request.

The options become the body a client would POST to /v1/videos; `_run` then takes it through the
API's own validation and the runtime the worker calls, so the same request gives the same bytes
here and from a server (tests/test_generate_parity.py)."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer


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


def output_format(output: Path) -> str:
    suffix = output.suffix.lower()
    return suffix.lstrip(".") if suffix in (".webm", ".gif") else "mp4"


def _fail(message: str) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(2)


def _run(request_body: dict[str, Any], input_path: Path | None, settings) -> tuple[bytes, Any]:
    """A create body (as JSON carries it, `input_video` standing for the file) -> (the encoded
    video, the validated request). Every refusal is one `error:` line and exit status 2; a bad
    request fails before any engine loads."""
    import asyncio

    from pydantic import ValidationError

    from server.api.errors import APIError
    from server.api.schemas import VideoCreateRequest
    from server.api.validation import check_input_frames, choose_manifest, validate_request
    from server.catalogue import load_catalogue
    from server.jobs.base import InputError, Job
    from server.runtime import load_runtime
    from server.video import decode_input

    try:
        catalogue = load_catalogue(settings)  # manifests only
        data = input_path.read_bytes() if input_path else None
    except (FileNotFoundError, ValueError, OSError) as e:  # no model there, an unreadable input file
        raise _fail(str(e))
    frames = None
    try:
        body = VideoCreateRequest(**request_body, input_video="-" if data else None)
        manifest = choose_manifest(catalogue, body.model)
        request = validate_request(body, manifest, settings)
        if data is not None and request.has_input:
            frames = decode_input(data, settings).frames
            check_input_frames(request, len(frames))
    except APIError as e:
        raise _fail(f"{e.param + ': ' if e.param else ''}{e.message}")
    except ValidationError as e:  # a field of the wrong type or value
        first = e.errors()[0]
        raise _fail(f"{'.'.join(str(p) for p in first['loc'])}: {first['msg']}; got {first.get('input')!r}")
    except Exception as e:  # an unreadable video
        raise _fail(str(getattr(e, "message", e)))
    job = Job(id="cli", model=manifest.model_id, request=request)
    runtime = load_runtime(settings)
    try:
        result = asyncio.run(runtime.generate(job, data, lambda f: None, lambda: False, frames=frames))
    except InputError as e:
        raise _fail(e.message)
    finally:
        runtime.close()
    return result.video, request


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
    from server.settings import Settings

    settings = Settings(**{k: v for k, v in (("model_repository", model_repository), ("backend", backend))
                           if v is not None})
    try:
        parsed_mask = parse_mask(mask)
    except typer.BadParameter as e:
        raise _fail(e.message)
    body = {"task": task, "class_label": class_label, "model": model, "mask": parsed_mask,
            "condition_frames": condition_frames, "num_frames": num_frames, "size": size, "seed": seed,
            "output_format": output_format(output),
            "sampler": {"method": sampler, "steps": steps, "guidance_scale": guidance_scale, "temperature": temperature}}
    encoded, request = _run(body, input, settings)
    output.write_bytes(encoded)
    typer.echo(f"wrote {output} ({request.num_frames} frames, {request.size}, seed {request.seed})")
