"""The wheels that travel with the tree to a GPU machine that has PyTorch with CUDA but none of the
serving dependencies (`make gpu-wheels`, read by scripts/gpu-bench.sh).

    python -m cli.bench.wheels            # prints name==version, one a line

The list is the dependency closure of the server's and the Python SDK's requirements, pinned to
the versions installed here (the ones the tests ran with), less what such a machine already has
and what is too large to carry: numpy, PyTorch, ONNX Runtime, Pillow, safetensors, and the ffmpeg
binary of imageio-ffmpeg (a 30 MB wheel; without it the GPU benchmark asks for GIF output, which
Pillow encodes). What is left is pure Python but for pydantic-core (about 2 MB), which the
Makefile downloads built for the GPU machine's Python (3.12 on the lent H200s).
"""
from __future__ import annotations

import importlib.metadata as metadata
import platform
import re
import sys

ROOTS = ("kinetoscope", "kinetoscope-client")
# Present on the GPU machine's image (KINDS.md), compiled, or too large for the 64 MiB tree.
EXCLUDED = {"numpy", "torch", "onnxruntime", "pillow", "safetensors", "imageio-ffmpeg", "kinetoscope",
            "kinetoscope-client", "onnx", "protobuf", "sympy", "mpmath", "flatbuffers", "coloredlogs",
            "humanfriendly", "packaging"}
SERVER_EXTRAS: dict[str, tuple[str, ...]] = {}  # none: the serving runtime and the SDK's base requirements


def _name(text: str) -> str:
    return re.sub(r"[-_.]+", "-", text).lower()


def _requirements(dist: str, python: str) -> list[str]:
    """The names `dist` requires (no extras), markers evaluated for Python `python`."""
    try:
        from packaging.requirements import Requirement
    except ImportError:  # pip's vendored copy
        from pip._vendor.packaging.requirements import Requirement  # type: ignore[no-redef]
    names = []
    for line in metadata.requires(dist) or []:
        req = Requirement(line)
        # The running interpreter's own micro version when it is the target (markers such as
        # redis's python_full_version < '3.11.3'), else the target's first release.
        full = platform.python_version() if platform.python_version().startswith(python + ".") else python + ".0"
        env = {"python_version": python, "python_full_version": full, "sys_platform": "linux",
               "platform_system": "Linux", "platform_machine": "x86_64", "implementation_name": "cpython",
               "platform_python_implementation": "CPython", "os_name": "posix", "extra": ""}
        if req.marker is None or req.marker.evaluate(env):
            names.append(_name(req.name))
    return names


def wheel_pins(python: str = "3.12") -> list[str]:
    """name==version for every package in the closure, sorted; a missing one raises."""
    seen: set[str] = set()
    todo = [dep for root in ROOTS for dep in _requirements(root, python)]
    while todo:
        name = todo.pop()
        if name in seen or name in EXCLUDED:
            continue
        seen.add(name)
        todo.extend(_requirements(name, python))
    return sorted(f"{name}=={metadata.version(name)}" for name in seen)


if __name__ == "__main__":
    print("\n".join(wheel_pins(sys.argv[1] if len(sys.argv) > 1 else "3.12")))
