"""Acceptance: the README's first command, run as a new user would (fresh copy of the
repository, fresh virtualenv, no PostgreSQL or Redis of the machine used), stores rows within
a minute, stops cleanly on SIGINT, and the next start reuses the data."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.helpers import free_port

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]
BANNER = "tickvault dev is running"


def first_command() -> str:
    blocks = re.findall(r"```sh\n(.+?)\n```", (REPO / "README.md").read_text(), re.S)
    return blocks[0].strip()


def start(workdir: Path, log: Path, port: int) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TICKVAULT_", "VIRTUAL_ENV"))}
    env["TICKVAULT_METRICS__PORT"] = str(port)
    with log.open("ab") as out:
        # the README's command, as its own process group (the terminal's foreground job)
        return subprocess.Popen(
            shlex.split(first_command()), cwd=workdir, env=env, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip


def wait_for(predicate, timeout_s: float, what: str, log: Path) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}; log:\n{log.read_text()[-3000:]}")


def query_klines(workdir: Path, *extra: str) -> list[str]:
    """CSV rows of the demo's BTCUSDT 1s klines, as a second terminal would query them."""
    config = str(workdir / ".tickvault/tickvault.toml")
    result = subprocess.run(
        [str(workdir / ".venv/bin/tickvault"), "query", "klines", "--config", config,
         "--exchange", "demo", "--symbol", "BTCUSDT", "--interval", "1s", "--format", "csv", *extra],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    return result.stdout.splitlines()[1:] if result.returncode == 0 else []


def earliest_kline(workdir: Path) -> str:
    rows = query_klines(workdir, "--start", "0", "--limit", "1")
    return rows[0] if rows else ""


def interrupt(proc: subprocess.Popen[bytes]) -> int:
    os.killpg(proc.pid, signal.SIGINT)
    return proc.wait(60)


def test_readme_first_command_on_a_fresh_machine(tmp_path: Path) -> None:
    assert first_command() == "./scripts/dev-run.sh"
    workdir = tmp_path / "tickvault"
    shutil.copytree(
        REPO, workdir,
        ignore=shutil.ignore_patterns(".git", ".venv", ".tickvault", "*.egg-info", "__pycache__", ".*_cache"),
    )  # fmt: skip
    log = tmp_path / "dev.log"
    proc = start(workdir, log, free_port())
    try:
        wait_for(lambda: BANNER in log.read_text(), 600, "the setup to finish and the daemon to start", log)
        text = log.read_text()
        assert f"host={workdir}/.tickvault/postgres" in text  # its own server, not the machine's
        assert f"unix://{workdir}/.tickvault/redis.sock" in text
        started = time.monotonic()
        wait_for(lambda: len(query_klines(workdir)) > 0, 60, "stored klines", log)
        assert time.monotonic() - started < 60
        first = earliest_kline(workdir)
        assert first.startswith("demo,BTCUSDT,1s,")
        assert interrupt(proc) == 0
        assert "stopped cleanly" in log.read_text()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert query_klines(workdir) == []  # the embedded servers stopped with it

    proc = start(workdir, log, free_port())  # the second start reuses the data
    try:
        wait_for(lambda: log.read_text().count(BANNER) == 2, 120, "the second start", log)
        assert earliest_kline(workdir) == first
        assert interrupt(proc) == 0
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
