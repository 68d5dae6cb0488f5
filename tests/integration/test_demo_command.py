"""`tickvault demo`: the synthetic market published to the configured source (Redis streams or
Kafka topics), stored by the daemon like any feed's; stopped by SIGTERM with exit 0, and a
restarted demo continues its prices from the last close it published."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import SOURCES, Daemon, TestEnv, stop_process, wait_until

pytestmark = pytest.mark.parametrize("source", SOURCES, indirect=True)


def spawn_demo(env: TestEnv, log_path: Path, seed: int) -> subprocess.Popen[bytes]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("TICKVAULT_")}
    environ.update(env.environ())
    with log_path.open("ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "tickvault", "demo", "--seed", str(seed)],
            env=environ, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip


def output(log_path: Path) -> str:
    return log_path.read_text()


async def demo_seconds(env: TestEnv) -> int:
    """Distinct seconds of BTCUSDT 1s klines stored."""
    rows = await env.fetch(
        "SELECT count(*) AS n FROM {s}.klines "
        "WHERE exchange = 'demo' AND symbol = 'BTCUSDT' AND interval = '1s'"
    )
    return int(rows[0]["n"])


async def run_demo(env: TestEnv, log_path: Path, seed: int, seconds_at_least: int) -> None:
    proc = spawn_demo(env, log_path, seed)
    try:

        async def stored() -> bool:
            assert proc.poll() is None, output(log_path)
            return await demo_seconds(env) >= seconds_at_least

        await wait_until(stored, 120, what="demo klines to be stored")
    finally:
        code = stop_process(proc)
    assert code == 0, output(log_path)


async def test_the_demo_market_is_stored_and_continues_after_a_restart(
    env: TestEnv, daemon: Daemon, tmp_path: Path
) -> None:
    await daemon.start(env.settings())
    log_path = tmp_path / "demo.log"
    await run_demo(env, log_path, seed=1, seconds_at_least=3)
    first_run = await demo_seconds(env)
    await run_demo(env, log_path, seed=2, seconds_at_least=first_run + 3)

    async def bot_stored() -> bool:
        return await env.count("orders") >= 1 and await env.count("bot_state") >= 1

    await wait_until(bot_stored, 60, what="the demo bot's orders and state to be stored")
    rows = await env.fetch(
        "SELECT open, close FROM {s}.klines "
        "WHERE exchange = 'demo' AND symbol = 'BTCUSDT' AND interval = '1s' ORDER BY open_time"
    )
    # every second opens at the last close, across the restart too (a fresh market would
    # start again at 87000.00)
    assert len(rows) > first_run
    assert all(b["open"] == a["close"] for a, b in itertools.pairwise(rows))
    symbols = await env.fetch("SELECT DISTINCT symbol FROM {s}.klines WHERE exchange = 'demo'")
    assert {r["symbol"] for r in symbols} == {"BTCUSDT", "ETHUSDT", "SOLUSDT"}
    assert await env.count("dead_letters") == 0
