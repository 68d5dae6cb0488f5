"""The read API bots use: `async with Vault.connect(config) as v: await v.klines(...)`.

Time-series reads (klines, fills, orders, order_history; trades, balances and signals in
tickvault.series) read PostgreSQL and the cold tier in one call and return a
`pyarrow.Table` (tickvault.reads). Every method takes optional `start` (inclusive) and
`end` (exclusive) as aware datetimes, epoch milliseconds or ISO-8601 strings with an offset.
`load_bot_state`/`bot_states`/`bot_state_history` return `BotState`
records; `load_bot_state` reads the Redis cache first (tickvault.state) and falls back to
PostgreSQL. `save_bot_state` writes like the daemon: the same validation and writer.
`export`/`export_table` write a range of a time table, or a result in hand, to a file
(tickvault.export).

Decimals are exact: Arrow `decimal128(38, 18)` in tables (`.to_pylist()` gives Decimals at
scale 18; `tickvault.decimals.canonical` drops the padding), and in records their canonical
form (tickvault.decimals): trailing zeros removed, exponent never positive.

Bad arguments raise ConfigError: a bound that is not a time, `end` not after `start`, a
`limit` below 1, an interval that is not one of records.INTERVALS.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any, Final

import pyarrow as pa

from tickvault.bot_states import BotStates
from tickvault.decimals import canonical
from tickvault.errors import ConfigError
from tickvault.export.methods import Exports
from tickvault.reads import aggregates, klines, tiers
from tickvault.reads.args import limit_of, symbols_of, window
from tickvault.reads.columns import SPECS, check_columns
from tickvault.reads.gaps import Gap, holes
from tickvault.reads.hot import Query
from tickvault.reads.intervals import to_us
from tickvault.records import INTERVALS
from tickvault.repository.backtest_upkeep import BacktestUpkeep
from tickvault.series import Series
from tickvault.settings import Settings, load_settings
from tickvault.state import StateCache
from tickvault.store import Store
from tickvault.trading.methods import Trading
from tickvault.trading.orders import OPEN_STATUSES, OrderDetail
from tickvault.writes import Writes

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
    ("balances", "account"): ("account",),
    ("balances", "exchange"): ("exchange",),
    ("signals", "bot_id"): ("bot_id",),
    ("signals", "exchange"): ("exchange",),
    ("signals", "symbol"): ("exchange", "symbol"),
    ("trades", "exchange"): ("exchange",),
    ("trades", "symbol"): ("exchange", "symbol"),
}
KLINE_SERIES: Final = ("exchange", "symbol", "interval")  # the primary key's prefix
_ALL: Final = (None, None, None, None, False)  # _read's start, end, limit, columns, floats: every row


def _canonical_row(row: Any) -> dict[str, Any]:
    """A fetched row as record fields, decimals in canonical form."""
    return {k: canonical(v) if type(v) is Decimal else v for k, v in row.items()}


def _close_opened(opening: asyncio.Future[Any]) -> None:
    """Close a catalog whose opening finished after the read that asked for it was cancelled."""
    if not opening.cancelled() and opening.exception() is None:
        from tickvault.archive import table

        table.close_catalog(opening.result())


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


class Vault(BacktestUpkeep, BotStates, Exports, Series, Trading, Writes):
    """The read API. Time-series reads (`klines`, `fills`, `orders`, `order_history`, `trades`,
    `balances`, `signals`) return a
    `pyarrow.Table` over PostgreSQL and the cold tier together (see tickvault.reads): columns
    as `tickvault.reads.columns` types them (decimals `decimal128(38, 18)`, times
    `timestamp[us, UTC]`), rows in time order, one per key whichever tier holds it.
    `.to_pandas()`, `polars.from_arrow(…)` or `.to_pylist()` convert it. Models, strategy
    configs and backtests: tickvault.repository."""

    def __init__(
        self, store: Store, settings: Settings | None = None, cache: StateCache | None = None
    ) -> None:
        self._store = store
        self._schema = store.schema
        self._settings = settings  # None: PostgreSQL only
        self._cache = cache  # None: bot state from PostgreSQL only
        self._catalog: Any = None
        self._catalog_lock = asyncio.Lock()
        self._writer: Store | None = None  # opened by the first save_*
        self._blob_stores = {}  # the repositories' blob stores, by area

    @classmethod
    @asynccontextmanager
    async def connect(cls, config: Settings | Path | str | None = None) -> AsyncIterator[Vault]:
        """Open a vault from settings, a TOML file path, or the environment (None)."""
        settings = config if isinstance(config, Settings) else load_settings(config)
        async with contextlib.AsyncExitStack() as stack:
            store = await stack.enter_async_context(Store(settings.postgres))
            cache = None
            if settings.state.cache:
                cache = await stack.enter_async_context(StateCache(settings.redis, settings.state))
            vault = cls(store, settings, cache)
            try:
                yield vault
            finally:
                await vault._close_catalog()
                await vault._close_writer()

    async def _cold_table(self, name: str) -> Any:
        """The cold table `name`, or None when it does not exist (nothing rolled yet)."""
        if self._settings is None:
            return None
        from tickvault.archive import table  # pyiceberg loads on the first cold read

        async with self._catalog_lock:
            if self._catalog is None:
                opening = asyncio.ensure_future(asyncio.to_thread(table.open_catalog, self._settings))
                try:
                    self._catalog = await asyncio.shield(opening)
                except asyncio.CancelledError:  # the thread goes on: close what it opens
                    opening.add_done_callback(_close_opened)
                    raise
        identifier = f"{self._schema}.{name}"
        if not await asyncio.to_thread(self._catalog.table_exists, identifier):
            return None
        return await asyncio.to_thread(self._catalog.load_table, identifier)

    async def _close_catalog(self) -> None:
        if self._catalog is not None:
            from tickvault.archive import table

            catalog, self._catalog = self._catalog, None
            await asyncio.to_thread(table.close_catalog, catalog)

    async def _read(
        self,
        table: str,
        filters: dict[str, Any],
        start: dt.datetime | int | str | None,
        end: dt.datetime | int | str | None,
        limit: int | None,
        columns: Sequence[str] | str | None,
        floats: bool,
        newest_first: bool = False,
    ) -> pa.Table:
        spec = SPECS[table]
        try:
            wanted = check_columns(spec, columns)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        lower, upper = window(start, end)
        query = Query(
            spec, wanted, {k: v for k, v in filters.items() if v is not None}, lower, upper,
            None if limit is None else limit_of(limit), newest_first,
        )  # fmt: skip
        rows: pa.Table = await self._store.run(
            lambda conn: tiers.read(conn, self._schema, query, self._cold_table)
        )
        return tiers.as_floats(rows) if floats else rows

    async def klines(
        self,
        exchange: str,
        symbol: str | None = None,
        interval: str | None = None,
        start: dt.datetime | int | str | None = None,
        end: dt.datetime | int | str | None = None,
        limit: int | None = None,
        *,
        symbols: Sequence[str] | None = None,
        columns: Sequence[str] | str | None = None,
        floats: bool = False,
    ) -> pa.Table:
        """Candles of `exchange`, `symbol` (or several: `symbols=[...]`) and `interval` in
        [start, end), oldest first; with `limit` and no `start`, the latest `limit`.
        `columns`: only these (default all of `Kline.COLUMNS`); `floats`: decimals as float64.
        A series stored only at lower intervals is resampled from the largest of them that
        divides `interval` (tickvault.reads.resample: a bucket missing a candle or holding an
        open one comes back with closed = false).
        Raises ConfigError for a bad interval, window, limit, column or symbol list, and
        ColdFileError naming a cold file that is missing or damaged."""
        if interval is None or interval not in INTERVALS:
            raise ConfigError(f"interval {interval!r} is not one of {' '.join(INTERVALS)}")
        wanted = symbols_of(symbol, symbols)
        spec = SPECS["klines"]
        try:
            cols = check_columns(spec, columns)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        lower, upper = window(start, end)
        most = None if limit is None else limit_of(limit)
        latest = start is None and limit is not None
        names = [wanted] if isinstance(wanted, str) else wanted
        plan = await self._store.run(lambda conn: klines.plan(conn, self._schema, exchange, names, interval))

        async def reader(
            filters: dict[str, Any],
            lo: dt.datetime | None,
            up: dt.datetime | None,
            n: int | None,
            newest: bool,
            read_columns: tuple[str, ...],
        ) -> pa.Table:
            return await self._read("klines", filters, lo, up, n, read_columns, False, newest)

        async def aggregate(
            names: list[str],
            source: str,
            target: str,
            lo: dt.datetime | None,
            up: dt.datetime | None,
            n: int | None,
            newest: bool,
        ) -> pa.Table | None:
            args = (exchange, names, source, target, lo, up, n, newest)
            return await self._store.run(lambda conn: aggregates.read(conn, self._schema, *args))

        internal = tuple(dict.fromkeys((*cols, *spec.key)))
        rows = await klines.read(
            reader, plan, exchange, interval, lower, upper, most, latest, internal, aggregate
        )
        rows = tiers.finish(spec, rows, most, latest, cols)
        return tiers.as_floats(rows) if floats else rows

    async def orders(
        self,
        exchange: str | None = None,
        symbol: str | None = None,
        bot_id: str | None = None,
        status: str | None = None,
        start: dt.datetime | int | str | None = None,
        end: dt.datetime | int | str | None = None,
        limit: int | None = None,
        *,
        symbols: Sequence[str] | None = None,
        columns: Sequence[str] | str | None = None,
        floats: bool = False,
    ) -> pa.Table:
        """Current state of orders last updated in [start, end), oldest update first (the
        `orders` table, always hot). Columns as `Order.COLUMNS`. Raises as `klines`."""
        wanted = symbols_of(symbol, symbols) if symbol or symbols is not None else None
        filters = {"exchange": exchange, "symbol": wanted, "bot_id": bot_id, "status": status}
        return await self._read("orders", filters, start, end, limit, columns, floats)

    async def order_history(
        self,
        exchange: str,
        order_id: str,
        *,
        columns: Sequence[str] | str | None = None,
        floats: bool = False,
    ) -> pa.Table:
        """Every accepted update of one order (`order_events`, hot and cold), oldest first."""
        filters = {"exchange": exchange, "order_id": order_id}
        return await self._read("order_events", filters, None, None, None, columns, floats)

    async def fills(
        self,
        exchange: str | None = None,
        symbol: str | None = None,
        bot_id: str | None = None,
        order_id: str | None = None,
        start: dt.datetime | int | str | None = None,
        end: dt.datetime | int | str | None = None,
        limit: int | None = None,
        *,
        symbols: Sequence[str] | None = None,
        strategy: str | None = None,
        columns: Sequence[str] | str | None = None,
        floats: bool = False,
    ) -> pa.Table:
        """Fills in [start, end), oldest first, hot and cold (`strategy`: only its fills).
        Columns as `Fill.COLUMNS`. Raises as `klines`."""
        wanted = symbols_of(symbol, symbols) if symbol or symbols is not None else None
        filters = {"exchange": exchange, "symbol": wanted, "bot_id": bot_id, "order_id": order_id}
        filters["strategy"] = strategy
        return await self._read("fills", filters, start, end, limit, columns, floats)

    async def open_orders(
        self, bot_id: str | None = None, symbol: str | None = None, exchange: str | None = None
    ) -> pa.Table:
        """Current state of the orders that can still fill (status new, open or
        partially_filled), oldest update first; columns as `Order.COLUMNS`."""
        filters = {"exchange": exchange, "symbol": symbol, "bot_id": bot_id, "status": list(OPEN_STATUSES)}
        return await self._read("orders", filters, *_ALL)

    async def order(self, exchange: str, order_id: str) -> OrderDetail | None:
        """One order's current state, history and fills (`tickvault.trading.orders.OrderDetail`),
        or None when none of them is stored."""
        state = await self._read("orders", {"exchange": exchange, "order_id": order_id}, *_ALL)
        history = await self.order_history(exchange, order_id)
        detail = OrderDetail(state, history, await self.fills(exchange, order_id=order_id))
        return detail if state.num_rows or history.num_rows or detail.fills.num_rows else None

    async def missing_ranges(
        self,
        exchange: str,
        symbol: str,
        interval: str,
        start: dt.datetime | int | str,
        end: dt.datetime | int | str,
    ) -> list[Gap]:
        """The holes of one kline series in [start, end), over hot and cold: for each run of
        missing open times of the interval grid (`tickvault.reads.intervals`), a `Gap(start,
        end, candles)` — `end` exclusive, the next stored open time or the window's end —
        oldest first. Nothing stored at all gives one gap over the whole window. What an
        incremental backfill fetches. Raises ConfigError for a bad interval or window."""
        if interval not in INTERVALS:
            raise ConfigError(f"interval {interval!r} is not one of {' '.join(INTERVALS)}")
        if start is None or end is None:
            raise ConfigError("missing_ranges needs both start and end")
        lower, upper = window(start, end)
        assert lower is not None and upper is not None
        filters = {"exchange": exchange, "symbol": symbol, "interval": interval}
        rows = await self._read("klines", filters, lower, upper, None, ["open_time"], False)
        return holes(rows.column("open_time"), to_us(lower), to_us(upper), interval)

    async def kline_series(self, limit: int = MAX_DISTINCT) -> list[tuple[str, str, str]]:
        """Every stored (exchange, symbol, interval), hot or cold, ascending; at most `limit`.

        Reads one primary-key entry per series, so millions of candles cost little.
        """
        hot = await self._distinct("klines", KLINE_SERIES, limit)
        cold = await self._store.fetch(
            f'SELECT exchange, symbol, "interval" FROM {self._schema}.cold_kline_series '  # noqa: S608 - identifiers are ours
            "ORDER BY 1, 2, 3 LIMIT $1",
            limit_of(limit),
        )
        return sorted({(e, s, i) for e, s, i in [*hot, *(tuple(r) for r in cold)]})[:limit]

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
        rows = await self._store.fetch(_distinct_sql(f"{self._schema}.{table}", columns), limit_of(limit))
        return [tuple(row) for row in rows]
