"""Arrow's memory pool in the tickvault process: jemalloc, chosen before pyarrow loads
(tickvault.allocator). With mimalloc, Arrow's default, the daemon's RSS grew round after
round of the roller in the soak (README "Soak")."""

from __future__ import annotations

import subprocess
import sys
import tomllib
import weakref
from pathlib import Path

from tickvault import allocator

ROOT = Path(__file__).resolve().parents[2]


def run_python(code: str) -> str:
    env = {"PATH": "/usr/bin:/bin"}  # no ARROW_DEFAULT_MEMORY_POOL from the caller
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_jemalloc_by_default_on_linux() -> None:
    environ: dict[str, str] = {}
    assert allocator.choose_pool(environ, "linux") == "jemalloc"
    assert environ == {"ARROW_DEFAULT_MEMORY_POOL": "jemalloc"}


def test_an_operators_choice_wins_and_other_platforms_keep_arrows_default() -> None:
    environ = {"ARROW_DEFAULT_MEMORY_POOL": "system"}
    assert allocator.choose_pool(environ, "linux") == "system"
    assert environ == {"ARROW_DEFAULT_MEMORY_POOL": "system"}
    environ = {}
    assert allocator.choose_pool(environ, "darwin") is None
    assert environ == {}


def test_the_entry_point_chooses_before_pyarrow_loads() -> None:
    # anything that imports pyarrow on the way to tickvault.__main__ would make the choice moot
    out = run_python(
        "import sys, tickvault.__main__\n"
        "loaded = 'pyarrow' in sys.modules\n"
        "from tickvault import allocator\n"
        "allocator.choose_pool()\n"
        "import pyarrow as pa\n"
        "print(loaded, pa.default_memory_pool().backend_name)"
    )
    assert out == "False jemalloc"


def test_the_command_runs_the_entry_point() -> None:
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["tickvault"] == "tickvault.__main__:main"


def test_the_release_after_a_round_collects_cyclic_garbage() -> None:
    # the daemon's thresholds (app.tune_gc) leave full collections hours apart; a round's
    # pyiceberg objects in reference cycles would hold their Arrow buffers that long
    from tickvault.archive import roller

    class Node:
        me: Node | None = None

    node = Node()
    node.me = node  # a cycle: reference counting alone never frees it
    gone = weakref.ref(node)
    del node
    assert roller.release_memory() >= 1
    assert gone() is None


def rss_mib() -> float:
    status = Path("/proc/self/status").read_text()
    return int(next(line for line in status.splitlines() if line.startswith("VmRSS:")).split()[1]) / 1024


def test_the_c_heaps_free_memory_goes_back_to_the_os() -> None:
    # blocks over 512 bytes come from malloc; freed below a live one, glibc keeps their pages
    blocks = [bytes(64 * 1024) for _ in range(800)]  # 50 MiB
    pinned = bytes(64 * 1024)  # above them in the heap: free() alone cannot shrink it
    del blocks
    kept = rss_mib()
    assert allocator.trim_c_heap() is True
    assert rss_mib() < kept - 25  # of the 50 MiB freed (some filled older holes)
    del pinned
