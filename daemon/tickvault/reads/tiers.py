"""One read over both tiers: hot rows from PostgreSQL, cold rows from the Iceberg table of the
spans the window touches, one row per key, in time order.

A key can be in both tiers: while a roll is between its commit and its drop, or when late
rows for a rolled range sit hot until the next roll merges them. The row kept is the one the
roll's merge would keep (`columns.Spec.rule`), so a read never depends on where a roll is.
With a limit, cold spans are read one at a time in the direction of the read and reading
stops once they gave `limit` rows: every cold row of the answer is among the first `limit`
cold rows in that direction (the cold table holds one row per key, and the key includes the
time), so nothing that belongs in the answer is skipped.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import asyncpg
import pyarrow as pa
import pyarrow.compute as pc

from tickvault.reads import hot
from tickvault.reads.columns import DECIMAL_COLUMNS, VERSION, Spec
from tickvault.reads.hot import Query

_TIER = "__tier"  # 0 hot, 1 cold: among equal rows the hot one is kept
_ORDER = {
    "kline": [("closed", "descending"), ("version_ms", "descending"), ("version_seq", "descending")],
    "fill": [("version_ms", "ascending"), ("version_seq", "ascending")],
    "latest": [("version_ms", "descending"), ("version_seq", "descending")],
    "event": [],
}

if TYPE_CHECKING:
    from pyiceberg.table import Table
# the cold table of a table name, None when there is none; pyiceberg loads on the first call
ColdTable = Callable[[str], Awaitable[Any]]


def internal_columns(spec: Spec, wanted: tuple[str, ...]) -> tuple[str, ...]:
    """What must be read to deduplicate and order: the wanted columns, the key, the rule's."""
    extra: tuple[str, ...] = ()
    if spec.rule == "kline":
        extra = ("closed", *VERSION)
    elif spec.rule in ("fill", "latest"):
        extra = VERSION
    return tuple(dict.fromkeys((*wanted, *spec.key, *extra)))


async def read(conn: asyncpg.Connection, schema: str, q: Query, cold_table: ColdTable | None) -> pa.Table:
    """The rows of `q` from both tiers (cold only when `cold_table` gives the table), as
    `q.columns`, oldest first. Raises errors.ColdFileError when a cold file is bad."""
    internal = replace(q, columns=internal_columns(q.spec, q.columns))
    rows = await hot.read(conn, schema, internal)
    if q.spec.cold and cold_table is not None:
        found = await _cold(conn, schema, internal, cold_table)
        if found.num_rows:
            rows = dedupe(q.spec, rows, found)
    return finish(q.spec, rows, q.limit, q.newest_first, q.columns)


def finish(
    spec: Spec, rows: pa.Table, limit: int | None, newest_first: bool, columns: tuple[str, ...]
) -> pa.Table:
    """Rows (with the key columns) in time order, the first `limit` of them (the newest when
    `newest_first`, still given oldest first), as `columns`."""
    rows = in_time_order(spec, rows, newest_first)
    if limit is not None:
        rows = rows.slice(0, limit)
    if newest_first:
        rows = rows.take(pa.array(range(rows.num_rows - 1, -1, -1), pa.int64()))
    return rows.select(list(columns))


async def _cold(conn: asyncpg.Connection, schema: str, q: Query, cold_table: ColdTable) -> pa.Table:
    from tickvault.reads import cold

    spans = await cold.spans(conn, schema, q)
    if not spans:
        return q.spec.schema(q.columns).empty_table()
    table: Table | None = await cold_table(q.spec.table)
    if table is None:
        return q.spec.schema(q.columns).empty_table()
    parts, count = [], 0
    for span in reversed(spans) if q.newest_first else spans:
        part = await asyncio.to_thread(cold.read, table, q, span, q.spec.schema(q.columns))
        parts.append(part)
        count += part.num_rows
        if q.limit is not None and count >= q.limit:
            break
    return pa.concat_tables(parts)


def dedupe(spec: Spec, hot_rows: pa.Table, cold_rows: pa.Table) -> pa.Table:
    """One row per key of the two tiers' rows, chosen by the spec's rule; unordered."""
    if hot_rows.num_rows == 0:
        return cold_rows
    both = pa.concat_tables(
        [
            hot_rows.append_column(_TIER, pa.array([0] * hot_rows.num_rows, pa.int8())),
            cold_rows.select(hot_rows.schema.names).append_column(
                _TIER, pa.array([1] * cold_rows.num_rows, pa.int8())
            ),
        ]
    )
    order = [(k, "ascending") for k in spec.key] + _ORDER[spec.rule] + [(_TIER, "ascending")]
    ranked = both.sort_by(order)
    return ranked.filter(first_of_each_key(ranked, spec.key)).drop_columns([_TIER])


def first_of_each_key(rows: pa.Table, key: tuple[str, ...]) -> pa.ChunkedArray:
    """A mask of the first row of each run of equal keys (rows sorted by the key)."""
    n = rows.num_rows
    if n == 0:
        return pa.chunked_array([], pa.bool_())
    changed = pa.chunked_array([pa.array([False] * (n - 1), pa.bool_())])
    for column in key:
        values = rows.column(column)
        changed = pc.or_(changed, pc.not_equal(values.slice(1), values.slice(0, n - 1)))
    return pa.chunked_array([pa.array([True]), *changed.chunks])


def in_time_order(spec: Spec, rows: pa.Table, newest_first: bool) -> pa.Table:
    """Sorted by time (then by key, so equal times come in one stable order)."""
    direction = "descending" if newest_first else "ascending"
    keys = [(spec.time_column, direction)] + [(k, "ascending") for k in spec.key if k != spec.time_column]
    return rows.sort_by(keys)


def as_floats(rows: pa.Table) -> pa.Table:
    """Decimal columns as float64: faster to compute with, no longer exact."""
    for i, f in enumerate(rows.schema):
        if f.name in DECIMAL_COLUMNS:
            rows = rows.set_column(i, pa.field(f.name, pa.float64()), rows.column(i).cast(pa.float64()))
    return rows
