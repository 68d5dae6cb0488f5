"""Acceptance, on Redis Streams and on Kafka: SIGKILL mid-ingest, PostgreSQL outage
mid-ingest, and SIGTERM drain — every message stored exactly once, nothing left pending."""

from __future__ import annotations

import asyncio
import signal
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from tests.helpers import (
    SOURCES,
    Daemon,
    PrivatePostgres,
    TestEnv,
    kill_process,
    spawn_daemon,
    stop_process,
    wait_until,
)
from tests.integration import workload

pytestmark = [pytest.mark.slow, pytest.mark.parametrize("source", SOURCES, indirect=True)]


async def assert_exactly_once(env: TestEnv, w: workload.Workload) -> None:
    for kind, expected in w.expected.items():
        table, _ = workload.KEYS[kind]
        assert await env.count(table) == len(expected), table
    assert await env.count("order_events") == len(w.expected["order"])
    assert await env.count("dead_letters") == 0


async def publish_all(env: TestEnv, w: workload.Workload) -> None:
    for kind, payloads in w.payloads.items():
        await env.publish(kind, payloads)


@pytest.mark.parametrize("restart_as", ["same_consumer", "other_consumer"])
async def test_sigkill_mid_ingest_then_restart(env: TestEnv, tmp_path: Path, restart_as: str) -> None:
    """Redis: the same consumer recovers its own pending entries at start; another consumer
    claims them with XAUTOCLAIM once they have been idle for claim_idle_s. Kafka: the
    restarted member, under either client id, resumes from the last committed offsets."""
    w = workload.build(klines=24_000, orders=3_000, fills=3_000, states=1_000, seed=11)
    await publish_all(env, w)
    log = tmp_path / "daemon.log"
    small_batches = {"batch": {"max_rows": 500, "max_age_s": 0.05}}
    proc = spawn_daemon(env, log, **small_batches)
    try:
        await wait_until(lambda: _klines_between(env, 2_000, 20_000), 60, 0.02, "ingest to be under way")
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(10) == -signal.SIGKILL
    finally:
        kill_process(proc)
    assert await env.count("klines") < 24_000  # killed mid-ingest
    assert await env.unsettled() > 0
    if env.source == "redis":
        assert await env.pending() > 0  # entries were read and never acknowledged

    consumer = "c1" if restart_as == "same_consumer" else "c2"
    proc = spawn_daemon(
        env, log, redis={"consumer": consumer}, kafka={"client_id": consumer}, **small_batches
    )
    try:
        await wait_until(
            lambda: _settled(env), 120, 0.2, f"restarted daemon to finish (log: {log.read_text()[-2000:]})"
        )
        assert stop_process(proc) == 0
    finally:
        kill_process(proc)
    await assert_exactly_once(env, w)


async def _klines_between(env: TestEnv, low: int, high: int) -> bool:
    try:
        n = await env.count("klines")
    except asyncpg.UndefinedTableError:
        return False
    return low <= n <= high


async def _settled(env: TestEnv) -> bool:
    return await env.unsettled() == 0


@pytest.fixture
async def outage_env(env: TestEnv, private_pg: PrivatePostgres) -> AsyncIterator[TestEnv]:
    """The test's environment, but on a PostgreSQL server the test may stop."""
    name = f"outage_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(private_pg.dsn)
    await admin.execute(f'CREATE DATABASE "{name}"')
    await admin.close()
    env.dsn = private_pg.dsn.rsplit("/", 1)[0] + "/" + name
    yield env
    if not await _up(private_pg):
        private_pg.start()
    admin = await asyncpg.connect(private_pg.dsn)
    await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    await admin.close()


async def _up(server: PrivatePostgres) -> bool:
    try:
        conn = await asyncpg.connect(server.dsn, timeout=2)
    except (OSError, asyncpg.PostgresError):
        return False
    await conn.close()
    return True


async def test_postgres_outage_mid_ingest(outage_env: TestEnv, private_pg: PrivatePostgres) -> None:
    env = outage_env
    daemon = Daemon(env)
    w = workload.build(klines=16_000, orders=2_000, fills=2_000, states=500, seed=5)
    half = {kind: len(p) // 2 for kind, p in w.payloads.items()}
    _, task = await daemon.start(env.settings(batch={"max_rows": 500, "max_age_s": 0.05}))
    try:
        for kind, payloads in w.payloads.items():
            await env.publish(kind, payloads[: half[kind]])
        await wait_until(lambda: _klines_between(env, 1, 16_000), 30, 0.02, "first rows")

        await asyncio.to_thread(private_pg.stop)
        for kind, payloads in w.payloads.items():
            await env.publish(kind, payloads[half[kind] :])
        await asyncio.sleep(4)
        assert not task.done(), "the daemon must wait for PostgreSQL, not exit"
        assert await env.unsettled() > 0  # nothing acknowledged while the writes cannot commit

        await asyncio.to_thread(private_pg.start)
        await daemon.drain(timeout_s=120)
    finally:
        codes = await daemon.stop_all()
    assert codes == [0]
    await assert_exactly_once(env, w)


async def test_sigterm_drains_and_exits_zero(env: TestEnv, tmp_path: Path) -> None:
    w = workload.build(klines=30_000, orders=0, fills=0, states=0, seed=3)
    await publish_all(env, w)
    # a small backlog bounds how far reading runs ahead of writing, so the stop is mid-stream
    batch = {"max_rows": 500, "max_age_s": 0.05, "max_backlog_rows": 2_000}
    reads = {"redis": {"read_count": 500}, "kafka": {"max_poll_records": 500}}
    proc = spawn_daemon(env, tmp_path / "daemon.log", batch=batch, **reads)
    try:
        await wait_until(lambda: _klines_between(env, 1_000, 20_000), 60, 0.02, "ingest under way")
        assert stop_process(proc, signal.SIGTERM, timeout_s=30) == 0
    finally:
        kill_process(proc)
    if env.source == "redis":
        assert await env.pending() == 0  # everything read was written and acknowledged
    uncommitted = await env.unsettled()
    assert uncommitted > 0  # it stopped mid-stream...
    assert await env.count("klines") == 30_000 - uncommitted  # ...with every read message committed
