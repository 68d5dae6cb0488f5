"""The reads of `Vault` (a mixin) over the time tables beside klines, orders and fills:
public trades, balances and signals, each hot and cold through Vault's `_read`
(tickvault.reads: one row per key whichever tier holds it, oldest first)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable, Sequence

import pyarrow as pa

from tickvault.reads.args import symbols_of

Bound = dt.datetime | int | str | None


class Series:
    """`Vault`'s reads of trades, balances and signals; `_read` is Vault's read over both
    tiers (table, filters, start, end, limit, columns, floats)."""

    _read: Callable[..., Awaitable[pa.Table]]

    async def trades(
        self,
        exchange: str | None = None,
        symbol: str | None = None,
        start: Bound = None,
        end: Bound = None,
        limit: int | None = None,
        *,
        symbols: Sequence[str] | None = None,
        columns: Sequence[str] | str | None = None,
        floats: bool = False,
    ) -> pa.Table:
        """Public trades in [start, end), oldest first (by `ts`, then the key), hot and cold;
        `symbol` or several `symbols=[...]`; `limit`: the first `limit` of them.
        Columns as `Trade.COLUMNS` (price, quantity and quote_quantity as decimal128(38, 18),
        ts as timestamp[us, UTC]). Raises ConfigError for a bad window, limit, column or
        symbol list, and ColdFileError naming a cold file that is missing or damaged."""
        wanted = symbols_of(symbol, symbols) if symbol or symbols is not None else None
        filters = {"exchange": exchange, "symbol": wanted}
        return await self._read("trades", filters, start, end, limit, columns, floats)

    async def balances(
        self,
        account: str | None = None,
        exchange: str | None = None,
        asset: str | None = None,
        start: Bound = None,
        end: Bound = None,
        limit: int | None = None,
        *,
        columns: Sequence[str] | str | None = None,
        floats: bool = False,
    ) -> pa.Table:
        """Balance snapshots in [start, end), oldest first, hot and cold: the points of an
        equity curve. Columns as `Balance.COLUMNS`. Raises as `trades`."""
        filters = {"account": account, "exchange": exchange, "asset": asset}
        return await self._read("balances", filters, start, end, limit, columns, floats)

    async def signals(
        self,
        bot_id: str | None = None,
        strategy: str | None = None,
        exchange: str | None = None,
        symbol: str | None = None,
        start: Bound = None,
        end: Bound = None,
        limit: int | None = None,
        *,
        symbols: Sequence[str] | None = None,
        columns: Sequence[str] | str | None = None,
        floats: bool = False,
    ) -> pa.Table:
        """Trading signals in [start, end), oldest first, hot and cold (`metadata` as JSON
        text). Columns as `Signal.COLUMNS`. Raises as `trades`."""
        wanted = symbols_of(symbol, symbols) if symbol or symbols is not None else None
        filters = {"bot_id": bot_id, "strategy": strategy, "exchange": exchange, "symbol": wanted}
        return await self._read("signals", filters, start, end, limit, columns, floats)
