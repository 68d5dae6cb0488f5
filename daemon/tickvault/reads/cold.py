"""The cold tier → Arrow for reads: which rolled spans a window touches (from `archive_log`),
and the rows of one span from its Iceberg table.

Only the data files whose partition (day) and column statistics can match are read —
pyiceberg plans them from the table's manifests — and within a file only the row groups
whose statistics can match and only the columns asked for (pyarrow). Every file is checked
against the table's metadata before it is read (`archive.table.read`): a missing or damaged
file is an error naming it, never rows silently missing.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import asyncpg
import pyarrow as pa
from pyiceberg.expressions import And, BooleanExpression, EqualTo, In
from pyiceberg.table import Table

from tickvault.archive import table as cold_table
from tickvault.reads.hot import Query

Span = tuple[dt.datetime, dt.datetime]

_SPANS = """
SELECT DISTINCT range_start, range_end FROM {schema}.archive_log
WHERE table_name = $1 AND ($2::timestamptz IS NULL OR range_end > $2)
  AND ($3::timestamptz IS NULL OR range_start < $3)
ORDER BY range_start
"""


async def spans(conn: asyncpg.Connection, schema: str, q: Query) -> list[Span]:
    """The rolled ranges of `q`'s table that overlap its window, joined where they overlap
    or touch, oldest first, clipped to the window."""
    rows = await conn.fetch(_SPANS.format(schema=schema), q.spec.table, q.start, q.end)
    joined: list[list[dt.datetime]] = []
    for start, end in rows:
        if joined and start <= joined[-1][1]:
            joined[-1][1] = max(joined[-1][1], end)
        else:
            joined.append([start, end])
    return [(max(s, q.start) if q.start else s, min(e, q.end) if q.end else e) for s, e in joined]


def _where(q: Query, span: Span) -> BooleanExpression:
    where: BooleanExpression = cold_table.time_range(
        q.spec.time_column, span[0].isoformat(), span[1].isoformat()
    )
    for column, value in q.filters.items():
        term: Any = (
            In(term=column, literals=list(value))
            if isinstance(value, list | tuple)
            else EqualTo(term=column, value=value)
        )
        where = And(where, term)
    return where


def read(table: Table, q: Query, span: Span, schema: pa.Schema) -> pa.Table:
    """The rows of `q` (its filters; no order, no limit) within one span, as `schema`.
    Synchronous (pyiceberg). Raises errors.ColdFileError naming a bad file."""
    return cold_table.read(table, _where(q, span), schema)
