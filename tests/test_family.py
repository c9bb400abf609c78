"""`kinetoscope train family` and scripts/gpu-train.sh on the CPU with the tiny preset: every
network in order within the budget, published, packed as a device machine can send it back, and
resumed without retraining the stages that finished."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

pytest.importorskip("torch")

ROOT = Path(__file__).resolve().parent.parent
NETWORKS = ["tokenizer", "masked_prior", "ar_prior", "sr_64", "sr_128"]


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_the_gpu_script_trains_the_family_on_the_cpu_with_the_tiny_preset(tmp_path):
    out, pack, runs = tmp_path / "checkpoints", tmp_path / "pack", tmp_path / "runs"
    # 0.3 minutes: every stage still trains (3 s at least, models/family.py's floor) and the export
    # runs; a larger budget only trains the tiny networks longer.
    env = {**os.environ, "PYTHON": sys.executable, "DEVICE": "cpu", "PRESET": "tiny", "BUDGET": "0.3",
           "OUT": str(out), "RUNS": str(runs), "PACK_DIR": str(pack)}
    result = subprocess.run([str(ROOT / "scripts" / "gpu-train.sh")], env=env, capture_output=True, text=True,
                            timeout=540)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    for name in NETWORKS:
        assert (out / f"{name}.safetensors").is_file() and (out / f"{name}.json").is_file(), name
    summary = json.loads((out / "family.json").read_text())
    assert summary["preset"] == "tiny" and summary["minutes"] < 5
    assert (out / "onnx" / "weights.json").is_file()  # the bundle make serve assembles
    packed = sorted(pack.iterdir())
    assert len(packed) <= 8 and all(f.stat().st_size <= 16 << 20 for f in packed), packed
    names = tarfile.open(pack / "configs.tar").getnames()
    assert "./tokenizer.json" in names and "./onnx/manifest.json" in names

    # Again: every stage finished its share, so nothing trains and the same files come out.
    from models.family import train_family

    lines: list[str] = []
    train_family(out, 0.3, preset="tiny", device="cpu", runs_dir=runs, export=None, log=lines.append)
    assert sum("finished earlier" in line for line in lines) == len(NETWORKS)


def test_bad_family_arguments_are_refused(tmp_path):
    from models.family import train_family

    with pytest.raises(ValueError, match="preset"):
        train_family(tmp_path, 1.0, preset="huge")
    with pytest.raises(ValueError, match="budget"):
        train_family(tmp_path, 0)
