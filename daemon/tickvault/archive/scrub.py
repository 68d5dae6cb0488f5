"""Checking the cold tier against the archive log: `tickvault archive --verify`, and the
roller before it merges a range's cold rows back.

Each `archive_log` row records what a roll verified and committed for a range: row count and
checksum (`table.checksum`) at an Iceberg snapshot. Reading the range again must give the
same; if it does not, the files were changed or damaged after the roll. Two cases are not
damage: a range logged again later (the newest row wins; an older, differently bounded row
that a newer one overlaps is superseded) and a range committed again by a roll that did not
get to its log row (a crash, or the fingerprint changed): its data files were then added by
another snapshot than the logged one, and the next roll verifies and logs it.

A missing, truncated or unparsable data file fails the read itself (`errors.ColdFileError`,
naming the file); rows that parse but differ are caught by the checksum.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg
import pyarrow as pa
from pyiceberg.expressions import BooleanExpression
from pyiceberg.table import Table

from tickvault import metrics
from tickvault.archive import table
from tickvault.errors import ColdFileError, TickvaultError
from tickvault.settings import Settings
from tickvault.store import db


class ColdDataCorrupt(TickvaultError):
    """The rows a cold table holds for a logged range differ from what the roll verified."""


@dataclass(frozen=True)
class Logged:
    """One `archive_log` row: what a roll verified and committed for [start, end)."""

    table: str
    start: dt.datetime
    end: dt.datetime
    rows: int
    checksum: str
    snapshot_id: int | None


@dataclass(frozen=True)
class RangeCheck:
    logged: Logged
    status: str  # "ok", "corrupt", "unreadable" or "rewritten"
    rows: int = 0  # rows the cold table holds for the range now
    reason: str = ""


_NEWEST = """
SELECT DISTINCT ON (table_name, range_start, range_end)
       id, table_name, range_start, range_end, rows, checksum, snapshot_id
FROM {schema}.archive_log
WHERE cardinality($1::text[]) = 0 OR table_name = ANY($1)
ORDER BY table_name, range_start, range_end, id DESC
"""


async def logged_ranges(conn: asyncpg.Connection, schema: str, tables: Sequence[str] = ()) -> list[Logged]:
    """The newest log row of each rolled range of `tables` (default all), without the ones a
    newer, differently bounded row overlaps; sorted by table and start."""
    rows = await conn.fetch(_NEWEST.format(schema=schema), list(tables))
    ranges = [
        Logged(r["table_name"], r["range_start"], r["range_end"], r["rows"], r["checksum"], r["snapshot_id"])
        for r in sorted(rows, key=lambda r: r["id"], reverse=True)  # newest first
    ]
    kept: list[Logged] = []
    for r in ranges:
        if not any(k.table == r.table and k.start < r.end and r.start < k.end for k in kept):
            kept.append(r)
    return sorted(kept, key=lambda x: (x.table, x.start))


def check_range(cold: Table, time_column: str, arrow: pa.Schema, logged: Logged) -> RangeCheck:
    """Read the range's rows at the current snapshot and `judge` them. Synchronous (pyiceberg)."""
    where = table.time_range(time_column, logged.start.isoformat(), logged.end.isoformat())
    try:
        rows = table.read(cold, where, arrow)
    except ColdFileError as exc:
        return RangeCheck(logged, "unreadable", reason=str(exc))
    return judge(cold, where, rows, logged)


def judge(cold: Table, where: BooleanExpression, rows: pa.Table, logged: Logged) -> RangeCheck:
    """Compare the rows read for the range (`where`) with its log row: "ok", "rewritten" (its
    files were added by another snapshot than the logged one) or "corrupt"."""
    found = table.checksum_like(rows, logged.checksum)  # the format the log row has
    if rows.num_rows == logged.rows and found == logged.checksum:
        return RangeCheck(logged, "ok", rows.num_rows)
    files = table.live_files(cold, where)
    differs = (
        f"{rows.num_rows} rows with checksum {found} in the cold table, "
        f"{logged.rows} rows with checksum {logged.checksum} logged"
    )
    if logged.snapshot_id is None or any(added != logged.snapshot_id for added in files.values()):
        reason = f"{differs}; committed again after it was logged, the next roll verifies it"
        return RangeCheck(logged, "rewritten", rows.num_rows, reason)
    reason = f"{differs}, in the files the verified commit wrote: {', '.join(sorted(files))}"
    return RangeCheck(logged, "corrupt", rows.num_rows, reason)


async def verify(settings: Settings, tables: Sequence[str] = ()) -> list[RangeCheck]:
    """Check every rolled range of `tables` (default klines, fills, order_events) against its
    log row. Unreadable and corrupt ranges are counted in
    `tickvault_archive_cold_check_failures_total`. Raises StoreError when PostgreSQL cannot
    be reached, OSError when the archive root cannot."""
    from tickvault.archive import hot  # the columns of the hot table give the cold schema

    schema = settings.postgres.schema_name
    conn = await db.connect(settings.postgres, "read the archive log")
    try:
        ranges = await logged_ranges(conn, schema, tables)
        columns = {name: await hot.columns(conn, schema, name) for name in {r.table for r in ranges}}
    except db.DRIVER_ERRORS as exc:
        raise db.translate(exc) from exc
    finally:
        await conn.close()
    return await asyncio.to_thread(_verify_all, settings, ranges, columns)


def _verify_all(settings: Settings, ranges: list[Logged], columns: dict[str, Any]) -> list[RangeCheck]:
    from tickvault.store.schema import TIME_TABLES

    time_column = {t.name: t.time_column for t in TIME_TABLES}
    out: list[RangeCheck] = []
    catalog = None
    try:
        catalog = table.open_catalog(settings) if ranges else None
        tables: dict[str, Table] = {}
        for logged in ranges:
            if logged.table not in tables:
                assert catalog is not None
                tables[logged.table] = catalog.load_table(f"{settings.postgres.schema_name}.{logged.table}")
            arrow = table.arrow_schema(columns[logged.table])
            check = check_range(tables[logged.table], time_column[logged.table], arrow, logged)
            if check.status in ("corrupt", "unreadable"):
                metrics.ARCHIVE_COLD_CHECK_FAILURES.labels(logged.table).inc()
            out.append(check)
    finally:
        table.close_catalog(catalog)
    return out
