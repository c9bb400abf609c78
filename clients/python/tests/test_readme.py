"""The README's quickstart is real code: run it, as written, against the live server."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from live_servers import API_KEY

README = Path(__file__).resolve().parents[1] / "README.md"


def readme_block(heading: str) -> str:
    section = README.read_text().split(f"## {heading}\n", 1)[1]
    match = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert match, f"no python block under '## {heading}'"
    return match.group(1)


def run_block(code: str, server, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "KINETOSCOPE_BASE_URL": server.url, "KINETOSCOPE_API_KEY": API_KEY}
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True, timeout=180)


def test_quickstart_is_ten_lines_and_runs(server, tmp_path):
    code = readme_block("Quickstart")
    assert len(code.strip().splitlines()) <= 10
    result = run_block(code, server, tmp_path)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "seven.mp4").read_bytes()[4:8] == b"ftyp"
    assert (tmp_path / "seven.png").read_bytes()[:4] == b"\x89PNG"
    assert "completed" in result.stdout


def test_async_example_runs(server, tmp_path):
    code = README.read_text().split("The same with asyncio:\n", 1)[1]
    code = re.search(r"```python\n(.*?)```", code, re.DOTALL).group(1)
    result = run_block(code, server, tmp_path)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "seven.mp4").read_bytes()[4:8] == b"ftyp"
