"""Time partitioning: native range partitions created ahead and on demand, rows parked in
the default partition moved out; TimescaleDB hypertables where the extension is usable.

Every test passes with and without TimescaleDB: native-only tests set `timescale = "off"`,
and the tests of one case skip on servers of the other, saying why."""

from __future__ import annotations

import datetime as dt
import json
import re
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from tests.helpers import Daemon, TestEnv
from tickvault.errors import ConfigError
from tickvault.store import Store, migrate, timescale
from tickvault.store.schema import TIME_TABLES


def kline(open_time: str, close: str = "1") -> str:
    return json.dumps({
        "exchange": "okx", "symbol": "BTC-USDT", "interval": "1h", "open_time": open_time,
        "open": "1", "high": "2", "low": "1", "close": close, "volume": "3",
    })  # fmt: skip


async def test_partitions_exist_ahead_of_now(env: TestEnv, daemon: Daemon) -> None:
    await daemon.start(env.settings(postgres={"partitions_ahead": 3, "timescale": "off"}))
    rows = await env.fetch(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
        "WHERE i.inhparent = to_regclass($1) ORDER BY 1",
        f"{env.schema}.fills",
    )
    names = [r[0] for r in rows]
    assert "fills_default" in names
    assert len([n for n in names if n.startswith("fills_p")]) == 4  # current interval + 3 ahead


async def test_rows_parked_in_default_partition_move_to_a_new_partition(env: TestEnv, daemon: Daemon) -> None:
    await daemon.start(env.settings(postgres={"timescale": "off"}))
    # a row that reached the default partition (written before its partition existed)
    await env.fetch(
        'INSERT INTO {s}.klines (exchange, symbol, "interval", open_time, open, high, low, close, '
        "volume, closed) VALUES ('okx', 'BTC-USDT', '1h', '2018-05-01T00:00:00Z', 1, 1, 1, 1, 1, true)"
    )
    assert await env.count("klines_default") == 1
    await env.publish("kline", [kline("2018-05-01T01:00:00Z")])
    await daemon.drain()
    rows = await env.fetch("SELECT tableoid::regclass::text, open_time FROM {s}.klines ORDER BY open_time")
    assert len(rows) == 2
    assert {r[0] for r in rows} == {f"{env.schema}.klines_p20180426"}
    assert await env.count("klines_default") == 0


async def test_native_partitioner_is_detected_without_timescaledb(env: TestEnv) -> None:
    settings = env.settings(postgres={"timescale": "off"})
    await migrate.upgrade(settings.postgres)
    async with Store(settings.postgres, writer=True) as store:
        assert store.partitioning == "native"


async def timescale_unusable(dsn: str) -> str | None:
    """Why the migrations would not use TimescaleDB on `dsn`'s server, or None where they would."""
    conn = await asyncpg.connect(dsn)
    try:
        return await timescale.unusable_reason(conn)
    finally:
        await conn.close()


async def require_timescale(dsn: str) -> None:
    reason = await timescale_unusable(dsn)
    if reason is not None:
        pytest.skip(f"needs a usable TimescaleDB: {reason}")


async def require_no_timescale(dsn: str) -> None:
    if await timescale_unusable(dsn) is None:
        pytest.skip("needs a server where TimescaleDB is not usable; here it is")


async def test_timescaledb_hypertables(env: TestEnv, daemon: Daemon) -> None:
    await require_timescale(env.dsn)
    settings = env.settings(postgres={"timescale": "on"})
    await daemon.start(settings)
    rows = await env.fetch(
        "SELECT hypertable_name FROM timescaledb_information.hypertables WHERE hypertable_schema = $1",
        env.schema,
    )
    assert {r[0] for r in rows} == {t.name for t in TIME_TABLES}  # trades, balances, signals too
    await env.publish("kline", [kline("2018-05-01T01:00:00Z"), kline("2018-05-01T01:00:00Z", "1.5")])
    await daemon.drain()
    rows = await env.fetch("SELECT close, version_ms FROM {s}.klines")  # version_ms: 0002 ran too
    assert [str(r[0]) for r in rows] == ["1.5"]
    async with Store(settings.postgres, writer=True) as store:
        assert store.partitioning == "timescaledb"


