"""What /metrics shows from the daemon's start, before anything happens: series of known label
values at 0 (messages consumed per configured kind, archive counters per time table), and
the last roll as the archive log remembers it; and a roller round that fails as a whole
counts against every table.

The start is checked on a daemon in a subprocess: the test process's registry holds the
series of earlier tests."""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path

import asyncpg
import pytest
from prometheus_client import REGISTRY

from tests.helpers import (
    KIND_STREAMS,
    TestEnv,
    free_port,
    http_get,
    kill_process,
    scrape,
    spawn_daemon,
    stop_process,
    wait_for_port,
    wait_until,
)
from tickvault.archive import roller
from tickvault.errors import StoreError
from tickvault.store import migrate
from tickvault.store.schema import TIME_TABLES

LAST_ROLL = dt.datetime(2026, 1, 5, 3, 0, 7, 250_000, tzinfo=dt.UTC)


async def test_series_exist_at_zero_and_the_last_roll_is_restored(env: TestEnv, tmp_path: Path) -> None:
    settings = env.settings()
    await migrate.upgrade(settings.postgres, "head", settings)
    conn = await asyncpg.connect(env.dsn)
    try:
        await conn.execute(
            f"INSERT INTO {env.schema}.archive_log (table_name, range_start, range_end, files, rows, "  # noqa: S608
            "bytes, checksum, written_at) VALUES ('klines', $1, $2, 1, 10, 100, 'x', $3)",
            LAST_ROLL - dt.timedelta(days=14), LAST_ROLL - dt.timedelta(days=7), LAST_ROLL,
        )  # fmt: skip
    finally:
        await conn.close()
    port = free_port()
    sections = {
        "metrics": {"enabled": True, "host": "127.0.0.1", "port": port},
        "archive": {"enabled": True, "root": str(tmp_path / "cold"), "interval_s": 3600},
    }
    proc = spawn_daemon(env, tmp_path / "daemon.log", **sections)
    try:
        wait_for_port(port, proc, "the daemon's metrics")

        async def ready() -> bool:
            return (await asyncio.to_thread(http_get, port, "/readyz"))[0] == 200

        await wait_until(ready, 60, 0.2, f"the daemon to be ready (log: {tmp_path / 'daemon.log'})")
        samples = await asyncio.to_thread(scrape, port)
    finally:
        assert stop_process(proc) == 0
        kill_process(proc)

    for kind in [*KIND_STREAMS, "mixed"]:  # every configured topic's kind, nothing published
        labels = frozenset({("kind", kind), ("source", env.source)})
        assert samples[("tickvault_messages_consumed_total", labels)] == 0, kind
    for t in TIME_TABLES:
        assert samples[("tickvault_archive_failures_total", frozenset({("table", t.name)}))] == 0, t.name
        assert ("tickvault_archive_partitions_total", frozenset({("table", t.name)})) in samples
    last = samples[("tickvault_archive_last_success_timestamp_seconds", frozenset())]
    assert last == LAST_ROLL.timestamp()


def failures() -> dict[str, float]:
    """table → tickvault_archive_failures_total in this process's registry."""
    return {
        s.labels["table"]: s.value
        for family in REGISTRY.collect()
        if family.name == "tickvault_archive_failures"
        for s in family.samples
        if s.name.endswith("_total")
    }


@pytest.mark.parametrize("tables", [(), ("fills",)])
async def test_a_round_that_fails_as_a_whole_counts_for_each_of_its_tables(
    env: TestEnv, tmp_path: Path, tables: tuple[str, ...]
) -> None:
    """PostgreSQL unreachable (a port nothing listens on): the round raises, and each table
    it was to roll counts one failure."""
    dsn = f"postgresql://postgres@127.0.0.1:{free_port()}/postgres"
    settings = env.settings(
        postgres={"dsn": dsn, "schema": env.schema, "create_database": False, "connect_retries": 0},
        archive={"enabled": True, "root": str(tmp_path / "cold")},
    )
    before = failures()
    with pytest.raises(StoreError):
        await roller.roll(settings, tables=tables)
    after = failures()
    expected = {t.name: 1.0 for t in TIME_TABLES if not tables or t.name in tables}
    moved = {name: after[name] - before.get(name, 0.0) for name in after}
    assert {name: n for name, n in moved.items() if n} == expected
