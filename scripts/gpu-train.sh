#!/usr/bin/env bash
# Train the whole demo family on one NVIDIA GPU in under 10 minutes, start-up included, and write
# the checkpoints (8 files of at most 16 MB: 5 networks x safetensors + json ... see family.json).
#
#   scripts/gpu-train.sh                      # BUDGET=8 minutes of training, OUT=runs/family-gpu/checkpoints
#   DEVICE=cpu PRESET=tiny BUDGET=0.5 scripts/gpu-train.sh     # the same code path on a CPU (the test)
#   PACK_DIR=$OUT scripts/gpu-train.sh        # also pack the result as at most 8 files of at most 16 MB
#                                             # (the weights, and one configs.tar of the JSONs and the bundle),
#                                             # what a lent device machine can send back
#
# Needs PyTorch (with CUDA for the GPU), numpy, safetensors, tqdm and typer; the ONNX bundle is written
# when onnx and onnxscript are installed too (else run `make bundle` later on a CPU machine).
# Afterwards: copy OUT/*.safetensors, *.json (and onnx/) over models/checkpoints/demo, then
# `make bundle` (if not written), `kinetoscope eval`, look at the gallery, and commit.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
BUDGET=${BUDGET:-8}
PRESET=${PRESET:-gpu}
DEVICE=${DEVICE:-cuda}
OUT=${OUT:-runs/family-gpu/checkpoints}
RUNS=${RUNS:-runs/family-gpu}
for module in torch numpy safetensors tqdm typer; do
  "$PYTHON" -c "import $module" 2>/dev/null || { echo "gpu-train: $PYTHON cannot import $module (pip install $module)" >&2; exit 2; }
done
if [ "$DEVICE" = cuda ]; then
  "$PYTHON" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" \
    || { echo "gpu-train: no CUDA device visible to PyTorch (DEVICE=cpu to run on the CPU)" >&2; exit 2; }
fi
start=$(date +%s)
# `kinetoscope train family`, run as `python -m cli` so that it needs no installed package
"$PYTHON" -m cli train family --publish "$OUT" --budget-minutes "$BUDGET" --preset "$PRESET" --device "$DEVICE" \
  --run-dir "$RUNS"
echo "gpu-train: done in $(( $(date +%s) - start )) s; checkpoints in $OUT"
ls -la "$OUT"
if [ -n "${PACK_DIR:-}" ]; then
  mkdir -p "$PACK_DIR"
  cp "$OUT"/*.safetensors "$PACK_DIR"/
  tar -C "$OUT" -cf "$PACK_DIR/configs.tar" --exclude='*.safetensors' .
  echo "gpu-train: packed into $PACK_DIR:"; ls -la "$PACK_DIR"
  echo "unpack: cp PACK/*.safetensors models/checkpoints/demo/ && tar -C models/checkpoints/demo -xf PACK/configs.tar"
fi
