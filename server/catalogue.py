"""The catalogue: which models this process serves, read from their manifests, without opening
any engine. The API reads it (validation, /v1/models, /readyz); an API replica in front of Redis
workers needs nothing more. `server.runtime` builds the engines and pipelines on top of it."""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

from server.manifest import Manifest, load_manifest
from server.settings import DEFAULT_MODEL_REPOSITORY, Settings

log = logging.getLogger("kinetoscope.catalogue")


@dataclass(frozen=True)
class Catalogue:
    manifests: dict[str, Manifest]  # model id -> manifest
    repositories: dict[str, Path]  # model id -> its folder
    default_model: str  # the model of a request that names none
    backend: str  # the engine backend the models run on (shown by /v1/models)


def load_catalogue(settings: Settings, *, verify: bool = False) -> Catalogue:
    """Reads every manifest under settings.model_repository (`verify`: check each network file's
    sha256 against its manifest, as a process that opens the engines does)."""
    manifests: dict[str, Manifest] = {}
    repositories: dict[str, Path] = {}
    for repo in find_repositories(settings.model_repository):
        manifest = load_manifest(repo, verify=verify)
        if manifest.model_id in manifests:
            raise ValueError(f"two repositories declare model id {manifest.model_id!r}")
        manifests[manifest.model_id], repositories[manifest.model_id] = manifest, repo
    default = settings.default_model or next(iter(manifests))
    if default not in manifests:
        raise ValueError(f"default model {default!r} is not among {sorted(manifests)}")
    return Catalogue(manifests, repositories, default, settings.backend)


def find_repositories(root: Path) -> list[Path]:
    """`root` itself when it holds a manifest.json, else each sub-folder that does. When `root` is
    the default (`model_repository`, relative) and holds no model, the demo model: the checkout's
    own model_repository/, else assembled from the installed package's bundle into the user's
    cache folder. So `kinetoscope generate` and `serve` work from any directory."""
    root = Path(root)
    if (root / "manifest.json").is_file():
        return [root]
    found = sorted(p.parent for p in root.glob("*/manifest.json"))
    if not found and root == DEFAULT_MODEL_REPOSITORY:
        found = _demo_repositories()
    if not found:
        raise FileNotFoundError(f"no model repository under {root.resolve()} (set --model-repository or "
                                "KINETOSCOPE_MODEL_REPOSITORY, or run `make model` in the checkout)")
    return found


def _demo_repositories(package_root: Path | None = None, cache_root: Path | None = None) -> list[Path]:
    from server.repository import assemble

    package_root = package_root or Path(__file__).resolve().parent.parent
    checkout = package_root / "model_repository" / "moving-digits"
    if (checkout / "manifest.json").is_file():
        return [checkout]
    demo = package_root / "models" / "checkpoints" / "demo"
    if not (demo / "onnx" / "manifest.json").is_file():
        return []
    cache_root = cache_root or Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "kinetoscope"
    cache = cache_root / "moving-digits"
    bundled = (demo / "onnx" / "manifest.json").read_text()
    if not (cache / "manifest.json").is_file() or (cache / "manifest.json").read_text() != bundled:  # absent or stale
        log.info("assembling the demo model into %s", cache)
        assemble(demo / "onnx", demo, cache)
    return [cache]
