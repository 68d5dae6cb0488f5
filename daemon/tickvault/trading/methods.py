"""The trading methods of `Vault` (a mixin): positions and the trading summary, computed
from fills read over both tiers (`tickvault.trading.positions`, `tickvault.trading.summary`)."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Awaitable, Callable

import pyarrow as pa

from tickvault.reads.args import window
from tickvault.reads.intervals import to_us
from tickvault.trading import positions, summary


class Trading:
    """`Vault`'s positions and summary; `fills` is Vault's read over both tiers."""

    fills: Callable[..., Awaitable[pa.Table]]  # Vault.fills, the read over both tiers

    async def positions(
        self,
        bot_id: str | None = None,
        exchange: str | None = None,
        symbol: str | None = None,
        as_of: dt.datetime | int | str | None = None,
    ) -> pa.Table:
        """The position of each (bot_id, exchange, symbol) from its fills with ts < `as_of`
        (default: all), hot and cold, by the average-cost method: signed quantity, average
        entry price, realized PnL, fees, open/flat times. Schema and rules:
        `tickvault.trading.positions` (and README "Positions and PnL"). Raises ConfigError
        for a bad `as_of`."""
        fills = await self.fills(exchange, symbol, bot_id, end=as_of, columns=positions.FILL_COLUMNS)
        return await asyncio.to_thread(positions.table, fills)

    async def trading_summary(
        self,
        bot_id: str | None = None,
        strategy: str | None = None,
        symbol: str | None = None,
        start: dt.datetime | int | str | None = None,
        end: dt.datetime | int | str | None = None,
    ) -> pa.Table:
        """One row: fills, round trips, realized PnL, fees, win rate, average win and loss,
        profit factor and max drawdown of the fills in [start, end) (positions replayed from
        their first fill). Definitions: `tickvault.trading.summary`. Raises as `fills`."""
        lower, upper = window(start, end)
        columns = summary.FILL_COLUMNS
        fills = await self.fills(symbol=symbol, bot_id=bot_id, strategy=strategy, end=upper, columns=columns)
        return await asyncio.to_thread(summary.table, fills, None if lower is None else to_us(lower))
