"""Kline reads with resampling: each symbol is read at the requested interval when that
series is stored (hot or cold), else built (`resample`) from the largest stored interval that
divides it, else comes back empty.

Which series exist is asked per read with one query of index probes on the hot table's
primary key and on `cold_kline_series` (what the roller has moved to the cold tier).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import pyarrow as pa
import pyarrow.compute as pc

from tickvault.reads.intervals import LENGTH_US, MONTH, ceil, from_us, to_us
from tickvault.reads.resample import SOURCE_COLUMNS, resample, sources

# (filters, start, end, limit, newest_first, columns) -> rows of klines from both tiers
Reader = Callable[
    [dict[str, Any], dt.datetime | None, dt.datetime | None, int | None, bool, tuple[str, ...]],
    Awaitable[pa.Table],
]
# (symbols, source, target, start, end, limit, newest_first) -> buckets from a continuous
# aggregate (reads.aggregates), or None when none can answer
Aggregate = Callable[
    [list[str], str, str, dt.datetime | None, dt.datetime | None, int | None, bool],
    Awaitable[pa.Table | None],
]

_STORED = """
SELECT s.symbol, i.interval FROM unnest($2::text[]) AS s(symbol) CROSS JOIN unnest($3::text[]) AS i(interval)
WHERE EXISTS (SELECT 1 FROM {schema}.klines k
              WHERE k.exchange = $1 AND k.symbol = s.symbol AND k."interval" = i.interval)
   OR EXISTS (SELECT 1 FROM {schema}.cold_kline_series c
              WHERE c.exchange = $1 AND c.symbol = s.symbol AND c."interval" = i.interval)
"""


async def plan(
    conn: asyncpg.Connection, schema: str, exchange: str, symbols: list[str], interval: str
) -> dict[str, str]:
    """The interval each symbol is read at: `interval` itself, or a stored source of it."""
    candidates = [interval, *sources(interval)]
    rows = await conn.fetch(_STORED.format(schema=schema), exchange, symbols, candidates)
    stored: dict[str, set[str]] = {}
    for symbol, stored_interval in rows:
        stored.setdefault(symbol, set()).add(stored_interval)
    return {s: next((c for c in candidates if c in stored.get(s, ())), interval) for s in symbols}


async def read(
    reader: Reader,
    plan_: dict[str, str],
    exchange: str,
    interval: str,
    start: dt.datetime | None,
    end: dt.datetime | None,
    limit: int | None,
    newest_first: bool,
    columns: tuple[str, ...],
    aggregate: Aggregate | None = None,
) -> pa.Table:
    """The candles of every planned symbol (all of `columns`), unordered, at most `limit` per
    group of symbols read alike (the caller orders and limits the whole). Resampled groups
    come from `aggregate` where it answers."""
    by_source: dict[str, list[str]] = {}
    for symbol, source in plan_.items():
        by_source.setdefault(source, []).append(symbol)
    parts = []
    for source, symbols in by_source.items():
        filters = {"exchange": exchange, "symbol": symbols, "interval": source}
        if source == interval:
            parts.append(await reader(filters, start, end, limit, newest_first, columns))
            continue
        lower = from_us(ceil(to_us(start), interval)) if start else None
        upper = from_us(ceil(to_us(end), interval)) if end else None
        found = None
        if aggregate is not None:
            found = await aggregate(symbols, source, interval, lower, upper, limit, newest_first)
        if found is None:
            found = await _resampled(reader, filters, source, interval, lower, upper, limit, newest_first)
        parts.append(found)
    return pa.concat_tables([p.select(list(columns)) for p in parts])


async def _resampled(
    reader: Reader,
    filters: dict[str, Any],
    source: str,
    target: str,
    start: dt.datetime | None,
    end: dt.datetime | None,
    limit: int | None,
    newest_first: bool,
) -> pa.Table:
    """Buckets of `target` opening in [start, end) (both on the target's grid), from the source
    candles of those whole buckets. With a limit, enough source candles for limit + 1 buckets
    per symbol; a bucket the limit may have cut is dropped."""
    per_bucket = (31 * LENGTH_US["1d"] if target == MONTH else LENGTH_US[target]) // LENGTH_US[source]
    source_limit = None if limit is None else (limit + 1) * per_bucket * len(filters["symbol"])
    rows = await reader(filters, start, end, source_limit, newest_first, SOURCE_COLUMNS)
    candles = resample(rows, source, target)
    if source_limit is not None and rows.num_rows >= source_limit and candles.num_rows:
        times = candles.column("open_time")
        edge = pc.min(times) if newest_first else pc.max(times)
        candles = candles.filter(pc.not_equal(times, edge))
    return candles
