"""The packages build and pass their registries' checks, though nothing is published yet: the
server (`python -m build` + `twine check`), the Python SDK (the same) and the JS SDK
(`npm pack --dry-run`)."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

pytest.importorskip("build")
pytest.importorskip("twine")


@pytest.mark.slow
@pytest.mark.parametrize("project,module", [(".", "server"), ("clients/python", "kinetoscope_client")])
def test_python_distributions_build_and_pass_twine_check(tmp_path, project, module):
    source = tmp_path / "src"  # a copy: the build writes egg-info next to the sources
    ignore = shutil.ignore_patterns(".venv", "node_modules", "model_repository", "runs", "artifacts", ".git",
                                    "*.egg-info", "__pycache__", "build", "dist")
    shutil.copytree(ROOT / project, source, ignore=ignore)
    out = tmp_path / "dist"
    subprocess.run([sys.executable, "-m", "build", "--no-isolation", "--sdist", "--wheel", "--outdir", str(out),
                    str(source)], check=True, capture_output=True)
    files = sorted(out.iterdir())
    assert {f.suffix for f in files} == {".whl", ".gz"}, files
    check = subprocess.run([sys.executable, "-m", "twine", "check", "--strict", *map(str, files)],
                           capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    wheel = next(f for f in files if f.suffix == ".whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert any(n.startswith(f"{module}/") for n in names)
    if module == "server":  # the playground and the demo model's bundle ship in the wheel
        assert "server/static/index.html" in names
        assert "models/checkpoints/demo/onnx/weights.json" in names


@pytest.mark.slow
def test_js_package_packs(tmp_path):
    npm = shutil.which("npm")
    if npm is None:
        pytest.skip("npm is not installed (make test installs it)")
    js = ROOT / "clients" / "js"
    if not (js / "node_modules").is_dir():
        pytest.skip("clients/js has no node_modules (make test installs them)")
    subprocess.run([npm, "run", "build"], cwd=js, check=True, capture_output=True)
    result = subprocess.run([npm, "pack", "--dry-run", "--json"], cwd=js, capture_output=True, text=True, check=True)
    packed = json.loads(result.stdout)[0]
    paths = {f["path"] for f in packed["files"]}
    assert packed["name"] == "kinetoscope-client" and "package.json" in paths
    assert any(p.startswith("dist/") and p.endswith(".js") for p in paths), paths
    assert not any(p.startswith("test/") for p in paths), "the tests are not shipped"
