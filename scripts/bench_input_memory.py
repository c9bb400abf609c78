"""Peak memory of reading a large input video (issue #12 D5): the API's intake check and the
worker's decode, each in a fresh process, and a live `kinetoscope serve` taking concurrent uploads.

    .venv/bin/python scripts/bench_input_memory.py [--frames 80] [--concurrent 4]

It crafts a GIF and an MP4 of 1024x1024 frames (`--frames` of them: 80 decode to 240 MiB, inside
the default max_input_decoded_bytes of 256 MiB) that compress to a few hundred KB, then prints,
per file:
- `intake`: what POST /v1/videos runs on the input (`server.video.check_input` where it exists,
  else the full `decode_input` the API used to run), peak RSS growth of the process;
- `worker`: `decode_input` (what the runtime runs before the pipeline), peak RSS growth;
- `serve`: a `kinetoscope serve` process (the demo's manifest, no worker) sent `--concurrent`
  frame_prediction requests with the GIF at once: its peak RSS (VmHWM) above its idle RSS.
"""
from __future__ import annotations

import argparse
import base64
import concurrent.futures
import io
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
SIZE = 1024


def crafted_frames(count: int) -> list[np.ndarray]:
    """Large flat frames with a small moving square: tiny once compressed, huge once decoded."""
    frames = []
    for t in range(count):
        frame = np.full((SIZE, SIZE, 3), 40, np.uint8)
        frame[200:264, 8 * t % (SIZE - 64):8 * t % (SIZE - 64) + 64] = 255
        frames.append(frame)
    return frames


def crafted_gif(count: int) -> bytes:
    images = [Image.fromarray(f) for f in crafted_frames(count)]
    buf = io.BytesIO()
    images[0].save(buf, format="GIF", save_all=True, append_images=images[1:], duration=100, loop=0)
    return buf.getvalue()


def crafted_mp4(count: int) -> bytes:
    from server.video import encode_mp4

    return encode_mp4(np.stack(crafted_frames(count)), 8)


def _status(pid: int | str, field: str) -> int:
    """A /proc/<pid>/status memory field (VmRSS, VmHWM) in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise KeyError(field)


def child(what: str, path: str) -> None:
    """In a fresh process: the peak RSS growth of one call, printed in MiB."""
    from server.settings import Settings
    from server import video

    data = Path(path).read_bytes()
    settings = Settings()
    if what == "intake":
        call = getattr(video, "check_input", None) or video.decode_input
    else:
        call = video.decode_input
    video.sniff_format(data)
    before = _status("self", "VmRSS")
    started = time.perf_counter()
    call(data, settings)
    seconds = time.perf_counter() - started
    print(f"{(_status('self', 'VmHWM') - before) / 2**20:.0f} {seconds:.2f} {call.__module__}.{call.__name__}")


def measure_call(what: str, path: Path) -> str:
    out = subprocess.run([sys.executable, __file__, "--child", what, str(path)], capture_output=True, text=True,
                         check=True, cwd=ROOT)
    mib, seconds, name = out.stdout.split()
    return f"{what:7s} {name:32s} peak RSS +{mib:>5s} MiB  {seconds} s"


def measure_serve(gif: bytes, clients: int) -> str:
    import httpx

    from cli.bench.peers.launch import serve_process

    env = {k: v for k, v in os.environ.items() if not k.startswith("KINETOSCOPE_")}
    env.update(KINETOSCOPE_JOB_STORE_DIR="", KINETOSCOPE_EMBEDDED_WORKERS="false")
    # Measured only once /readyz answers 200 (serve_process waits out a 503 while models load).
    with serve_process("kinetoscope", ROOT / "model_repository" / "moving-digits", env=env) as (url, proc):
        idle = _status(proc.pid, "VmRSS")
        body = {"task": "frame_prediction", "input_video": base64.b64encode(gif).decode()}
        started = time.perf_counter()
        with concurrent.futures.ThreadPoolExecutor(clients) as pool:
            codes = list(pool.map(lambda _: httpx.post(url + "/v1/videos", json=body, timeout=300).status_code,
                                  range(clients)))
        seconds = time.perf_counter() - started
        peak = _status(proc.pid, "VmHWM")
    return (f"serve   {clients} concurrent POSTs -> {codes}: peak RSS +{(peak - idle) / 2**20:.0f} MiB "
            f"above idle ({idle / 2**20:.0f} MiB), {seconds:.2f} s")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--frames", type=int, default=80)
    parser.add_argument("--concurrent", type=int, default=4)
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return
    with tempfile.TemporaryDirectory() as tmp:
        files = {"gif": crafted_gif(args.frames), "mp4": crafted_mp4(args.frames)}
        for fmt, data in files.items():
            path = Path(tmp) / f"big.{fmt}"
            path.write_bytes(data)
            decoded = args.frames * SIZE * SIZE * 3
            print(f"{fmt}: {len(data) / 1024:.0f} KB, {args.frames} frames of {SIZE}x{SIZE} "
                  f"({decoded / 2**20:.0f} MiB decoded)")
            for what in ("intake", "worker"):
                print("  " + measure_call(what, path))
        print("  " + measure_serve(files["gif"], args.concurrent))


if __name__ == "__main__":
    main()
