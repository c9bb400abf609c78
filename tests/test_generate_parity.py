"""`kinetoscope generate` and the HTTP API run one request the same way (the same validation, the
same VideoRequest, the same runtime): the same request gives the same bytes, on this machine."""
from __future__ import annotations

import asyncio
import base64
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import demo_api

ROOT = Path(__file__).resolve().parent.parent
REPO = ROOT / "model_repository"
COMMAND = Path(sys.executable).parent / "kinetoscope"

pytestmark = pytest.mark.slow

CASES = {
    "class_conditional": ({"task": "class_conditional", "class_label": 7, "seed": 3}, []),
    "inpainting_maskgit": ({"task": "inpainting", "mask": {"preset": "center"}, "seed": 8,
                            "sampler": {"method": "maskgit", "steps": 4}},
                           ["--mask", "center", "--sampler", "maskgit", "--steps", "4"]),
}


def _cli(tmp_path: Path, name: str, body: dict, extra: list[str], source: Path | None) -> bytes:
    out = tmp_path / f"{name}.mp4"
    args = [str(COMMAND), "generate", "--task", body["task"], "--seed", str(body["seed"]), "--output", str(out),
            "--model-repository", str(REPO), *extra]
    if "class_label" in body:
        args += ["--class-label", str(body["class_label"])]
    if source is not None:
        args += ["--input", str(source)]
    subprocess.run(args, check=True, capture_output=True, timeout=300)
    return out.read_bytes()


async def _api(bodies: dict[str, dict]) -> dict[str, bytes]:
    out = {}
    async with demo_api() as client:
        for name, body in bodies.items():
            job = (await client.post("/v1/videos", json=body, headers={"Prefer": "wait=60"})).json()
            while job["status"] not in ("completed", "failed"):
                await asyncio.sleep(0.2)
                job = (await client.get(f"/v1/videos/{job['id']}")).json()
            assert job["status"] == "completed", job
            out[name] = (await client.get(f"/v1/videos/{job['id']}/content")).content
    return out


def test_the_cli_and_the_api_make_the_same_bytes(tmp_path):
    if not (REPO / "moving-digits" / "manifest.json").is_file():
        pytest.skip("no demo model: run `make model`")
    source = tmp_path / "source.mp4"
    source.write_bytes(_cli(tmp_path, "source", *CASES["class_conditional"], None))
    encoded = base64.b64encode(source.read_bytes()).decode()
    bodies = {name: {**body, **({"input_video": encoded} if body["task"] != "class_conditional" else {})}
              for name, (body, _) in CASES.items()}
    served = asyncio.run(_api(bodies))
    assert served["class_conditional"] == source.read_bytes()
    assert served["inpainting_maskgit"] == _cli(tmp_path, "inpainting", *CASES["inpainting_maskgit"], source)
