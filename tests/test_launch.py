"""cli/bench/peers/launch.py's serve_process (Review A10: scripts/bench_input_memory.py measured a
server whose /readyz might still answer 503, after 300 back-to-back GETs): a ready path that
answers 503 is waited out, the server gets the environment it is given, and its process is
handed to the caller."""
from __future__ import annotations

import sys
import time

import httpx

from cli.bench.peers import launch

# A server that answers 503 on /health until 1 s after it started, then 200, and says on / what
# KINETOSCOPE_LAUNCH_PROBE it was given.
FAKE_SERVER = r"""
import os, sys, time
from http.server import BaseHTTPRequestHandler, HTTPServer
started = time.monotonic()
class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        ready = time.monotonic() - started > 1.0
        status = 200 if self.path != "/health" or ready else 503
        body = os.environ.get("KINETOSCOPE_LAUNCH_PROBE", "").encode()
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
HTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
"""


def test_serve_process_waits_for_ready_and_passes_its_environment(monkeypatch):
    monkeypatch.setattr(launch, "server_command", lambda target, repo, port, **_: [sys.executable, "-c", FAKE_SERVER, str(port)])
    started = time.monotonic()
    with launch.serve_process("fastapi", ".", env={"KINETOSCOPE_LAUNCH_PROBE": "given"}, startup_s=30) as (url, proc):
        assert time.monotonic() - started > 1.0  # the 503s were waited out
        assert httpx.get(url + "/health").status_code == 200
        assert httpx.get(url + "/").text == "given"
        assert proc.poll() is None
    assert proc.poll() is not None  # stopped on the way out


def test_the_targets_are_written_once():
    """Review R8: TARGETS was spelled in cli/bench/options.py, beside its Literal, and again in launch."""
    from typing import get_args

    from cli.bench import options
    from cli.bench.peers import side_by_side

    assert options.TARGETS == get_args(options.Target) == ("kinetoscope", "litserve", "fastapi")
    assert launch.TARGETS is options.TARGETS and side_by_side.TARGETS is options.TARGETS
    assert set(launch.READY_PATHS) == set(options.TARGETS)
