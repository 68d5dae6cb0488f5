"""The roller's merge (`archive.hot.reload`) loads a partition's cold rows back into
PostgreSQL as CSV that Arrow writes, a chunk at a time: every row lands with its values exact
and its decimals in their canonical text, and the process holds a chunk or two of that text,
never a Python object per value (a busy day's merge would otherwise hold millions of them at
once: the soak's memory, bench/README.md "Soak")."""

from __future__ import annotations

import datetime as dt
import tracemalloc
from decimal import Decimal

import asyncpg
import pyarrow as pa

from tests.helpers import TestEnv
from tickvault import pgcsv
from tickvault.archive import hot
from tickvault.archive.table import arrow_schema
from tickvault.store import migrate
from tickvault.store.partitions import NativePartitioner
from tickvault.store.schema import TIME_TABLES

KLINES = next(t for t in TIME_TABLES if t.name == "klines")
DAY = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
SYMBOLS = 40
MINUTES = 1440


def cold_day(schema: pa.Schema) -> pa.Table:
    """A day of 1m klines of SYMBOLS symbols in the cold schema (decimal(38, 18) padding)."""
    n = SYMBOLS * MINUTES
    minute = pa.array([i % MINUTES for i in range(n)], pa.int64())
    opens = [DAY + dt.timedelta(minutes=m) for m in minute.to_pylist()]
    utc = pa.timestamp("us", "UTC")
    price = [Decimal(f"{100 + i % 97}.{i % 1000:03d}") for i in range(n)]
    values = {
        "exchange": pa.array(["binance"] * n),
        "symbol": pa.array([f"S{i // MINUTES:02d}-USDT" for i in range(n)]),
        "interval": pa.array(["1m"] * n),
        "open_time": pa.array(opens, utc),
        "close_time": pa.array([t + dt.timedelta(seconds=59.999) for t in opens], utc),
        "open": price, "high": price, "low": price, "close": price,
        "volume": [Decimal("0.000000000000000001")] * n,
        "quote_volume": [Decimal("12345678901234567890")] * n,
        "trades": pa.array([7] * n, pa.int64()), "closed": pa.array([True] * n),
        "version_ms": pa.array([1_767_225_600_000] * n, pa.int64()), "version_seq": minute,
    }  # fmt: skip
    assert set(schema.names) == set(values), "a column of the klines table is not filled"
    return pa.table({f.name: pa.array(values[f.name], f.type) for f in schema})


async def test_a_days_merge_lands_exactly_and_holds_its_text_not_an_object_per_value(env: TestEnv) -> None:
    pg = {"timescale": "off", "partition_interval_days": 1, "partitions_ahead": 0}
    settings = env.settings(postgres=pg)
    await migrate.upgrade(settings.postgres)
    conn = await asyncpg.connect(env.dsn)
    try:
        await NativePartitioner(env.schema, 1, 0).ensure(conn, KLINES, [DAY])
        columns = await hot.columns(conn, env.schema, "klines")
        cold = cold_day(arrow_schema(columns))
        text_bytes = len(pgcsv.write(cold))
        tracemalloc.start()
        try:
            await hot.reload(conn, env.schema, KLINES, cold)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        stored = await conn.fetch(
            f"SELECT symbol, open_time, close::text AS close, volume::text AS volume, "  # noqa: S608
            f"quote_volume::text AS quote_volume FROM {env.schema}.klines ORDER BY symbol, open_time"
        )
    finally:
        await conn.close()
    assert len(stored) == cold.num_rows
    want = sorted(zip(cold.column("symbol").to_pylist(), cold.column("open_time").to_pylist(), strict=True))
    assert [(r["symbol"], r["open_time"]) for r in stored] == want
    keyed = zip(*(cold.column(n).to_pylist() for n in ("symbol", "open_time", "close")), strict=True)
    closes = {(s, t): c for s, t, c in keyed}
    assert all(Decimal(r["close"]) == closes[(r["symbol"], r["open_time"])] for r in stored)
    # canonical text, not the cold scale: "100.5", not "100.500000000000000000"
    assert {r["volume"] for r in stored} == {"0.000000000000000001"}
    assert {r["quote_volume"] for r in stored} == {"12345678901234567890"}
    assert all(not r["close"].endswith("0") or "." not in r["close"] for r in stored)
    # a chunk or two of the text at a time (a Python object per value: 6x the whole text)
    assert peak < text_bytes / 2, (peak, text_bytes)
