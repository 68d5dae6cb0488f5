"""Acceptance: the README's first command, run as a new user would (fresh copy of the
repository, fresh virtualenv, no PostgreSQL or Redis of the machine used), stores rows within
a minute, stops cleanly on SIGINT, and the next start reuses the data without installing
again; the demo market continues where it stopped."""

from __future__ import annotations

import csv
import datetime as dt
import io
import os
import re
import shlex
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import free_port, scratch_dir

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]
BANNER = "tickvault dev is running"


@pytest.fixture
def scratch() -> Iterator[Path]:
    with scratch_dir() as path:
        yield path


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


def query(workdir: Path, *args: str) -> list[dict[str, str]]:
    """`tickvault query ARGS` rows as a second terminal would get them ([] while unreachable)."""
    config = str(workdir / ".tickvault/tickvault.toml")
    result = subprocess.run(
        [str(workdir / ".venv/bin/tickvault"), "query", *args, "--config", config, "--format", "csv"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    return list(csv.DictReader(io.StringIO(result.stdout))) if result.returncode == 0 else []


def query_klines(workdir: Path, *extra: str) -> list[str]:
    """CSV rows of the demo's BTCUSDT 1s klines, as a second terminal would query them."""
    config = str(workdir / ".tickvault/tickvault.toml")
    result = subprocess.run(
        [str(workdir / ".venv/bin/tickvault"), "query", "klines", "--config", config,
         "--exchange", "demo", "--symbol", "BTCUSDT", "--interval", "1s", "--format", "csv", *extra],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    return result.stdout.splitlines()[1:] if result.returncode == 0 else []


def btc(workdir: Path, interval: str) -> list[dict[str, str]]:
    return query(
        workdir, "klines", "--exchange", "demo", "--symbol", "BTCUSDT", "--interval", interval, "--start", "0"
    )


def iso(ms: int) -> str:
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def earliest_kline(workdir: Path) -> str:
    rows = query_klines(workdir, "--start", "0", "--limit", "1")
    return rows[0] if rows else ""


def interrupt(proc: subprocess.Popen[bytes]) -> int:
    os.killpg(proc.pid, signal.SIGINT)
    return proc.wait(60)


def test_readme_first_command_on_a_fresh_machine(scratch: Path) -> None:
    assert first_command() == "./scripts/dev-run.sh"
    workdir = scratch / "tickvault"
    shutil.copytree(
        REPO, workdir,
        ignore=shutil.ignore_patterns(".git", ".venv", ".tickvault", "*.egg-info", "__pycache__", ".*_cache"),
    )  # fmt: skip
    log = scratch / "dev.log"
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
        stopped_ms = int(time.time() * 1000)  # every message of the first run is older
        assert interrupt(proc) == 0
        assert "stopped cleanly" in log.read_text()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert query_klines(workdir) == []  # the embedded servers stopped with it

    proc = start(workdir, log, free_port())  # the second start reuses the data
    try:
        wait_for(lambda: log.read_text().count(BANNER) == 2, 120, "the second start", log)
        assert log.read_text().count("installing tickvault") == 1  # the virtualenv is reused as it is
        assert earliest_kline(workdir) == first
        stop = iso(stopped_ms)
        wait_for(lambda: [k for k in btc(workdir, "1s") if k["open_time"] > stop], 60, "klines after it", log)
        seconds = btc(workdir, "1s")
        last_before = [k for k in seconds if k["open_time"] < stop][-1]
        first_after = next(k for k in seconds if k["open_time"] > stop)
        assert first_after["open"] == last_before["close"]  # prices go on from where they stopped

        minute = last_before["open_time"][:17] + "00Z"  # the 1m candle open at the stop ...

        def closed() -> bool:
            return any(k["open_time"] == minute and k["closed"] == "True" for k in btc(workdir, "1m"))

        wait_for(closed, 90, f"the 1m candle of {minute} to be closed", log)  # ... is closed after it

        def ended() -> bool:  # every order placed before the stop ends filled or canceled
            orders = query(workdir, "orders", "--bot-id", "demo-grid-1")
            before = [o for o in orders if o["created_at"] < stop]
            return bool(before) and all(o["status"] in ("filled", "canceled") for o in before)

        wait_for(ended, 120, "the orders open at the stop to be filled or canceled", log)
        assert interrupt(proc) == 0
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
