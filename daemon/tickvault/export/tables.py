"""What can be exported: the time tables, the filters each takes, and the two things an export
asks the store before reading — the first and last instant it may hold (`bounds`), and
bot-state history rows by window (`bot_state_rows`).

Tables: those of tickvault.reads.columns (klines, trades, fills, orders, order_events,
balances, signals; read over hot and cold) and `bot_state`: the history of snapshots
(bot_state_history, PostgreSQL only, kept for state.history_retention).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any, Final

import asyncpg
import pyarrow as pa

from tickvault.errors import ConfigError
from tickvault.reads import cold
from tickvault.reads.columns import SPECS, TIME, check_columns
from tickvault.reads.hot import Query

BOT_STATE_COLUMNS: Final = ("bot_id", "ts", "seq", "state")
BOT_STATE_SCHEMA: Final = pa.schema(
    [("bot_id", pa.string()), ("ts", TIME), ("seq", pa.int64()), ("state", pa.string())]
)
_SERIES: Final = frozenset({"exchange", "symbol", "symbols"})
FILTERS: Final[dict[str, frozenset[str]]] = {
    "klines": _SERIES | {"interval"},
    "trades": _SERIES,
    "fills": _SERIES | {"bot_id", "strategy"},
    "orders": _SERIES | {"bot_id"},
    "order_events": _SERIES | {"bot_id"},
    "balances": frozenset({"exchange", "account", "asset"}),
    "signals": _SERIES | {"bot_id", "strategy"},
    "bot_state": frozenset({"bot_id"}),
}
TABLES: Final = tuple(FILTERS)
ONE_US: Final = dt.timedelta(microseconds=1)


@dataclass(frozen=True)
class Plan:
    """One export's table, equality filters (column → value or list of values), columns
    (in order) and time column."""

    table: str
    filters: dict[str, Any]
    columns: tuple[str, ...]
    time_column: str

    @property
    def schema(self) -> pa.Schema:
        if self.table == "bot_state":
            return pa.schema([BOT_STATE_SCHEMA.field(c) for c in self.columns])
        return SPECS[self.table].schema(self.columns)


def plan(table: str, given: dict[str, Any], columns: Any = None) -> Plan:
    """Check the table, the filters given (None: not given) and the columns. Raises
    ConfigError naming an unknown table or column, or a filter the table does not take."""
    if table not in FILTERS:
        raise ConfigError(f"cannot export {table!r}; tables: {', '.join(TABLES)}")
    filters = {k: v for k, v in given.items() if v is not None}
    extra = sorted(set(filters) - FILTERS[table])
    if extra:
        raise ConfigError(f"{', '.join(extra)} {'does' if len(extra) == 1 else 'do'} not apply to {table}")
    if "symbol" in filters and "symbols" in filters:
        raise ConfigError("give either symbol or symbols=[...], not both")
    if "symbols" in filters:
        symbols = filters.pop("symbols")
        if isinstance(symbols, str) or not symbols or not all(isinstance(s, str) and s for s in symbols):
            raise ConfigError(f"symbols must be a non-empty list of symbols, got {symbols!r}")
        filters["symbol"] = list(dict.fromkeys(symbols))
    if table == "bot_state":
        return Plan(table, filters, _bot_state_columns(columns), "ts")
    spec = SPECS[table]
    try:
        wanted = check_columns(spec, columns)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    return Plan(table, filters, wanted, spec.time_column)


def _bot_state_columns(columns: Any) -> tuple[str, ...]:
    if columns is None:
        return BOT_STATE_COLUMNS
    names = [c.strip() for c in columns.split(",")] if isinstance(columns, str) else list(columns)
    unknown = [c for c in names if c not in BOT_STATE_COLUMNS]
    if unknown or not names:
        raise ConfigError(
            f"unknown column {', '.join(map(repr, unknown)) or '(none given)'} for bot_state; "
            f"columns: {', '.join(BOT_STATE_COLUMNS)}"
        )
    return tuple(dict.fromkeys(names))


def _where(
    filters: dict[str, Any], time: str, start: dt.datetime | None, end: dt.datetime | None
) -> tuple[str, list[Any]]:
    clauses, args = [], []
    for column, value in filters.items():
        args.append(value)
        clauses.append(
            f'"{column}" = ANY(${len(args)})' if isinstance(value, list) else f'"{column}" = ${len(args)}'
        )
    for op, bound in ((">=", start), ("<", end)):
        if bound is not None:
            args.append(bound)
            clauses.append(f'"{time}" {op} ${len(args)}')
    return " AND ".join(clauses) or "TRUE", args


async def bounds(
    conn: asyncpg.Connection,
    schema: str,
    p: Plan,
    filters: dict[str, Any],
    start: dt.datetime | None,
    end: dt.datetime | None,
) -> tuple[dt.datetime, dt.datetime] | None:
    """[first, last] of the instants the export may hold, within [start, end): the hot rows'
    (matching `filters`) earliest and latest time, and the rolled ranges (whole partitions)
    that overlap the window; None when neither has any."""
    table = "bot_state_history" if p.table == "bot_state" else p.table
    where, args = _where(filters, p.time_column, start, end)
    low, high = await conn.fetchrow(
        f'SELECT min("{p.time_column}"), max("{p.time_column}") FROM {schema}.{table} WHERE {where}',  # noqa: S608 - identifiers are ours
        *args,
    )
    found = [] if low is None else [(low, high + ONE_US)]
    if p.table != "bot_state" and SPECS[p.table].cold:
        found += await cold.spans(conn, schema, Query(SPECS[p.table], (), {}, start, end))
    if not found:
        return None
    first, last = min(s for s, _ in found), max(e for _, e in found)
    return max(first, start) if start else first, min(last, end) if end else last


async def bot_state_rows(
    conn: asyncpg.Connection, schema: str, p: Plan, start: dt.datetime, end: dt.datetime, limit: int | None
) -> pa.Table:
    """History snapshots with ts in [start, end), oldest first (then by bot_id, seq, state),
    the first `limit`; every column, `state` as JSON text."""
    where, args = _where(p.filters, "ts", start, end)
    sql = (
        f"SELECT bot_id, ts, seq, state::text AS state FROM {schema}.bot_state_history WHERE {where} "  # noqa: S608 - identifiers are ours
        "ORDER BY ts, bot_id, coalesce(seq, -1), state_hash"
    )
    if limit is not None:
        args.append(limit)
        sql += f" LIMIT ${len(args)}"
    rows = await conn.fetch(sql, *args)
    columns = {c: [r[c] for r in rows] for c in BOT_STATE_COLUMNS}
    return pa.table(columns, schema=BOT_STATE_SCHEMA)
