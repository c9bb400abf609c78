"""Real servers for the tests: the Kinetoscope API in a subprocess, and a small HTTP reverse
proxy in front of it that can answer 503, drop connections or stall on chosen requests.
Nothing here mocks a transport: every test request crosses a real socket."""
from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

REPO_ROOT = Path(__file__).resolve().parents[3]

API_KEY = "test-key"
# Small, fast jobs: the demo model's base size and window, two decoding steps.
FAST = {"task": "class_conditional", "class_label": 3, "size": "32x32", "num_frames": 16, "sampler": {"steps": 2}}
# A job of a second or two: long enough to be polled a few times.
MEDIUM = {**FAST, "size": "64x64", "sampler": {"steps": 24}}
# A job that runs for many seconds on a CPU, for cancel / 409 / queue tests.
SLOW = {"task": "class_conditional", "class_label": 1, "size": "128x128", "num_frames": 128,
        "sampler": {"steps": 64}}


def find_model_repository() -> Path | None:
    """$KINETOSCOPE_TEST_MODEL_REPOSITORY, else the repository's model_repository/ if it holds a
    model (a folder with manifest.json)."""
    explicit = os.environ.get("KINETOSCOPE_TEST_MODEL_REPOSITORY")
    if explicit:
        return Path(explicit)
    default = REPO_ROOT / "model_repository"
    return default if any(default.glob("*/manifest.json")) else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LiveServer:
    """`kinetoscope serve` (`python -m cli serve`) on a free port, with extra KINETOSCOPE_* settings in `env`."""

    def __init__(self, model_repository: Path, env: dict[str, str] | None = None) -> None:
        self.model_repository = model_repository
        self.env = env or {}
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._log = tempfile.NamedTemporaryFile(prefix="kinetoscope-server-", suffix=".log", delete=False)
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self, ready_timeout: float = 180.0) -> "LiveServer":
        env = {k: v for k, v in os.environ.items() if not k.startswith("KINETOSCOPE_")}
        env["KINETOSCOPE_JOB_STORE_DIR"] = ""  # jobs in memory: no test server sees another's jobs
        env.update(self.env)
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "cli", "serve", "--host", "127.0.0.1", "--port", str(self.port),
             "--model-repository", str(self.model_repository)],
            cwd=REPO_ROOT, env=env, stdout=self._log, stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + ready_timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"server exited with {self._proc.returncode}:\n{self.log_tail()}")
            try:
                if httpx.get(self.url + "/readyz", timeout=2).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.25)
        self.stop()
        raise RuntimeError(f"server not ready after {ready_timeout:g} s:\n{self.log_tail()}")

    def log_tail(self, chars: int = 4000) -> str:
        return Path(self._log.name).read_text(errors="replace")[-chars:]

    def stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._log.close()


@dataclass
class Seen:
    """One request as the proxy received it, and what it did with it."""

    method: str
    path: str
    headers: dict[str, str]
    fault: str | None
    upstream_status: int | None = None
    upstream_body: bytes = b""


_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "host", "te", "upgrade"}


@dataclass
class FaultyProxy:
    """An HTTP/1.1 reverse proxy on its own thread and event loop. Each request takes the next
    queued fault, if any:

        "503:<s>"            answer 503 with `Retry-After: <s>` and a JSON error body
        "drop"               close the connection without answering
        "forward_then_drop"  forward to the server, then close without relaying the answer
        "delay:<s>"          wait <s> seconds, then forward

    Otherwise it forwards, streaming the body back (so server-sent events work). Every answer
    ends with `Connection: close`, which keeps the framing trivial."""

    upstream: str
    faults: list[str] = field(default_factory=list)
    seen: list[Seen] = field(default_factory=list)
    url: str = ""

    def start(self) -> "FaultyProxy":
        self._loop = asyncio.new_event_loop()
        started = threading.Event()

        async def serve() -> None:
            self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
            self.url = f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"
            self._http = httpx.AsyncClient(timeout=None)
            started.set()

        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        asyncio.run_coroutine_threadsafe(serve(), self._loop)
        started.wait(10)
        return self

    def stop(self) -> None:
        async def shutdown() -> None:
            self._server.close()
            await self._http.aclose()

        asyncio.run_coroutine_threadsafe(shutdown(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    def fail_next(self, *faults: str) -> None:
        self.faults.extend(faults)

    def reset(self) -> None:
        self.faults.clear()
        self.seen.clear()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()
            return
        request_line, *header_lines = head.decode("latin-1").split("\r\n")
        method, target, _ = request_line.split(" ", 2)
        headers: dict[str, str] = {}
        for line in header_lines:
            if line:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
        body = await reader.readexactly(int(headers.get("content-length", "0") or 0))

        fault = self.faults.pop(0) if self.faults else None
        seen = Seen(method, target, headers, fault)
        self.seen.append(seen)
        try:
            if fault == "drop":
                return
            if fault and fault.startswith("503"):
                retry_after = fault.partition(":")[2] or "0"
                payload = json.dumps({"error": {"type": "server_error", "code": "proxy_unavailable",
                                                "message": "the test proxy says: not now", "param": None}}).encode()
                writer.write(
                    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
                    + f"Retry-After: {retry_after}\r\nX-Request-ID: proxy-503\r\n".encode()
                    + f"Content-Length: {len(payload)}\r\nConnection: close\r\n\r\n".encode() + payload
                )
                await writer.drain()
                return
            if fault and fault.startswith("delay:"):
                await asyncio.sleep(float(fault.partition(":")[2]))
            forward_headers = {k: v for k, v in headers.items() if k not in _HOP_BY_HOP}
            request = self._http.build_request(method, self.upstream + target, headers=forward_headers, content=body)
            response = await self._http.send(request, stream=True)
            try:
                seen.upstream_status = response.status_code
                if fault == "forward_then_drop":
                    seen.upstream_body = await response.aread()
                    return
                status_line = f"HTTP/1.1 {response.status_code} {response.reason_phrase}\r\n"
                out_headers = "".join(f"{k}: {v}\r\n" for k, v in response.headers.multi_items()
                                      if k.lower() not in _HOP_BY_HOP)
                writer.write((status_line + out_headers + "Connection: close\r\n\r\n").encode("latin-1"))
                async for chunk in response.aiter_raw():
                    writer.write(chunk)
                    await writer.drain()
            finally:
                await response.aclose()
        except ConnectionError:
            pass
        finally:
            writer.close()
