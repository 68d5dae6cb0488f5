"""Time partitioning: native range partitions created ahead and on demand, rows parked in
the default partition moved out; TimescaleDB hypertables when the extension exists."""

from __future__ import annotations

import json

import asyncpg
import pytest

from tests.helpers import Daemon, TestEnv
from tickvault.store import Store, migrate


def kline(open_time: str, close: str = "1") -> str:
    return json.dumps({
        "exchange": "okx", "symbol": "BTC-USDT", "interval": "1h", "open_time": open_time,
        "open": "1", "high": "2", "low": "1", "close": close, "volume": "3",
    })  # fmt: skip


async def test_partitions_exist_ahead_of_now(env: TestEnv, daemon: Daemon) -> None:
    await daemon.start(env.settings(postgres={"partitions_ahead": 3}))
    rows = await env.fetch(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
        "WHERE i.inhparent = to_regclass($1) ORDER BY 1",
        f"{env.schema}.fills",
    )
    names = [r[0] for r in rows]
    assert "fills_default" in names
    assert len([n for n in names if n.startswith("fills_p")]) == 4  # current interval + 3 ahead


async def test_rows_parked_in_default_partition_move_to_a_new_partition(env: TestEnv, daemon: Daemon) -> None:
    await daemon.start()
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


async def timescale_available(dsn: str) -> bool:
    conn = await asyncpg.connect(dsn)
    try:
        found = await conn.fetchval("SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb'")
    finally:
        await conn.close()
    return found is not None


async def test_timescaledb_hypertables(env: TestEnv, daemon: Daemon) -> None:
    if not await timescale_available(env.dsn):
        pytest.skip("the timescaledb extension is not installed on this PostgreSQL server")
    settings = env.settings(postgres={"timescale": "on"})
    await daemon.start(settings)
    rows = await env.fetch(
        "SELECT hypertable_name FROM timescaledb_information.hypertables WHERE hypertable_schema = $1",
        env.schema,
    )
    assert {r[0] for r in rows} == {"klines", "order_events", "fills"}
    await env.publish("kline", [kline("2018-05-01T01:00:00Z"), kline("2018-05-01T01:00:00Z", "1.5")])
    await daemon.drain()
    rows = await env.fetch("SELECT close FROM {s}.klines")
    assert [str(r[0]) for r in rows] == ["1.5"]
    async with Store(settings.postgres, writer=True) as store:
        assert store.partitioning == "timescaledb"
