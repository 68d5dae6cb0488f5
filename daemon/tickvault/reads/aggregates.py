"""Resampled klines from TimescaleDB's continuous aggregates (`klines_<interval>` views of the
1m series, store.aggregates), where they can answer: the view exists and the window touches
no range rolled to the cold tier (the views do not see rows merged into rolled ranges later).

The views compute what `reads.resample` computes; their `complete` (every minute present and
closed) becomes the result's `closed`.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import asyncpg
import pyarrow as pa
import pyarrow.compute as pc

from tickvault.reads import cold, hot
from tickvault.reads.columns import SPECS
from tickvault.reads.intervals import LENGTH_US, MONTH
from tickvault.store.aggregates import SOURCE_INTERVAL, view_name

_COLUMNS = (
    "exchange", "symbol", "open_time", "open", "high", "low", "close", "volume", "quote_volume", "trades",
)  # fmt: skip


async def read(
    conn: asyncpg.Connection,
    schema: str,
    exchange: str,
    symbols: list[str],
    source: str,
    target: str,
    start: dt.datetime | None,
    end: dt.datetime | None,
    limit: int | None,
    newest_first: bool,
) -> pa.Table | None:
    """The buckets from the view, as the klines read schema; None when the view cannot answer."""
    if source != SOURCE_INTERVAL or target == MONTH:
        return None
    if await conn.fetchval("SELECT to_regclass($1)", f"{schema}.{view_name(target)}") is None:
        return None
    if await cold.spans(conn, schema, hot.Query(SPECS["klines"], (), {}, start, end)):
        return None
    select = ", ".join(
        "(extract(epoch FROM open_time) * 1000000)::bigint" if c == "open_time" else f'"{c}"'
        for c in _COLUMNS
    )
    clauses = ["exchange = $1", "symbol = ANY($2)"]
    args: list[Any] = [exchange, symbols]
    for op, bound in ((">=", start), ("<", end)):
        if bound is not None:
            args.append(bound)
            clauses.append(f"open_time {op} ${len(args)}")
    sql = (
        f"SELECT {select}, complete FROM {schema}.{view_name(target)} WHERE {' AND '.join(clauses)} "  # noqa: S608 - identifiers are ours
        f"ORDER BY open_time {'DESC' if newest_first else 'ASC'}"
    )
    if limit is not None:
        args.append(limit)
        sql += f" LIMIT ${len(args)}"
    chunks: list[bytes] = []

    async def sink(chunk: bytes) -> None:
        chunks.append(chunk)

    await conn.copy_from_query(sql, *args, output=sink, format="csv")
    rows = hot.parse(b"".join(chunks), (*_COLUMNS, "closed"))
    close_time = pc.cast(
        pc.subtract(pc.add(pc.cast(rows.column("open_time"), pa.int64()), LENGTH_US[target]), 1000),
        pa.timestamp("us", tz="UTC"),
    )
    rows = rows.add_column(2, "interval", pa.array([target] * rows.num_rows, pa.string()))
    return rows.add_column(4, "close_time", close_time)
