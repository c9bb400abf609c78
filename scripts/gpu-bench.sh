#!/usr/bin/env bash
# One prepared GPU run (#10 item 4): export the torch programs, serve the demo model on the torch
# CUDA backend and load it with `kinetoscope bench` over a matrix of engine settings (MaskGIT vs
# autoregressive, concurrency 1/16/64, step-level batching on/off, bf16 vs fp32, eager / CUDA graphs /
# torch.compile), with MFU against the GPU's bf16 peak. Well under 10 minutes on one GPU.
#
#   scripts/gpu-bench.sh                          # writes runs/gpu-bench/gpu-bench.json and gpu-bench.md
#   scripts/gpu-bench.sh --out "$OUT"             # elsewhere (a lent device machine sends $OUT back)
#   scripts/gpu-bench.sh --device cpu --matrix smoke --concurrency 1,2 --steps 2 --min-requests 1 \
#       --rounds 1 --warmup-requests 1            # the same code path on a CPU (tests/test_gpu_bench.py)
#   scripts/gpu-bench.sh --help                   # every option (cli/bench/gpu.py)
#
# Needs Python with PyTorch (CUDA build for the GPU) and numpy; onnx for the FLOP count (MFU).
# The serving dependencies (FastAPI, uvicorn, pydantic, ...) are used where importable, else
# installed from the wheels in $WHEELS (default wheels/, made by `make gpu-wheels` on a machine
# with PyPI, about 7 MB) into $SITE, with no index: nothing is downloaded here.
# The model repository (model_repository/moving-digits) is assembled from the committed bundle and
# its .pt2 programs exported with torch.export when absent; one carried along is reused.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
WHEELS=${WHEELS:-wheels}
SITE=${SITE:-/tmp/kinetoscope-site}
"$PYTHON" -c "import torch, numpy" 2>/dev/null \
  || { echo "gpu-bench: $PYTHON cannot import torch and numpy" >&2; exit 2; }
SERVING="import fastapi, uvicorn, pydantic, pydantic_settings, multipart, sse_starlette, fastapi_offline, httpx, httpx_sse, typer, prometheus_client, redis"
if ! "$PYTHON" -c "$SERVING" 2>/dev/null; then
  if ! ls "$WHEELS"/*.whl >/dev/null 2>&1; then
    echo "gpu-bench: the serving dependencies are missing and $WHEELS/ has no wheels:" \
         "run 'make gpu-wheels' where PyPI is reachable and bring wheels/ along" >&2
    exit 2
  fi
  t0=$(date +%s)
  "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" \
    "$WHEELS"/*.whl
  export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
  "$PYTHON" -c "$SERVING" || { echo "gpu-bench: still missing after installing $WHEELS/*.whl" >&2; exit 2; }
  echo "gpu-bench: installed $(ls "$WHEELS"/*.whl | wc -l) wheels from $WHEELS into $SITE in $(( $(date +%s) - t0 )) s" >&2
fi
# The repository's own packages and the Python SDK (clients/python), with nothing installed.
export PYTHONPATH="$PWD:$PWD/clients/python${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1
exec "$PYTHON" -m cli.bench.gpu "$@"
