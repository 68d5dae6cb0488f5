"""The soak's load: klines, fills and public trades made on the fly, published at a steady rate
to Redis Streams, with event times that run ahead of the wall clock so that daily partitions
fill up one after another and fall behind the roller's cutoff while the run goes on.

Message i (i = 0, 1, … in publish order) is of kind CYCLE[i % 5] (60% klines, 20% fills,
20% trades) and happens at `first_ms + i * step_ms`. Every key is unique: the k-th kline is
symbol `S<k % symbols>` at minute `k // symbols` from `first_ms` (`symbols` chosen so that
klines keep pace with the event clock), the j-th fill has `fill_id` `f<j>`, the j-th trade
`trade_id` `<j>`. So the rows stored must equal the messages sent, kind by kind. No I/O here
except the publisher.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

import redis.asyncio as aioredis

TICK_S: Final = 0.01
CYCLE: Final = ("kline", "fill", "kline", "trade", "kline")
TABLES: Final = {"kline": "klines", "fill": "fills", "trade": "trades"}
MINUTE_MS: Final = 60_000


def _fixed(units: int, places: int) -> str:
    """An exact decimal string from an integer count of 10**-places."""
    return f"{units // 10**places}.{units % 10**places:0{places}d}"


def _dumps(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


@dataclass
class Load:
    """The event clock and the counters of what was made, per kind."""

    first_ms: int  # event time of message 0, epoch ms (a minute boundary)
    step_ms: float  # event time between two messages
    symbols: int = field(init=False)
    made: dict[str, int] = field(default_factory=lambda: dict.fromkeys(TABLES, 0))

    def __post_init__(self) -> None:
        kline_step_ms = self.step_ms * len(CYCLE) / CYCLE.count("kline")
        self.symbols = max(1, round(MINUTE_MS / kline_step_ms))

    def message(self, i: int) -> tuple[str, bytes]:
        """(kind, payload) of message i; call in order, i = 0, 1, …"""
        kind = CYCLE[i % len(CYCLE)]
        n = self.made[kind]
        self.made[kind] = n + 1
        ts_ms = self.first_ms + int(i * self.step_ms)
        make: Callable[[int, int], bytes] = {"kline": self._kline, "fill": _fill, "trade": _trade}[kind]
        return kind, make(n, ts_ms)

    def _kline(self, k: int, _ts_ms: int) -> bytes:
        open_ms = self.first_ms + (k // self.symbols) * MINUTE_MS
        open_c = 10_000 + (k * 7919) % 9_000_000  # cents
        close_c = open_c + (k * 31) % 201 - 100
        high_c, low_c = max(open_c, close_c) + k % 50, min(open_c, close_c) - k % 50
        volume_m = 1 + (k * 104_729) % 10_000_000  # thousandths
        return _dumps({
            "exchange": "binance", "symbol": f"S{k % self.symbols:03d}USDT", "interval": "1m",
            "open_time": open_ms, "close_time": open_ms + 59_999, "open": _fixed(open_c, 2),
            "high": _fixed(high_c, 2), "low": _fixed(low_c, 2), "close": _fixed(close_c, 2),
            "volume": _fixed(volume_m, 3), "quote_volume": _fixed(volume_m * close_c, 5),
            "trades": 1 + k % 5000, "closed": True,
        })  # fmt: skip


def _fill(j: int, ts_ms: int) -> bytes:
    qty_m, price_c = 1 + (j * 7919) % 1_000_000, 1_000 + (j * 104_729) % 10_000_000
    return _dumps({
        "fill_id": f"f{j}", "order_id": f"o{j // 3}", "exchange": "binance",
        "symbol": f"S{j % 50:03d}USDT", "side": "buy" if j % 2 else "sell",
        "quantity": _fixed(qty_m, 3), "price": _fixed(price_c, 2), "fee": _fixed(qty_m * 10, 7),
        "fee_asset": "USDT", "liquidity": "maker" if j % 3 else "taker",
        "bot_id": f"bot-{j % 20}", "strategy": "grid", "ts": ts_ms,
    })  # fmt: skip


def _trade(j: int, ts_ms: int) -> bytes:
    price_c, qty_m = 1_000 + (j * 7919) % 10_000_000, 1 + (j * 104_729) % 5_000_000
    message = {
        "exchange": "binance", "symbol": f"S{j % 50:03d}USDT", "trade_id": str(j),
        "price": _fixed(price_c, 2), "quantity": _fixed(qty_m, 5),
        "side": "buy" if j % 2 else "sell", "ts": ts_ms,
    }  # fmt: skip
    if j % 5:
        message["quote_quantity"] = _fixed(price_c * qty_m, 7)
    return _dumps(message)


@dataclass
class Publisher:
    """Publishes `total` messages of `load` at `rate` per second, in 10 ms ticks of pipelined
    XADD (catching up when a tick runs late, so the average rate holds)."""

    redis: aioredis.Redis
    load: Load
    streams: dict[str, str]  # kind → stream
    rate: float
    total: int
    sent: int = 0

    async def run(self, stop: asyncio.Event) -> None:
        started = time.perf_counter()
        while self.sent < self.total and not stop.is_set():
            due = min(self.total, int((time.perf_counter() - started) * self.rate) + 1)
            if due > self.sent:
                async with self.redis.pipeline(transaction=False) as pipe:
                    for i in range(self.sent, due):
                        kind, payload = self.load.message(i)
                        pipe.xadd(self.streams[kind], {"data": payload})
                    await pipe.execute()
                self.sent = due
            await asyncio.sleep(TICK_S)
