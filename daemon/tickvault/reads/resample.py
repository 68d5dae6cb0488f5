"""Candles of a higher interval computed from a stored lower one (e.g. 1h from 1m).

Per bucket of the target interval (its grid: reads.intervals): the first open, the highest
high, the lowest low, the last close (first and last by open time), the sums of volume,
quote volume and trades (quote volume and trades stay null when a source candle lacks them),
`close_time` the bucket's last millisecond (next open - 1 ms, as exchanges report it).
A bucket is `closed` only when it holds every source candle it should and all of them are
closed; a bucket with a missing or an open candle comes back with `closed = false`, so it is
never taken for a final candle.
"""

from __future__ import annotations

from typing import Final

import pyarrow as pa
import pyarrow.compute as pc

from tickvault.reads.intervals import LENGTH_US, MONTH, next_open

# pyarrow's floor_temporal arguments of each interval: epoch-aligned, weeks from Monday
_FLOOR: Final[dict[str, tuple[int, str]]] = {
    "1s": (1, "second"), "1m": (1, "minute"), "3m": (3, "minute"), "5m": (5, "minute"),
    "15m": (15, "minute"), "30m": (30, "minute"), "1h": (1, "hour"), "2h": (2, "hour"),
    "4h": (4, "hour"), "6h": (6, "hour"), "8h": (8, "hour"), "12h": (12, "hour"),
    "1d": (1, "day"), "3d": (3, "day"), "1w": (1, "week"), "1M": (1, "month"),
}  # fmt: skip
_MS_US: Final = 1000
SOURCE_COLUMNS: Final = (
    "exchange", "symbol", "open_time", "open", "high", "low", "close", "volume", "quote_volume",
    "trades", "closed",
)  # fmt: skip


def sources(target: str) -> list[str]:
    """The stored intervals a `target` candle can be built from, largest first: those whose
    grid divides the target's (every target bucket is a whole number of them)."""
    if target == MONTH:
        day = LENGTH_US["1d"]
        return [
            i for i in sorted(LENGTH_US, key=LENGTH_US.__getitem__, reverse=True) if day % LENGTH_US[i] == 0
        ]
    length = LENGTH_US[target]
    found = [i for i in LENGTH_US if LENGTH_US[i] < length and length % LENGTH_US[i] == 0]
    if target == "1w":  # Monday-aligned: only intervals that divide a day line up with it
        found = [i for i in found if LENGTH_US["1d"] % LENGTH_US[i] == 0]
    return sorted(found, key=LENGTH_US.__getitem__, reverse=True)


def bucket(open_times: pa.ChunkedArray, target: str) -> pa.ChunkedArray:
    multiple, unit = _FLOOR[target]
    return pc.floor_temporal(open_times, multiple=multiple, unit=unit, week_starts_monday=True)


def resample(rows: pa.Table, source: str, target: str) -> pa.Table:
    """Candles of `target` from `rows` of klines at `source` (at least SOURCE_COLUMNS, any
    order), as the klines read schema; unsorted."""
    rows = rows.select(list(SOURCE_COLUMNS)).sort_by([("exchange", "ascending"), ("symbol", "ascending"),
                                                       ("open_time", "ascending")])  # fmt: skip
    rows = rows.append_column("bucket", bucket(rows.column("open_time"), target))
    rows = rows.append_column("row", pa.array(range(rows.num_rows), pa.int64()))  # sorted: first/last
    rows = rows.append_column("qv_missing", pc.is_null(rows.column("quote_volume")))
    rows = rows.append_column("trades_missing", pc.is_null(rows.column("trades")))
    grouped = rows.group_by(["exchange", "symbol", "bucket"], use_threads=False).aggregate(
        [
            ("row", "min"), ("high", "max"), ("low", "min"), ("row", "max"), ("volume", "sum"),
            ("quote_volume", "sum"), ("trades", "sum"), ("closed", "all"), ("open_time", "count"),
            ("qv_missing", "any"), ("trades_missing", "any"),
        ]
    )  # fmt: skip
    buckets = grouped.column("bucket")
    ends = _next_opens(buckets, target)
    expected = pc.divide(
        pc.subtract(pc.cast(ends, pa.int64()), pc.cast(buckets, pa.int64())), LENGTH_US[source]
    )
    complete = pc.and_(pc.equal(grouped.column("open_time_count"), expected), grouped.column("closed_all"))
    null_qv = pa.nulls(len(grouped), rows.schema.field("quote_volume").type)
    null_trades = pa.nulls(len(grouped), pa.int64())
    close_time = pc.cast(pc.subtract(pc.cast(ends, pa.int64()), _MS_US), pa.timestamp("us", tz="UTC"))
    columns = {
        "exchange": grouped.column("exchange"),
        "symbol": grouped.column("symbol"),
        "interval": pa.array([target] * len(grouped), pa.string()),
        "open_time": buckets,
        "close_time": close_time,
        "open": rows.column("open").take(grouped.column("row_min")),
        "high": grouped.column("high_max"),
        "low": grouped.column("low_min"),
        "close": rows.column("close").take(grouped.column("row_max")),
        "volume": grouped.column("volume_sum"),
        "quote_volume": pc.if_else(
            grouped.column("qv_missing_any"), null_qv, grouped.column("quote_volume_sum")
        ),
        "trades": pc.if_else(grouped.column("trades_missing_any"), null_trades, grouped.column("trades_sum")),
        "closed": complete,
    }
    return pa.table(columns)


def _next_opens(buckets: pa.ChunkedArray, target: str) -> pa.Array:
    us = pc.cast(buckets, pa.int64())
    if target != MONTH:
        return pc.cast(pc.add(us, LENGTH_US[target]), pa.timestamp("us", tz="UTC"))
    return pa.array([next_open(v, MONTH) for v in us.to_pylist()], pa.timestamp("us", tz="UTC"))
