"""`python -m server.api [--host H] [--port P] [--model-repository DIR] ...`: run the HTTP API.

Each flag overrides its Settings field (and its KINETOSCOPE_* environment variable)."""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, Sequence

from server.api.app import serve
from server.settings import Settings


def parse_args(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="python -m server.api", description="Run the Kinetoscope HTTP API.")
    parser.add_argument("--host", help="bind address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port (default 8000)")
    parser.add_argument("--model-repository", type=Path, help="folder of model folders, each with manifest.json")
    parser.add_argument("--default-model", help="model id used when a request names none")
    parser.add_argument("--backend", choices=("onnxruntime", "tensorrt", "torch"), help="engine backend")
    parser.add_argument("--redis-url", help="Redis job queue (default: the embedded in-process queue)")
    parser.add_argument("--no-embedded-workers", dest="embedded_workers", action="store_false", default=None,
                        help="with no Redis, do not run a worker in the API process")
    parser.add_argument("--api-key", dest="api_keys", action="append",
                        help="require this Bearer key (repeat for several)")
    parser.add_argument("--log-level", choices=("debug", "info", "warning", "error"), help="log level")
    args = vars(parser.parse_args(argv))
    return {k: v for k, v in args.items() if v is not None}


def main(argv: Sequence[str] | None = None) -> None:
    serve(Settings(**parse_args(argv)))


if __name__ == "__main__":
    main()
