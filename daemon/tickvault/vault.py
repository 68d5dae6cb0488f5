"""The read API bots use: `async with Vault.connect(config) as v: await v.klines(...)`.

Reads the hot tier (PostgreSQL). Every method takes optional `start` (inclusive) and `end`
(exclusive) as aware datetimes, epoch milliseconds or ISO-8601 strings with an offset, and
returns records in time order. Results are the same record types the daemon ingests.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any, Final, TypeVar

from tickvault.errors import ConfigError
from tickvault.records import BotState, Fill, Kline, Order, parse_timestamp
from tickvault.settings import Settings, load_settings
from tickvault.store import Store

R = TypeVar("R", Kline, Order, Fill, BotState)
DEFAULT_LIMIT: Final = 10_000


def _time(value: dt.datetime | int | str | None, name: str) -> dt.datetime | None:
    if value is None:
        return None
    if isinstance(value, str) and value.isascii() and value.isdigit():
        value = int(value)  # epoch milliseconds, as the CLI passes them
    try:
        return parse_timestamp(value)
    except ValueError as exc:
        raise ConfigError(f"{name}: {exc}") from None


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
        for op, value, name in ((">=", start, "start"), ("<", end, "end")):
            bound = _time(value, name)
            if bound is not None:
                args.append(bound)
                clauses.append(f"{time_column} {op} ${len(args)}")
        args.append(DEFAULT_LIMIT if limit is None else limit)
        columns = ", ".join(f'"{c}"' for c in record_type.COLUMNS)
        where = " AND ".join(clauses) or "TRUE"
        order = "DESC" if newest_first else "ASC"
        sql = (
            f"SELECT {columns} FROM {self._schema}.{table} WHERE {where} "  # noqa: S608 - identifiers are ours
            f"ORDER BY {time_column} {order} LIMIT ${len(args)}"
        )
        rows = await self._store.fetch(sql, *args)
        records = [record_type.model_construct(**dict(row)) for row in rows]
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
            s.model_copy(update={"state": json.loads(s.state, parse_float=Decimal)})
            if isinstance(s.state, str)
            else s
            for s in states
        ]
