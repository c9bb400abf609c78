"""The serving install needs no PyTorch: a fresh venv with the package's runtime requirements only
assembles the demo model from the committed bundle, serves it, and runs a job."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from live_server import free_port

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "models" / "checkpoints" / "demo"


def du(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file() and not f.is_symlink())


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_a_runtime_only_venv_serves_the_demo_model(tmp_path):
    venv = tmp_path / "venv"
    start = time.monotonic()
    # A venv without pip of its own (ensurepip costs seconds); this interpreter's pip installs into
    # it (`pip --python`: it runs under the venv's interpreter and resolves against the venv's
    # site-packages only), without byte-compiling what it installs.
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    py = venv / "bin" / "python"
    subprocess.run([sys.executable, "-m", "pip", "--python", str(py), "install", "-q", "--no-compile", "-e", str(ROOT)],
                   check=True)
    installed = time.monotonic() - start
    probe = subprocess.run([str(py), "-c", "import torch"], capture_output=True)
    assert probe.returncode != 0, "the serving install pulled in PyTorch"
    for module in ("onnx", "sklearn", "scipy", "matplotlib"):
        assert subprocess.run([str(py), "-c", f"import {module}"], capture_output=True).returncode != 0, module
    repo = tmp_path / "repo" / "moving-digits"
    subprocess.run([str(venv / "bin" / "kinetoscope"), "export", "assemble", str(DEMO / "onnx"), str(DEMO), str(repo)],
                   check=True, cwd=ROOT)
    port = free_port()
    env = {**os.environ, "KINETOSCOPE_LOG_LEVEL": "warning"}
    server = subprocess.Popen([str(venv / "bin" / "kinetoscope"), "serve", "--port", str(port), "--model-repository",
                               str(repo.parent)], cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert server.poll() is None, server.stdout.read().decode()[-3000:]
            assert time.monotonic() < deadline, "the server was not ready in 120 s"
            time.sleep(0.5)
        r = httpx.post(f"{url}/v1/videos", json={"task": "class_conditional", "class_label": 4, "seed": 3},
                       headers={"Prefer": "wait=120"}, timeout=150)
        job = r.json()
        assert r.status_code == 200 and job["status"] == "completed", job
        video = httpx.get(job["urls"]["content"], timeout=30)
        assert video.status_code == 200 and video.content[4:8] == b"ftyp"
    finally:
        server.terminate()
        server.wait(timeout=30)
    print(f"runtime venv: {du(venv) / 1e6:.0f} MB, installed in {installed:.0f} s")
    shutil.rmtree(venv)
