"""A real `kinetoscope serve` process on a free port, for tests that need a real socket (raw
HTTP, slow clients, schemathesis). `manifest_only=True` serves a model repository of one
manifest.json (the demo's shape, no network files) with no embedded worker: it starts in a
second or two, creates and queues real jobs, and runs none of them; otherwise the demo model is
served with its embedded worker (skips without `make model`)."""
from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import httpx
import pytest

from cli.bench.peers.launch import free_port  # noqa: F401 - the tests' one free-port helper

REPO_ROOT = Path(__file__).resolve().parent.parent
DEMO_MODEL = REPO_ROOT / "model_repository" / "moving-digits"


def stop_process(process: subprocess.Popen, timeout: float = 15) -> None:
    """SIGTERM, then SIGKILL if it has not exited within `timeout` seconds."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def manifest_repository(folder: Path) -> Path:
    """A model repository of one demo-like manifest (tests/conftest.py's), no ONNX files."""
    from conftest import make_api_manifest

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "manifest.json").write_text(make_api_manifest("moving-digits").model_dump_json())
    return folder


class LiveServer:
    def __init__(self, process: subprocess.Popen, port: int, log: Path):
        self.process, self.port, self.log = process, port, log
        self.url = f"http://127.0.0.1:{port}"

    def tail(self, lines: int = 30) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return f"--- {self.log} ---\n" + "\n".join(text.splitlines()[-lines:])

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"the server exited with {self.process.returncode}\n{self.tail()}")
            try:
                if httpx.get(self.url + "/readyz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"the server was not ready after {timeout:.0f} s\n{self.tail()}")


@contextlib.contextmanager
def live_server(tmp_path: Path, *, manifest_only: bool = True, ready_timeout: float = 120.0,
                **settings: object) -> Iterator[LiveServer]:
    """`with live_server(tmp_path, header_timeout_seconds=0.5) as server:` settings become
    KINETOSCOPE_<NAME> variables; the process is stopped (SIGTERM, then SIGKILL) at the end."""
    if manifest_only:
        repository, settings = manifest_repository(tmp_path / "models"), {"embedded_workers": False, **settings}
    elif (DEMO_MODEL / "manifest.json").is_file():
        repository = DEMO_MODEL
    else:
        pytest.skip("no demo model: run `make model`")
    env = {k: v for k, v in os.environ.items() if not k.startswith("KINETOSCOPE_")}
    env.update(PYTHONUNBUFFERED="1", KINETOSCOPE_MODEL_REPOSITORY=str(repository), KINETOSCOPE_JOB_STORE_DIR="")
    env.update({f"KINETOSCOPE_{k.upper()}": str(v) for k, v in settings.items()})
    script = Path(sys.executable).parent / "kinetoscope"
    command = [str(script)] if script.is_file() else [sys.executable, "-m", "cli"]
    port, log = free_port(), tmp_path / "serve.log"
    with open(log, "ab") as out:
        process = subprocess.Popen([*command, "serve", "--port", str(port)], cwd=REPO_ROOT, env=env,
                                   stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    server = LiveServer(process, port, log)
    try:
        server.wait_ready(ready_timeout)
        yield server
    finally:
        stop_process(process)
