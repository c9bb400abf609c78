"""Review S3: `kinetoscope bench-runtime roofline --threads N` (documented, but not an option) runs
the peak probe on N threads, and the table names the model's own window and base size."""
from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli import app

REPO = Path(__file__).resolve().parents[1] / "model_repository"


@pytest.mark.skipif(not (REPO / "moving-digits" / "manifest.json").is_file(), reason="no model repository: run `make model`")
def test_bench_runtime_roofline_takes_threads(monkeypatch):
    import cli.bench.roofline as roofline

    asked: list[int] = []
    monkeypatch.setattr(roofline, "matmul_peak", lambda threads=0: asked.append(threads) or 1e9)
    monkeypatch.setattr(roofline, "clip_work", lambda repo, manifest: [])
    result = CliRunner().invoke(app, ["bench-runtime", "roofline", "--repo", str(REPO), "--threads", "1"])
    assert result.exit_code == 0, result.output
    assert asked == [1] and "threads=1" in result.output
    assert "| per 16-frame 32x32 clip |" in result.output  # the demo's window and base size
