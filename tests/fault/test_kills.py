"""Fault suite: the daemon SIGKILLed at random points, round after round, while it ingests
(Redis Streams and Kafka) and while its archive task rolls partitions to the cold tier.

Each round publishes its share of a mixed workload (klines, orders, fills, trades, bot
states) while a daemon subprocess runs, and SIGKILLs the daemon at a point drawn from a
seeded RNG: during start-up, or some time after rows began landing. A last daemon then
drains everything and stops with SIGTERM, and every table must hold exactly what was sent:
no key lost, none twice, every value Decimal-equal. TICKVAULT_FAULT_ROUNDS runs more rounds.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import random
import signal
import subprocess
import time
from pathlib import Path

import asyncpg
import pytest

from tests.fault import common
from tests.fault.report import rounds
from tests.helpers import SOURCES, TestEnv, kill_process, spawn_daemon, stop_process, wait_until

SMALL_BATCHES = {"max_rows": 300, "max_age_s": 0.05}


async def kill_at_random_point(
    env: TestEnv, proc: subprocess.Popen[bytes], rng: random.Random, before: int
) -> str:
    """SIGKILL `proc` during start-up (a third of the rounds) or within a second after rows
    began landing; where it was killed, for the log."""
    if rng.random() < 1 / 3:
        delay_s = rng.uniform(0.2, 2.0)
        await asyncio.sleep(delay_s)
        where = f"{delay_s:.2f} s after spawn"
    else:

        async def landing() -> bool:
            return proc.poll() is not None or await common.stored_total(env) > before

        await wait_until(landing, 90, 0.02, "rows to land")
        delay_s = rng.uniform(0.0, 1.0)
        await asyncio.sleep(delay_s)
        where = f"{delay_s:.2f} s after rows landed"
    assert proc.poll() is None, f"the daemon exited by itself with {proc.returncode}"
    proc.send_signal(signal.SIGKILL)
    assert proc.wait(10) == -signal.SIGKILL
    return f"{where}, {await env.unsettled()} uncommitted"


def tail(log: Path) -> str:
    return log.read_text()[-2000:]


async def drain_and_stop(env: TestEnv, log: Path, **sections: dict[str, object]) -> None:
    """A last daemon: run until the source holds nothing uncommitted, then SIGTERM (exit 0)."""
    proc = spawn_daemon(env, log, **sections)
    try:

        async def settled() -> bool:
            assert proc.poll() is None, f"daemon exited with {proc.returncode}: {tail(log)}"
            return await env.unsettled() == 0

        await wait_until(settled, 180, 0.2, "the last daemon to drain")
        assert stop_process(proc) == 0
    finally:
        kill_process(proc)


@pytest.mark.parametrize("source", SOURCES, indirect=True)
async def test_sigkill_at_random_points_while_ingesting(env: TestEnv, tmp_path: Path) -> None:
    n_rounds = rounds(4)
    w = common.mixed(1_500 * n_rounds, seed=31)
    parts = common.slices(w, n_rounds)
    rng = random.Random(1931)
    # Kafka: the group waits out the killed member's session before the restarted one gets
    # its partitions; a short session keeps each round short
    sections = {"batch": SMALL_BATCHES, "kafka": {"session_timeout_ms": 3000, "heartbeat_interval_ms": 300}}
    log, landed = tmp_path / "daemon.log", []
    for r, part in enumerate(parts):
        before = await common.stored_total(env)
        proc = spawn_daemon(env, log, **sections)
        publishing = asyncio.create_task(common.publish(env, part, chunk=200))
        try:
            landed.append(f"round {r}: " + await kill_at_random_point(env, proc, rng, before))
            await publishing
        finally:
            kill_process(proc)
            if not publishing.done():  # the round failed: stop publishing before teardown
                publishing.cancel()
                await asyncio.gather(publishing, return_exceptions=True)
    await drain_and_stop(env, log, **sections)
    tally = await common.tally(env, w)
    assert await env.count("dead_letters") == 0
    print("\n".join(landed))
    common.record_and_check(
        f"SIGKILL while ingesting ({env.source})", n_rounds, tally, "; ".join(landed[:3]) + " …"
    )


# ---- while rolling -------------------------------------------------------------------------

DAYS = 6  # days of old data, all past the hot retention; a tail of recent data stays hot
RETENTION = {"timescale": "off", "partition_interval_days": 1, "partitions_ahead": 0}


def archive_sections(root: Path) -> dict[str, dict[str, object]]:
    return {
        "postgres": RETENTION,
        "archive": {"enabled": True, "root": str(root), "hot_retention": "2d", "interval_s": 0.3},
        "batch": SMALL_BATCHES,
    }


async def kill_while_rolling(proc: subprocess.Popen[bytes], env: TestEnv, rng: random.Random) -> str:
    """SIGKILL `proc` a random time after its archive task took the roll lock (or, when no
    roll starts within 60 s, now); where it was killed, for the log."""
    deadline, rolling = time.monotonic() + 60, True
    while not await common.holds_roll_lock(env):
        assert proc.poll() is None, f"the daemon exited by itself with {proc.returncode}"
        if time.monotonic() > deadline:
            rolling = False
            break
        await asyncio.sleep(0.01)
    delay_s = rng.uniform(0.0, 3.0)
    await asyncio.sleep(delay_s)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait(10) == -signal.SIGKILL
    rolled = await archived(env)
    where = "into a roll" if rolling else "after start (no roll began)"
    return f"{delay_s:.2f} s {where}, rolled so far: {rolled}"


async def archived(env: TestEnv) -> int:
    """Partitions rolled and dropped so far (archive_log rows; none before the migration)."""
    try:
        return len(await env.fetch("SELECT 1 FROM {s}.archive_log"))
    except (asyncpg.UndefinedTableError, asyncpg.InvalidSchemaNameError):
        return 0


async def old_rows_left(env: TestEnv) -> int:
    cutoff = dt.datetime.now(dt.UTC) - dt.timedelta(days=2, hours=1)
    rows = await env.fetch(
        "SELECT (SELECT count(*) FROM {s}.klines WHERE open_time < $1)"
        " + (SELECT count(*) FROM {s}.fills WHERE ts < $1)"
        " + (SELECT count(*) FROM {s}.trades WHERE ts < $1)"
        " + (SELECT count(*) FROM {s}.order_events WHERE updated_at < $1)",
        cutoff,
    )
    return int(rows[0][0])


async def test_sigkill_at_random_points_while_rolling(env: TestEnv, tmp_path: Path) -> None:
    """Old days arrive round by round and the daemon's archive task (interval 0.3 s) rolls
    them while ingest goes on; each round's daemon is SIGKILLed during a roll. A clean run
    then finishes: hot + cold hold every message exactly once."""
    n_rounds = rounds(3)
    midnight = dt.datetime.now(dt.UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    t0_ms = int((midnight - dt.timedelta(days=DAYS + 3)).timestamp() * 1000)
    old = common.mixed(600 * n_rounds, seed=37, t0_ms=t0_ms, days=DAYS)
    recent_ms = int((dt.datetime.now(dt.UTC) - dt.timedelta(hours=3)).timestamp() * 1000)
    recent = common.mixed(300, seed=41, t0_ms=recent_ms, days=0.1, first_id=10**6)
    for kind in ("order", "bot_state"):  # their ids would repeat the old ones'
        del recent.payloads[kind], recent.expected[kind]
    root, log = tmp_path / "cold", tmp_path / "daemon.log"
    sections = archive_sections(root)
    rng, landed = random.Random(1937), []
    for r, part in enumerate(common.slices(old, n_rounds)):
        await common.publish(env, part, chunk=300, pause_s=0)
        proc = spawn_daemon(env, log, **sections)
        try:
            landed.append(f"round {r}: " + await kill_while_rolling(proc, env, rng))
        finally:
            kill_process(proc)

    for kind, payloads in recent.payloads.items():
        await env.publish(kind, payloads)
    proc = spawn_daemon(env, log, **sections)
    try:

        async def finished() -> bool:
            assert proc.poll() is None, f"daemon exited with {proc.returncode}: {tail(log)}"
            return await env.unsettled() == 0 and await old_rows_left(env) == 0

        await wait_until(finished, 180, 0.3, "the clean run to ingest and roll everything")
        assert stop_process(proc) == 0
    finally:
        kill_process(proc)

    w = _merged(old, recent)
    tally = await common.tally(env, w, env.settings(**sections))
    assert await env.count("dead_letters") == 0
    rolled = len(await env.fetch("SELECT 1 FROM {s}.archive_log"))
    assert rolled > 0
    print("\n".join(landed))
    detail = f"partitions rolled: {rolled}; " + "; ".join(landed[:2]) + " …"
    common.record_and_check("SIGKILL while rolling (local root)", n_rounds, tally, detail)


def _merged(a: common.workload.Workload, b: common.workload.Workload) -> common.workload.Workload:
    """Both workloads as one; their keys are distinct (other times, or other ids)."""
    out = common.workload.Workload(payloads={}, expected={})
    for kind in a.expected:
        out.expected[kind] = {**a.expected[kind], **b.expected.get(kind, {})}
        assert len(out.expected[kind]) == len(a.expected[kind]) + len(b.expected.get(kind, {})), kind
    return out
