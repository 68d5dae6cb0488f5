"""The ingest bench's phases outside the daemon (bench/ingest.py runs them in order): the
servers' preflight, decode only, the raw-COPY limit, tickvault's store path, and publishing
the workload into Redis Streams. Every write phase checks its row count, then TRUNCATEs.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from typing import Any, Final, cast

import asyncpg
import redis.asyncio as aioredis

from ingest_workload import BATCH_ROWS, Workload
from runner import BenchError
from tickvault.codecs import native
from tickvault.records import RECORD_TYPES
from tickvault.rows import Row
from tickvault.settings import Settings
from tickvault.store import partitions, writers
from tickvault.store.schema import TIME_TABLES

TABLE_COLUMNS: Final = {
    "klines": RECORD_TYPES["kline"].COLUMNS,
    "fills": RECORD_TYPES["fill"].COLUMNS,
    "order_events": (*RECORD_TYPES["order"].COLUMNS, "event_hash"),
    "orders": RECORD_TYPES["order"].COLUMNS,
    "trades": RECORD_TYPES["trade"].COLUMNS,
}


async def preflight(dsn: str, redis_url: str) -> None:
    """Fail fast, before minutes of work, when a server is unreachable."""
    conn = await asyncpg.connect(dsn, timeout=10)
    await conn.close()
    redis = aioredis.Redis.from_url(redis_url, socket_connect_timeout=10)
    try:
        await redis.ping()
    finally:
        await redis.aclose()


def decode_only(w: Workload) -> dict[str, float]:
    """Messages/s of native.decode per kind and over all, one tight loop each."""
    rates: dict[str, float] = {}
    total_s = 0.0
    for kind in ("kline", "fill", "order", "trade"):
        payloads, decode = w.payloads[kind], native.decode_item
        started = time.perf_counter()
        for payload in payloads:
            decode(payload, kind)
        elapsed_s = time.perf_counter() - started
        total_s += elapsed_s
        rates[kind] = len(payloads) / elapsed_s if payloads else 0.0
    rates["all"] = (w.total) / total_s
    return rates


def _chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


async def ensure_partitions(conn: asyncpg.Connection, settings: Settings, rows: dict[str, list[Any]]) -> None:
    """Create the partitions the rows fall in, as the daemon's first batches would."""
    pg = settings.postgres
    partitioner = await partitions.detect(
        conn, pg.schema_name, pg.partition_interval_days, pg.partitions_ahead
    )
    for table in (t for t in TIME_TABLES if t.name in rows):
        at = TABLE_COLUMNS[table.name].index(table.time_column)
        await partitioner.ensure(conn, table, {row[at] for row in rows[table.name]})


async def copy_limit(
    conn: asyncpg.Connection, schema: str, rows: dict[str, list[tuple[Any, ...]]]
) -> dict[str, float]:
    """Rows/s of raw COPY of prebuilt tuples, 5,000 per transaction: per table and overall."""
    rates: dict[str, float] = {}
    total_s = 0.0
    for table, table_rows_ in rows.items():
        columns = TABLE_COLUMNS[table]
        started = time.perf_counter()
        for chunk in _chunks(table_rows_, BATCH_ROWS):
            async with conn.transaction():
                await conn.copy_records_to_table(table, schema_name=schema, records=chunk, columns=columns)
        elapsed_s = time.perf_counter() - started
        total_s += elapsed_s
        rates[table] = len(table_rows_) / elapsed_s if table_rows_ else 0.0
        await expect_count(conn, schema, table, len(table_rows_))
        await conn.execute(f"TRUNCATE {schema}.{table}")
    rates["all"] = sum(len(r) for r in rows.values()) / total_s
    return rates


def _versions(batch: list[Row]) -> list[str]:
    return [f"{i}\t0" for i in range(len(batch))]


async def store_path(conn: asyncpg.Connection, schema: str, w: Workload) -> dict[str, float]:
    """tickvault's own writes of the same kline batches, rows/s: `insert` (COPY straight into
    the table, for batches of new keys) and `upsert` (staging + INSERT … ON CONFLICT); the
    same for the trade batches as `trade_insert` and `trade_upsert`. Decoding happens outside
    the timed part."""
    rates: dict[str, float] = {}
    for kind, prefix in (("kline", ""), ("trade", "trade_")):
        if w.payloads[kind]:
            rates |= {prefix + k: v for k, v in (await _store_kind(conn, schema, w, kind)).items()}
    return rates


async def _store_kind(conn: asyncpg.Connection, schema: str, w: Workload, kind: str) -> dict[str, float]:
    writer = writers.build_writers(schema)[kind]
    await writers.create_staging(conn, schema, {kind: writer})
    batches = [
        [cast(Row, native.decode_item(p, kind)) for p in chunk]
        for chunk in _chunks(w.payloads[kind], BATCH_ROWS)
    ]
    n_rows = len(w.payloads[kind])

    async def insert(batch: list[Row]) -> None:
        if await writers.insert(conn, schema, writer, batch, _versions(batch)) is None:
            raise BenchError(f"a batch of new {kind}s was refused by the COPY")

    async def upsert(batch: list[Row]) -> None:
        await writers.write(conn, writer, batch, _versions(batch))

    rates = {}
    for name, write in (("insert", insert), ("upsert", upsert)):
        started = time.perf_counter()
        for batch in batches:
            await write(batch)
        rates[name] = n_rows / (time.perf_counter() - started)
        await expect_count(conn, schema, writer.source_table, n_rows)
        await conn.execute(f"TRUNCATE {schema}.{writer.source_table}")
    return rates


async def expect_count(conn: asyncpg.Connection, schema: str, table: str, expected: int) -> int:
    """The row count of `schema.table`; BenchError unless it is `expected`."""
    found = int(await conn.fetchval(f"SELECT count(*) FROM {schema}.{table}"))  # noqa: S608
    if found != expected:
        raise BenchError(f"{schema}.{table} holds {found} rows, expected {expected}")
    return found


async def publish(redis: aioredis.Redis, topics: dict[str, str], w: Workload) -> float:
    for stream in topics:
        if await redis.exists(stream):
            raise BenchError(f"stream {stream} already exists; refusing to touch it")
    started = time.perf_counter()
    for stream, kind in topics.items():
        for chunk in _chunks(w.payloads[kind], BATCH_ROWS):
            async with redis.pipeline(transaction=False) as pipe:
                for payload in chunk:
                    pipe.xadd(stream, {"data": payload})
                await pipe.execute()
    return w.total / (time.perf_counter() - started)
