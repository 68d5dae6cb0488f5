"""`tickvault.publish`: what a bot uses to publish klines, orders, fills, trades, balances,
signals and bot state to the daemon's Kafka topics or Redis streams, in the native format.

    async with Publisher.connect("tickvault.toml") as pub:
        await pub.klines([{"exchange": "binance", "symbol": "BTCUSDT", "interval": "1m", ...}])

Every item is validated before anything is sent, by the same record models the daemon uses
(`codecs.native.to_record`): a bad item raises RecordError at the caller, naming its index and
the reason, and nothing of that call is sent — it never becomes a dead letter later. Items
are dicts shaped like the messages or the record objects (tickvault.records).

Where to: the stream or topic of `source.topics` whose kind is the item's kind (else one of
kind "mixed"; the message always carries its `kind`), or `topic=`. Redis: one `XADD` per
message with its JSON in the field `data`, sent in pipelines of `batch` messages. Kafka: one
record per message, keyed by the record's writer key (symbol, order id, bot or account id:
one key's messages stay in one partition, in order), `acks="all"`, waited for before the
call returns. Encoding: JSON, decimals as exact JSON numbers, times as ISO 8601 in UTC.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Final

from tickvault.codecs.native import to_records
from tickvault.errors import ConfigError
from tickvault.records import Record, dump_json
from tickvault.settings import Settings, load_settings

Items = Iterable[Mapping[str, Any] | Record]
DEFAULT_BATCH: Final = 1000


def encode(record: Record) -> bytes:
    """One record as a native message: `{"kind": …, <fields>}`, decimals exact, times ISO."""
    values: dict[str, Any] = {"kind": record.KIND}
    for column in record.COLUMNS:
        value = getattr(record, column)
        if value is None:
            continue
        values[column] = value.isoformat().replace("+00:00", "Z") if isinstance(value, dt.datetime) else value
    return dump_json(values).encode()


class Publisher:
    """Validating publishers to the configured source (`source.kind`: redis or kafka). Open
    with `Publisher.connect`. Each method returns how many messages it sent."""

    def __init__(self, settings: Settings, batch: int = DEFAULT_BATCH) -> None:
        self.settings = settings
        self.batch = batch
        self._redis: Any = None
        self._producer: Any = None

    @classmethod
    @asynccontextmanager
    async def connect(
        cls, config: Settings | Path | str | None = None, batch: int = DEFAULT_BATCH
    ) -> AsyncIterator[Publisher]:
        """A publisher from settings, a TOML file path or the environment (None). Raises
        SourceUnavailable when Kafka cannot be reached (Redis connects on first use)."""
        settings = config if isinstance(config, Settings) else load_settings(config)
        publisher = cls(settings, batch)
        try:
            await publisher._open()
            yield publisher
        finally:
            await publisher._close()

    async def _open(self) -> None:
        if self.settings.source.kind == "kafka":
            from tickvault.sources import kafka

            self._producer = await kafka.producer(self.settings.kafka)
        else:
            from tickvault.sources.redis_streams import connect

            self._redis = connect(self.settings.redis)

    async def _close(self) -> None:
        if self._producer is not None:
            await self._producer.stop()
        if self._redis is not None:
            await self._redis.aclose()

    def topic_of(self, kind: str) -> str:
        """The stream or topic `kind` goes to: the first of `source.topics` of that kind,
        else the first of kind "mixed". ConfigError when there is none."""
        topics = self.settings.source.topics
        for wanted in (kind, "mixed"):
            for name, topic in topics.items():
                if topic.kind == wanted:
                    return name
        raise ConfigError(f"no stream or topic of kind {kind} (or mixed) in source.topics; pass topic=")

    async def send(self, kind: str, items: Items, *, topic: str | None = None) -> int:
        """Validate every item as `kind`, then publish them all, in order."""
        records = to_records(kind, items, self.settings.source.min_epoch_ms)
        target = topic or self.topic_of(kind)
        for start in range(0, len(records), self.batch):
            await self._send(target, records[start : start + self.batch])
        return len(records)

    async def _send(self, target: str, records: Sequence[Record]) -> None:
        if self._producer is not None:
            futures = [
                await self._producer.send(target, encode(r), key=r.writer_key.encode()) for r in records
            ]
            await self._producer.flush()
            for future in futures:
                await future
            return
        async with self._redis.pipeline(transaction=False) as pipe:
            for r in records:
                pipe.xadd(target, {"data": encode(r)})
            await pipe.execute()

    async def klines(self, items: Items, *, topic: str | None = None) -> int:
        """Publish klines (see `send`)."""
        return await self.send("kline", items, topic=topic)

    async def orders(self, items: Items, *, topic: str | None = None) -> int:
        """Publish order updates (see `send`)."""
        return await self.send("order", items, topic=topic)

    async def fills(self, items: Items, *, topic: str | None = None) -> int:
        """Publish fills (see `send`)."""
        return await self.send("fill", items, topic=topic)

    async def trades(self, items: Items, *, topic: str | None = None) -> int:
        """Publish public trades (see `send`)."""
        return await self.send("trade", items, topic=topic)

    async def balances(self, items: Items, *, topic: str | None = None) -> int:
        """Publish balance snapshots (see `send`)."""
        return await self.send("balance", items, topic=topic)

    async def signals(self, items: Items, *, topic: str | None = None) -> int:
        """Publish trading signals (see `send`)."""
        return await self.send("signal", items, topic=topic)

    async def bot_state(self, items: Items, *, topic: str | None = None) -> int:
        """Publish bot state snapshots (see `send`)."""
        return await self.send("bot_state", items, topic=topic)
