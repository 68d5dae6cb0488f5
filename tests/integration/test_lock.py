"""The dependency lock: `scripts/lock.sh --check` passes on the repository as committed and
fails, naming the fix, once pyproject.toml asks for something the lock does not hold. Needs
PyPI (uv resolves against it), as CI's own lock check does."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]


def copy_for_lock(tmp_path: Path) -> Path:
    work = tmp_path / "repo"
    for name in ("pyproject.toml", "requirements", "scripts"):
        source = REPO / name
        target = work / name
        if source.is_dir():
            shutil.copytree(source, target)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(source, target)
    return work


def check(work: Path) -> subprocess.CompletedProcess[str]:
    tools = work / ".venv-tools"  # its own pinned uv (from PyPI, like the lock check in CI)
    return subprocess.run(
        ["bash", "scripts/lock.sh", "--check"], cwd=work, capture_output=True, text=True, timeout=240,
        env={**os.environ, "TICKVAULT_TOOLS_VENV": str(tools)},
    )  # fmt: skip


def test_the_committed_lock_matches_and_a_new_dependency_breaks_the_check(tmp_path: Path) -> None:
    work = copy_for_lock(tmp_path)
    ok = check(work)
    assert ok.returncode == 0, ok.stderr
    assert "requirements/lock.txt matches pyproject.toml" in ok.stdout

    pyproject = work / "pyproject.toml"
    pyproject.write_text(
        pyproject.read_text().replace('"msgspec>=0.18",', '"msgspec>=0.18",\n    "tqdm>=4",')
    )
    stale = check(work)
    assert stale.returncode == 1
    assert "+tqdm==" in stale.stdout  # the diff names what the lock lacks
    assert stale.stderr.strip().endswith(
        "requirements/lock.txt does not match pyproject.toml: run scripts/lock.sh and commit the result"
    )
