"""The Markdown a user reads stands alone: every relative link resolves inside the repository,
and the contracts live in docs/."""
from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")


def markdown_files() -> list[Path]:
    tracked = subprocess.run(["git", "ls-files", "*.md"], cwd=ROOT, capture_output=True, text=True)
    if tracked.returncode != 0:  # not a git checkout: every Markdown file outside dependencies
        return [p for p in ROOT.rglob("*.md") if "node_modules" not in p.parts and ".venv" not in p.parts]
    return [ROOT / line for line in tracked.stdout.splitlines()]


def relative_links(path: Path) -> list[str]:
    text = re.sub(r"```.*?```", "", path.read_text(), flags=re.DOTALL)  # code blocks are not links
    return [t for t in LINK.findall(text) if not re.match(r"[a-z]+:|#|mailto:", t)]


@pytest.mark.parametrize("path", markdown_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve_inside_the_repository(path):
    for target in relative_links(path):
        file = (path.parent / target.split("#")[0]).resolve()
        assert file.is_relative_to(ROOT), f"{path.name}: {target} leaves the repository"
        assert file.exists(), f"{path.name}: {target} does not exist"


def test_the_link_checker_sees_links():
    assert relative_links(ROOT / "README.md"), "README.md has relative links; the pattern must find them"


def test_the_contracts_are_in_docs():
    for name in ("api.md", "tasks.md", "moving-digits.md"):
        assert (ROOT / "docs" / name).is_file(), name
    api = (ROOT / "docs" / "api.md").read_text()
    assert "POST /v1/videos" in api and "\"urls\"" in api
