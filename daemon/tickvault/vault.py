"""The read API bots use: `async with Vault.connect(config) as v: await v.klines(...)`.

Reads the hot tier (PostgreSQL). Every method takes optional `start` (inclusive) and `end`
(exclusive) as aware datetimes, epoch milliseconds or ISO-8601 strings with an offset, and
returns records in time order. Results are the same record types the daemon ingests.

Decimals come back in their canonical form (tickvault.decimals): the exact value, trailing
zeros removed, exponent never positive — `Decimal('10000')`, not asyncpg's `Decimal('1E+4')`.
Every read path added here (cold tier, Arrow results) applies the same `canonical`.

Bad arguments raise ConfigError: a bound that is not a time, `end` not after `start`, a
`limit` below 1, an interval that is not one of records.INTERVALS.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any, Final, TypeVar

from tickvault.decimals import canonical
from tickvault.errors import ConfigError
from tickvault.records import INTERVALS, BotState, Fill, Kline, Order
from tickvault.settings import Settings, load_settings
from tickvault.store import Store
from tickvault.timestamps import parse_timestamp

R = TypeVar("R", Kline, Order, Fill, BotState)
DEFAULT_LIMIT: Final = 10_000
MAX_DISTINCT: Final = 100_000  # most distinct values a listing such as kline_series returns
# the filter columns whose distinct values `stored_values` lists, per table: each leads an
# index or the primary key (fills' symbol comes second, after exchange), so a skip scan
# reads one index entry per value instead of every row
DISTINCT_SCANS: Final[dict[tuple[str, str], tuple[str, ...]]] = {
    ("orders", "exchange"): ("exchange",),
    ("orders", "symbol"): ("symbol",),
    ("orders", "bot_id"): ("bot_id",),
    ("fills", "exchange"): ("exchange",),
    ("fills", "symbol"): ("exchange", "symbol"),
    ("fills", "bot_id"): ("bot_id",),
    ("bot_state", "bot_id"): ("bot_id",),
}
KLINE_SERIES: Final = ("exchange", "symbol", "interval")  # the primary key's prefix


def parse_time(value: dt.datetime | int | str) -> dt.datetime:
    """A bound as UTC: an aware datetime, epoch ms (int or digits) or ISO-8601 with an offset.

    Raises ValueError with the reason.
    """
    if isinstance(value, str) and value.isascii() and value.isdigit():
        value = int(value)  # epoch milliseconds, as the CLI passes them
    return parse_timestamp(value)


def _time(value: dt.datetime | int | str | None, name: str) -> dt.datetime | None:
    if value is None:
        return None
    try:
        return parse_time(value)
    except ValueError as exc:
        shown = f" {value!r}" if isinstance(value, str | int) else ""
        raise ConfigError(f"{name}{shown}: {exc}") from None


def _window(
    start: dt.datetime | int | str | None, end: dt.datetime | int | str | None
) -> tuple[dt.datetime | None, dt.datetime | None]:
    lower, upper = _time(start, "start"), _time(end, "end")
    if lower is not None and upper is not None and upper <= lower:
        raise ConfigError(f"end {_iso(upper)} is not after start {_iso(lower)}")
    return lower, upper


def _iso(value: dt.datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")


def _limit(limit: int | None) -> int:
    if limit is None:
        return DEFAULT_LIMIT
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise ConfigError(f"limit must be a positive integer, got {limit!r}")
    return limit


def _canonical_row(row: Any) -> dict[str, Any]:
    """A fetched row as record fields, decimals in canonical form."""
    return {k: canonical(v) if type(v) is Decimal else v for k, v in row.items()}


def _json_number(text: str) -> Decimal:
    return canonical(Decimal(text))


def _distinct_sql(table: str, columns: tuple[str, ...]) -> str:
    """Distinct values of `columns` (an index prefix) in index order, one index probe each.

    A recursive skip scan: each step asks for the first key above the previous one. NULLs
    sort last, and a comparison with NULL is not true, so they end the scan.
    """
    names = ", ".join(f'"{c}"' for c in columns)
    found = ", ".join(f't."{c}"' for c in columns)
    last = ", ".join(f's."{c}"' for c in columns)
    not_null = " AND ".join(f'"{c}" IS NOT NULL' for c in columns)
    return (
        f"WITH RECURSIVE s AS ((SELECT {names} FROM {table} WHERE {not_null} ORDER BY {names} LIMIT 1) "  # noqa: S608 - identifiers are ours
        f"UNION ALL SELECT n.* FROM s CROSS JOIN LATERAL (SELECT {found} FROM {table} t "
        f"WHERE ({found}) > ({last}) ORDER BY {found} LIMIT 1) n) SELECT {names} FROM s LIMIT $1"
    )


class Vault:
    def __init__(self, store: Store) -> None:
        self._store = store
        self._schema = store.schema

    @classmethod
    @asynccontextmanager
    async def connect(cls, config: Settings | Path | str | None = None) -> AsyncIterator[Vault]:
        """Open a vault from settings, a TOML file path, or the environment (None)."""
        settings = config if isinstance(config, Settings) else load_settings(config)
        async with Store(settings.postgres) as store:
            yield cls(store)

    async def _select(
        self,
        record_type: type[R],
        table: str,
        filters: dict[str, Any],
        start: dt.datetime | int | str | None,
        end: dt.datetime | int | str | None,
        limit: int | None,
        newest_first: bool = False,
    ) -> list[R]:
        time_column = record_type.TIME_COLUMN
        clauses, args = [], []
        for column, value in filters.items():
            if value is not None:
                args.append(value)
                clauses.append(f'"{column}" = ${len(args)}')
        for op, bound in zip((">=", "<"), _window(start, end), strict=True):
            if bound is not None:
                args.append(bound)
                clauses.append(f"{time_column} {op} ${len(args)}")
        args.append(_limit(limit))
        columns = ", ".join(f'"{c}"' for c in record_type.COLUMNS)
        where = " AND ".join(clauses) or "TRUE"
        order = "DESC" if newest_first else "ASC"
        sql = (
            f"SELECT {columns} FROM {self._schema}.{table} WHERE {where} "  # noqa: S608 - identifiers are ours
            f"ORDER BY {time_column} {order} LIMIT ${len(args)}"
        )
        rows = await self._store.fetch(sql, *args)
        records = [record_type.model_construct(**_canonical_row(row)) for row in rows]
        return records[::-1] if newest_first else records

    async def klines(
        self,
        exchange: str,
        symbol: str,
        interval: str,
        start: dt.datetime | int | str | None = None,
        end: dt.datetime | int | str | None = None,
        limit: int | None = None,
    ) -> list[Kline]:
        """Candles of one series in [start, end); with only `limit`, the latest ones."""
        if interval not in INTERVALS:
            raise ConfigError(f"interval {interval!r} is not one of {' '.join(INTERVALS)}")
        filters = {"exchange": exchange, "symbol": symbol, "interval": interval}
        latest = start is None and limit is not None
        return await self._select(Kline, "klines", filters, start, end, limit, newest_first=latest)

    async def orders(
        self,
        exchange: str | None = None,
        symbol: str | None = None,
        bot_id: str | None = None,
        status: str | None = None,
        start: dt.datetime | int | str | None = None,
        end: dt.datetime | int | str | None = None,
        limit: int | None = None,
    ) -> list[Order]:
        """Current state of orders last updated in [start, end)."""
        filters = {"exchange": exchange, "symbol": symbol, "bot_id": bot_id, "status": status}
        return await self._select(Order, "orders", filters, start, end, limit)

    async def order_history(self, exchange: str, order_id: str) -> list[Order]:
        """Every accepted update of one order, oldest first."""
        filters = {"exchange": exchange, "order_id": order_id}
        return await self._select(Order, "order_events", filters, None, None, None)

    async def fills(
        self,
        exchange: str | None = None,
        symbol: str | None = None,
        bot_id: str | None = None,
        order_id: str | None = None,
        start: dt.datetime | int | str | None = None,
        end: dt.datetime | int | str | None = None,
        limit: int | None = None,
    ) -> list[Fill]:
        filters = {"exchange": exchange, "symbol": symbol, "bot_id": bot_id, "order_id": order_id}
        return await self._select(Fill, "fills", filters, start, end, limit)

    async def load_bot_state(self, bot_id: str) -> BotState | None:
        """The newest state snapshot of a bot, or None if it never sent one."""
        states = await self.bot_states(bot_id)
        return states[0] if states else None

    async def bot_states(self, bot_id: str | None = None) -> list[BotState]:
        """The newest snapshot of every bot (or of one), ordered by bot_id."""
        states = await self._select(BotState, "bot_state", {"bot_id": bot_id}, None, None, None)
        states.sort(key=lambda s: s.bot_id)
        return [
            s.model_copy(update={"state": json.loads(s.state, parse_float=_json_number)})
            if isinstance(s.state, str)
            else s
            for s in states
        ]

    async def kline_series(self, limit: int = MAX_DISTINCT) -> list[tuple[str, str, str]]:
        """Every stored (exchange, symbol, interval), ascending; at most `limit` of them.

        Reads one primary-key entry per series, so millions of candles cost little.
        """
        return [(e, s, i) for e, s, i in await self._distinct("klines", KLINE_SERIES, limit)]

    async def stored_values(self, table: str, column: str, limit: int = MAX_DISTINCT) -> list[str]:
        """The distinct non-null values of a filter column, ascending; at most `limit` of them.

        `table` is "orders", "fills" or "bot_state"; `column` "exchange", "symbol" or "bot_id"
        (bot_state: "bot_id" only). Other pairs raise ConfigError.
        """
        columns = DISTINCT_SCANS.get((table, column))
        if columns is None:
            raise ConfigError(f"no listing of distinct {column} values in {table}")
        return sorted({row[-1] for row in await self._distinct(table, columns, limit)})

    async def _distinct(self, table: str, columns: tuple[str, ...], limit: int) -> list[tuple[Any, ...]]:
        rows = await self._store.fetch(_distinct_sql(f"{self._schema}.{table}", columns), _limit(limit))
        return [tuple(row) for row in rows]
