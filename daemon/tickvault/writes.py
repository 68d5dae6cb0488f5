"""Writes from bots that do not publish to a queue: `Vault.save_klines`, `save_orders`,
`save_fills`, `save_balances`, `save_signals`, `save_trades`.

One code path with the daemon: each item is validated by the same record model as a message
(`codecs.native.to_record`, so the same rules and the same reasons), turned into the same
row (`rows.to_item`) and written by the same idempotent writers (`Store.write`), under the
same rules per kind (README, "Rules per kind"). Items may be dicts shaped like messages
(decimals as strings or Decimal, never float; times as epoch ms, ISO-8601 with an offset or
aware datetimes) or the record objects themselves.

Version: a direct write has no place in a stream, so each call takes the clock's epoch
milliseconds as its version and each item its index (`"<ms>\\t<index>"`): a later call wins
where a kind's rule says the later-published message wins (saving equal values again then
moves only their version; `ingested_at` stays), and where the first-published wins (fills,
trades) saving again changes nothing.

All or nothing per call: any invalid item raises RecordError naming its index and reason
before anything is written; a row PostgreSQL refuses raises RowRejected likewise.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from typing import Any

from tickvault.codecs.native import to_records
from tickvault.errors import RowRejected
from tickvault.records import Record
from tickvault.rows import to_item
from tickvault.settings import Settings
from tickvault.store import Store
from tickvault.timestamps import MIN_EPOCH_MS

SaveItems = Iterable[Mapping[str, Any] | Record]


class Writes:
    """The save_* methods of `Vault` (a mixin: Vault opens and closes the writer store)."""

    _settings: Settings | None
    _writer: Store | None

    async def _writer_store(self) -> Store:
        if self._writer is None:
            if self._settings is None:
                raise RuntimeError("this vault was opened without settings; writes need Vault.connect")
            store = Store(self._settings.postgres, writer=True)
            await store.__aenter__()
            self._writer = store
        return self._writer

    async def _close_writer(self) -> None:
        store, self._writer = self._writer, None
        if store is not None:
            await store.close()

    async def _save(self, kind: str, items: SaveItems) -> int:
        floor = self._settings.source.min_epoch_ms if self._settings else MIN_EPOCH_MS
        batch = [to_item(record) for record in to_records(kind, items, floor)]
        if not batch:
            return 0
        now_ms = time.time_ns() // 1_000_000
        versions = [f"{now_ms}\t{i}" for i in range(len(batch))]
        store = await self._writer_store()
        result = await store.write(kind, batch, versions)
        if result.rejected:
            index, reason = result.rejected[0]
            raise RowRejected(f"item {index}: {reason}")
        return sum(result.written.values())

    async def save_klines(self, klines: SaveItems) -> int:
        """Store klines (dicts shaped like kline messages, or `Kline` records) as the daemon
        would; returns rows inserted or updated. Raises RecordError (item index and reason)
        or RowRejected; nothing is written then."""
        return await self._save("kline", klines)

    async def save_orders(self, orders: SaveItems) -> int:
        """Store order updates (current state and history) as the daemon would; see save_klines."""
        return await self._save("order", orders)

    async def save_fills(self, fills: SaveItems) -> int:
        """Store fills as the daemon would (the first-stored copy of a fill wins); see save_klines."""
        return await self._save("fill", fills)

    async def save_balances(self, balances: SaveItems) -> int:
        """Store balance snapshots (account, exchange, asset, free, locked, ts); see save_klines."""
        return await self._save("balance", balances)

    async def save_signals(self, signals: SaveItems) -> int:
        """Store trading signals (bot_id, strategy, exchange, symbol, ts, action, strength?,
        metadata?); see save_klines."""
        return await self._save("signal", signals)

    async def save_trades(self, trades: SaveItems) -> int:
        """Store public trades (exchange, symbol, trade_id, price, quantity, side?,
        quote_quantity?, ts) as the daemon would (the first-stored copy of a trade wins); see
        save_klines."""
        return await self._save("trade", trades)
