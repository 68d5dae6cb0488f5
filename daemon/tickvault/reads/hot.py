"""PostgreSQL → Arrow for reads: one `COPY (SELECT …) TO STDOUT` in CSV, parsed by pyarrow.

Exact: decimals travel as PostgreSQL's text and are parsed into decimal128(38, 18), never
through float; timestamps as epoch microseconds (`extract(epoch …)` is numeric, so exact);
text as text. Filters are parameters, never spliced into the SQL; identifiers come from
`columns.SPECS` and the configured schema only.
"""

from __future__ import annotations

import datetime as dt
import io
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import pyarrow as pa

from tickvault import pgcsv
from tickvault.reads.columns import TIME_COLUMNS, Spec, arrow_type


@dataclass
class Query:
    """A read of one table: equality filters (a list value means any of them), [start, end)
    on the time column, at most `limit` rows, oldest first or `newest_first`."""

    spec: Spec
    columns: tuple[str, ...]
    filters: dict[str, Any] = field(default_factory=dict)
    start: dt.datetime | None = None
    end: dt.datetime | None = None
    limit: int | None = None
    newest_first: bool = False


def _expr(column: str) -> str:
    if column in TIME_COLUMNS:
        return f'(extract(epoch FROM "{column}") * 1000000)::bigint'
    if arrow_type(column) == pa.string():
        return f'"{column}"::text'
    return f'"{column}"'


def sql(schema: str, q: Query) -> tuple[str, list[Any]]:
    """The SELECT of `q` with its parameters."""
    clauses: list[str] = []
    args: list[Any] = []
    for column, value in q.filters.items():
        if isinstance(value, list | tuple):
            args.append(list(value))
            clauses.append(f'"{column}" = ANY(${len(args)})')
        else:
            args.append(value)
            clauses.append(f'"{column}" = ${len(args)}')
    time = q.spec.time_column
    for op, bound in ((">=", q.start), ("<", q.end)):
        if bound is not None:
            args.append(bound)
            clauses.append(f'"{time}" {op} ${len(args)}')
    order = "DESC" if q.newest_first else "ASC"
    text = (
        f"SELECT {', '.join(_expr(c) for c in q.columns)} FROM {schema}.{q.spec.table} "  # noqa: S608 - identifiers are ours
        f'WHERE {" AND ".join(clauses) or "TRUE"} ORDER BY "{time}" {order}'
    )
    if q.limit is not None:
        args.append(q.limit)
        text += f" LIMIT ${len(args)}"
    return text, args


async def read(conn: asyncpg.Connection, schema: str, q: Query) -> pa.Table:
    """The rows of `q` as Arrow, typed as `columns.arrow_type` says."""
    chunks: list[bytes] = []

    async def sink(chunk: bytes) -> None:
        chunks.append(chunk)

    text, args = sql(schema, q)
    await conn.copy_from_query(text, *args, output=sink, format="csv")
    return parse(b"".join(chunks), q.columns)


def parse(data: bytes, columns: Sequence[str]) -> pa.Table:
    """PostgreSQL CSV (times as epoch microseconds) → Arrow of the read types."""
    schema = pa.schema([pa.field(c, arrow_type(c)) for c in columns])
    if not data:
        return schema.empty_table()
    as_read = {c: pa.int64() if c in TIME_COLUMNS else arrow_type(c) for c in columns}
    table = pgcsv.read(io.BytesIO(data), list(columns), as_read)
    return table.cast(schema)