async def test_auto_takes_hypertables_where_timescaledb_is_usable(env: TestEnv) -> None:
    await require_timescale(env.dsn)
    settings = env.settings(postgres={"timescale": "auto"})
    await migrate.upgrade(settings.postgres)
    async with Store(settings.postgres, writer=True) as store:
        assert store.partitioning == "timescaledb"


async def test_auto_takes_native_partitions_where_timescaledb_is_not_usable(env: TestEnv) -> None:
    await require_no_timescale(env.dsn)
    settings = env.settings(postgres={"timescale": "auto"})
    await migrate.upgrade(settings.postgres)
    async with Store(settings.postgres, writer=True) as store:
        assert store.partitioning == "native"


async def test_timescale_on_without_a_usable_extension_fails_creating_nothing(env: TestEnv) -> None:
    await require_no_timescale(env.dsn)
    reason = await timescale_unusable(env.dsn)
    assert reason is not None
    settings = env.settings(postgres={"timescale": "on"})
    with pytest.raises(ConfigError, match=re.escape(f'postgres.timescale is "on", but {reason}')):
        await migrate.upgrade(settings.postgres)
    schemas = await env.fetch("SELECT 1 FROM pg_namespace WHERE nspname = $1", env.schema)
    assert schemas == []
    # a database that does not exist yet is not created either
    missing = f"{env.dsn.rsplit('/', 1)[1]}_{env.tag}"
    dsn = f"{env.dsn.rsplit('/', 1)[0]}/{missing}"
    settings = env.settings(postgres={"timescale": "on", "dsn": dsn, "create_database": True})
    with pytest.raises(ConfigError, match=re.escape(f'postgres.timescale is "on", but {reason}')):
        await migrate.upgrade(settings.postgres)
    assert await env.fetch("SELECT 1 FROM pg_database WHERE datname = $1", missing) == []


async def test_timescaledb_is_not_usable_to_a_role_that_may_not_create_it(env: TestEnv) -> None:
    await require_timescale(env.dsn)
    base = env.dsn.rsplit("/", 1)[0]
    database, role = f"tickvault_t_{env.tag}", f"tickvault_t_{env.tag}"
    admin = await asyncpg.connect(f"{base}/postgres")
    try:
        await admin.execute(f'CREATE DATABASE "{database}"')
        await admin.execute(f'CREATE ROLE "{role}" LOGIN')
        parts = urlsplit(env.dsn)  # the test servers trust local roles: no password
        dsn = urlunsplit(
            parts._replace(netloc=f"{role}@{parts.netloc.rpartition('@')[2]}", path=f"/{database}")
        )
        reason = await timescale_unusable(dsn)
        assert reason is not None and "lacks the CREATE privilege" in reason
        await admin.execute(f'GRANT CREATE ON DATABASE "{database}" TO "{role}"')
        assert await timescale_unusable(dsn) is None
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        await admin.execute(f'DROP ROLE IF EXISTS "{role}"')
        await admin.close()


async def chunk_widths(env: TestEnv) -> dict[dt.datetime, dt.timedelta]:
    rows = await env.fetch(
        "SELECT range_start, range_end FROM timescaledb_information.chunks "
        "WHERE hypertable_schema = $1 AND hypertable_name = 'klines'",
        env.schema,
    )
    return {r["range_start"]: r["range_end"] - r["range_start"] for r in rows}


async def test_a_changed_interval_applies_to_new_hypertable_chunks(env: TestEnv, daemon: Daemon) -> None:
    await require_timescale(env.dsn)
    await daemon.start(env.settings(postgres={"timescale": "on", "partition_interval_days": 7}))
    await env.publish("kline", [kline("2018-05-01T01:00:00Z")])
    await daemon.drain()
    await daemon.stop_all()
    assert list((await chunk_widths(env)).values()) == [dt.timedelta(days=7)]

    await daemon.start(env.settings(postgres={"timescale": "on", "partition_interval_days": 1}))
    rows = await env.fetch(
        "SELECT DISTINCT time_interval FROM timescaledb_information.dimensions WHERE hypertable_schema = $1",
        env.schema,
    )
    assert [r[0] for r in rows] == [dt.timedelta(days=1)]
    await env.publish("kline", [kline("2018-06-01T01:00:00Z")])
    await daemon.drain()
    widths = await chunk_widths(env)
    assert sorted(widths.values()) == [dt.timedelta(days=1), dt.timedelta(days=7)]  # the old chunk stays
