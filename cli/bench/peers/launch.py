"""Starting a target's server as a subprocess on a free port, and stopping it (its whole process
group: LitServe runs its HTTP server and inference worker as processes of their own)."""
from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Iterator, Mapping

from cli.bench.options import TARGETS

READY_PATHS = {"kinetoscope": "/readyz", "litserve": "/health", "fastapi": "/health"}


def free_port() -> int:
    """A TCP port nothing listens on now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def server_command(target: str, repo: Path, port: int, *, max_batch_size: int | None = None,
                   batch_timeout: float | None = None) -> list[str]:
    """The command line of `target`'s server. Kinetoscope: `kinetoscope serve` (embedded queue and
    worker, step-level batching on); the peers: their modules here."""
    if target == "kinetoscope":
        cmd = [sys.executable, "-m", "cli", "serve", "--port", str(port), "--model-repository", str(repo), "--batching"]
        if max_batch_size is not None:
            cmd += ["--max-batch-size", str(max_batch_size)]
        return cmd
    if target == "litserve":
        cmd = [sys.executable, "-m", "cli.bench.peers.litserve_peer", "--repo", str(repo), "--port", str(port)]
        if max_batch_size is not None:
            cmd += ["--max-batch-size", str(max_batch_size)]
        if batch_timeout is not None:
            cmd += ["--batch-timeout", str(batch_timeout)]
        return cmd
    if target == "fastapi":
        return [sys.executable, "-m", "cli.bench.peers.fastapi_peer", "--repo", str(repo), "--port", str(port)]
    raise ValueError(f"unknown target {target!r}; choose one of {', '.join(TARGETS)}")


@contextlib.contextmanager
def serve_target(target: str, repo: str | Path, *, port: int | None = None, startup_s: float = 120.0,
                 env: Mapping[str, str] | None = None, **options) -> Iterator[str]:
    """`target`'s server running on a free port; yields its base URL once it answers ready."""
    with serve_process(target, repo, port=port, startup_s=startup_s, env=env, **options) as (url, _):
        yield url


@contextlib.contextmanager
def serve_process(target: str, repo: str | Path, *, port: int | None = None, startup_s: float = 120.0,
                  env: Mapping[str, str] | None = None, **options) -> Iterator[tuple[str, subprocess.Popen]]:
    """serve_target's server, and its process (for what measures it). `env`: the server's whole
    environment (default: this process's). Ready: its ready path answers 200; anything else (a
    503 while the models load, no answer yet) is waited out, up to `startup_s`."""
    import httpx

    port = port or free_port()
    url = f"http://127.0.0.1:{port}"
    log = tempfile.TemporaryFile()
    # A session of its own, so that stopping it reaches every process it started.
    proc = subprocess.Popen(server_command(target, Path(repo).resolve(), port, **options), stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True, cwd=Path(__file__).resolve().parents[3],
                            env=None if env is None else dict(env))
    try:
        deadline = time.monotonic() + startup_s
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"the {target} server exited ({proc.returncode}) before it was ready:\n{_tail(log)}")
            try:
                if httpx.get(url + READY_PATHS[target], timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"the {target} server was not ready after {startup_s:.0f} s:\n{_tail(log)}")
            time.sleep(0.25)
        yield url, proc
    finally:
        _stop(proc)
        log.close()


def _stop(proc: subprocess.Popen) -> None:
    """SIGTERM to the server's process group, SIGKILL to what is left after 20 s."""
    for sig, wait_s in ((signal.SIGTERM, 20), (signal.SIGKILL, 10)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout=wait_s)
            break
        except subprocess.TimeoutExpired:
            continue
    with contextlib.suppress(ProcessLookupError):  # workers that outlived their parent
        os.killpg(proc.pid, signal.SIGKILL)


def _tail(log, limit: int = 4000) -> str:
    log.flush()
    log.seek(0)
    return log.read().decode(errors="replace")[-limit:]
