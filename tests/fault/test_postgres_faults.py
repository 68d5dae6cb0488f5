"""Fault suite: PostgreSQL restarted, down for a minute, and slow, while messages keep coming.

The daemon runs as `python -m tickvault run` against a PostgreSQL cluster of the tests' own
(`private_pg`), with a small backlog so that a fault fills it within seconds. Memory is the
daemon's resident set from /proc (VmHWM: the peak, so no sample can miss it). Each scenario
ends with every message stored exactly once and equal, Decimal for Decimal, to what was
sent, and records its figures (tests/fault/report.py).

In CI each scenario runs on one source (the outage and restarts on Redis Streams, the slow
database on Kafka); the long mode (TICKVAULT_FAULT_ROUNDS) runs each on both.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from tests.fault import report
from tests.fault.watched import (
    backlog_bound,
    mib,
    observe,
    parts,
    publish,
    record_and_check,
    tally,
    until_ready,
    until_settled,
    watched_daemon,
)
from tests.helpers import (
    SOURCES,
    PrivatePostgres,
    TestEnv,
    http_get,
    sample,
    stop_process,
    wait_until,
)
from tests.integration import workload

LONG = bool(os.environ.get(report.ROUNDS_ENV))
OUTAGE_S = 60  # the figure: a minute without PostgreSQL
LOCK_S = 15  # how long the slow-database scenario holds its locks
# the daemon's peak RSS may grow by this much during a fault in which far more than the
# backlog is published: measured +2 MiB with the backlog bounded, +70 MiB for the slow
# database's 62,100 messages (and more for the outage's) when the backlog is not
RSS_GROWTH_LIMIT_BYTES = 32 * 1024 * 1024
LOCKED_TABLES = ("klines", "orders", "order_events", "fills", "bot_state")


def sources(ci: str) -> list[str]:
    """The sources a scenario runs on: `ci` in CI, both in the long mode."""
    return SOURCES if LONG else [ci]


@pytest.fixture
async def pg_env(env: TestEnv, private_pg: PrivatePostgres) -> AsyncIterator[TestEnv]:
    """The test's environment on a database of the private cluster, which the test may stop."""
    name = f"fault_{uuid.uuid4().hex[:8]}"
    await _admin(private_pg.dsn, f'CREATE DATABASE "{name}"')
    env.dsn = private_pg.dsn.rsplit("/", 1)[0] + "/" + name
    yield env
    if not await _pg_up(private_pg.dsn):
        await asyncio.to_thread(private_pg.start)
    await _admin(private_pg.dsn, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def _admin(dsn: str, sql: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


async def _pg_up(dsn: str) -> bool:
    try:
        conn = await asyncpg.connect(dsn, timeout=2)
    except (OSError, asyncpg.PostgresError):
        return False
    await conn.close()
    return True


async def klines_stored(env: TestEnv) -> int:
    try:
        return await env.count("klines")
    except asyncpg.UndefinedTableError:
        return 0


@pytest.mark.parametrize("source", sources("redis"), indirect=True)
async def test_postgres_restarts_mid_ingest(
    pg_env: TestEnv, private_pg: PrivatePostgres, tmp_path: Path
) -> None:
    """PostgreSQL stopped (immediate: as if it crashed) and started again while messages are
    being published and written, once per round: the daemon reconnects by itself."""
    env, n = pg_env, report.rounds(2)
    w = workload.build(klines=8_000 * n, orders=1_000 * n, fills=1_000 * n, states=200 * n, seed=19)
    with watched_daemon(env, tmp_path / "daemon.log") as daemon:
        await until_ready(daemon)
        for chunk in parts(w, *(i / n for i in range(1, n))):
            before = await klines_stored(env)
            publishing = asyncio.create_task(publish(env, chunk, steps=8, pause_s=0.2))

            async def writing(floor: int = before) -> bool:
                return await klines_stored(env) > floor

            await wait_until(writing, 60, 0.02, "rows of this round to arrive")
            await asyncio.to_thread(private_pg.stop)
            await asyncio.to_thread(private_pg.start)
            await publishing
        await until_settled(env, daemon)
        await until_ready(daemon)
        retries = sample(await asyncio.to_thread(daemon.metrics), "tickvault_store_retries_total")
        assert stop_process(daemon.proc) == 0
    t = await tally(env, w)
    detail = f"{env.source}; {retries:.0f} write retries; exited 0"
    record_and_check(f"postgres restart ({env.source})", n, w, t, detail)


@pytest.mark.parametrize("source", sources("redis"), indirect=True)
async def test_a_minute_without_postgres(
    pg_env: TestEnv, private_pg: PrivatePostgres, tmp_path: Path
) -> None:
    """PostgreSQL down for OUTAGE_S while far more than the backlog is published: the daemon
    stays up and live, is not ready, reports PostgreSQL down, holds at most its backlog (the
    rest waits in the broker, the resident set stays put), and resumes by itself."""
    env = pg_env
    w = workload.build(klines=100_000, orders=8_000, fills=8_000, states=2_000, seed=60)
    warm, during, after = parts(w, 0.1, 0.9)
    with watched_daemon(env, tmp_path / "daemon.log") as daemon:
        await until_ready(daemon)
        await publish(env, warm)  # at once: the backlog fills up here already
        await until_settled(env, daemon)
        rss_before = daemon.peak_rss_bytes()

        await asyncio.to_thread(private_pg.stop)
        publishing = asyncio.create_task(publish(env, during, steps=20, pause_s=1.0))
        seen = await observe(daemon, OUTAGE_S)
        await publishing
        waiting = await env.unsettled()
        rss_peak = daemon.peak_rss_bytes() if daemon.alive() else 0
        await asyncio.to_thread(private_pg.start)

        await publish(env, after)
        await until_settled(env, daemon)
        await until_ready(daemon)

        async def postgres_up() -> bool:
            samples = await asyncio.to_thread(daemon.metrics)
            return sample(samples, "tickvault_dependency_up", dependency="postgres") == 1

        await wait_until(postgres_up, 30, 0.2, "the probe to see PostgreSQL again")
        assert stop_process(daemon.proc) == 0
    t = await tally(env, w)
    detail = (
        f"{env.source}; {OUTAGE_S} s down; {sum(len(p) for p in during.values())} published meanwhile; "
        f"backlog max {seen.backlog_max:.0f}; RSS peak +{mib(rss_peak - rss_before)} "
        f"({mib(rss_peak)})"
    )
    record_and_check(f"postgres outage {OUTAGE_S} s ({env.source})", 1, w, t, detail)

    assert not seen.exited
    assert seen.healthz == {200}  # live throughout: nothing to restart
    last_code, last_body = seen.readyz[-1]
    assert (last_code, last_body) == (503, "not ready: postgres unavailable")
    assert seen.postgres_up[-1] == 0
    assert seen.backlog_max <= backlog_bound(env)
    assert waiting >= sum(len(p) for p in during.values()) - backlog_bound(env)  # held by the broker
    assert len(seen.consumed_since(OUTAGE_S - 20)) == 1  # reading paused
    assert rss_peak - rss_before < RSS_GROWTH_LIMIT_BYTES


@pytest.mark.parametrize("source", sources("kafka"), indirect=True)
async def test_a_slow_database_pauses_reading(pg_env: TestEnv, tmp_path: Path) -> None:
    """Every table the workload writes locked (ACCESS EXCLUSIVE) for LOCK_S while a burst many
    times the backlog is published at full speed: flushes wait, reading pauses at the
    backlog, the broker holds the rest, memory stays put; then everything lands once."""
    env = pg_env
    w = workload.build(klines=60_000, orders=4_000, fills=4_000, states=1_000, seed=21)
    warm, burst = parts(w, 0.1)
    with watched_daemon(env, tmp_path / "daemon.log") as daemon:
        await until_ready(daemon)
        await publish(env, warm)
        await until_settled(env, daemon)
        rss_before = daemon.peak_rss_bytes()

        locker = await asyncpg.connect(env.dsn)
        try:
            async with locker.transaction():
                tables = ", ".join(f"{env.schema}.{t}" for t in LOCKED_TABLES)
                await locker.execute(f"LOCK TABLE {tables} IN ACCESS EXCLUSIVE MODE")
                publishing = asyncio.create_task(publish(env, burst))
                seen = await observe(daemon, LOCK_S)
                await publishing
                waiting = await env.unsettled()
                rss_peak = daemon.peak_rss_bytes() if daemon.alive() else 0
        finally:
            await locker.close()
        await until_settled(env, daemon)
        assert stop_process(daemon.proc) == 0
    t = await tally(env, w)
    ready = "/readyz stayed 200" if {c for c, _ in seen.readyz} == {200} else "/readyz went 503"
    detail = (
        f"{env.source}; tables locked {LOCK_S} s; {sum(len(p) for p in burst.values())} published at once; "
        f"backlog max {seen.backlog_max:.0f}; RSS peak +{mib(rss_peak - rss_before)} ({mib(rss_peak)}); "
        f"{ready}"
    )
    record_and_check(f"slow database: locked {LOCK_S} s ({env.source})", 1, w, t, detail)

    assert not seen.exited
    assert seen.healthz == {200}
    assert seen.backlog_max <= backlog_bound(env)
    assert waiting >= sum(len(p) for p in burst.values()) - backlog_bound(env)
    assert len(seen.consumed_since(LOCK_S - 5)) == 1  # reading paused
    assert rss_peak - rss_before < RSS_GROWTH_LIMIT_BYTES


async def test_readiness_follows_postgres_on_a_quiet_feed(
    pg_env: TestEnv, private_pg: PrivatePostgres, tmp_path: Path
) -> None:
    """With nothing to write, no write can fail: the dependency probe alone sees PostgreSQL
    go and come back, and /readyz follows it."""
    with watched_daemon(pg_env, tmp_path / "daemon.log") as daemon:
        await until_ready(daemon)
        await asyncio.to_thread(private_pg.stop)

        async def unready() -> bool:
            assert daemon.alive(), daemon.tail()
            return await asyncio.to_thread(http_get, daemon.port, "/readyz") == (
                503,
                "not ready: postgres unavailable\n",
            )

        await wait_until(unready, 30, 0.2, "/readyz to report PostgreSQL down")
        assert await asyncio.to_thread(daemon.status, "/healthz") == 200
        await asyncio.to_thread(private_pg.start)
        await until_ready(daemon, 30)
        assert stop_process(daemon.proc) == 0
