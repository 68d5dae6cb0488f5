"""A synthetic market for `tickvault dev --demo`: random-walk prices for a few symbols
(closed 1s klines and a live 1m kline), a toy grid bot that places limit orders and gets
filled, and a bot-state snapshot every second. Everything is published in the native
message format to the configured streams, exactly as a feed adapter or a bot would."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import time
from dataclasses import dataclass, field
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any, Final

import redis.asyncio as aioredis

from tickvault.settings import Settings

log = logging.getLogger(__name__)
EXCHANGE: Final = "demo"
BOT_ID: Final = "demo-grid-1"
START_PRICES: Final = {
    "BTCUSDT": Decimal("87000.00"),
    "ETHUSDT": Decimal("3100.00"),
    "SOLUSDT": Decimal("145.00"),
}
CENT: Final = Decimal("0.01")


def stream_names(settings: Settings) -> dict[str, str]:
    """kind → the first configured stream for that kind (or a mixed one)."""
    names: dict[str, str] = {}
    for name, topic in settings.source.topics.items():
        for kind in ("kline", "order", "fill", "bot_state"):
            if topic.kind in (kind, "mixed"):
                names.setdefault(kind, name)
    return names


@dataclass
class Market:
    rng: random.Random = field(default_factory=random.Random)
    prices: dict[str, Decimal] = field(default_factory=lambda: dict(START_PRICES))
    minute: dict[str, dict[str, Any]] = field(default_factory=dict)

    def tick(self, second_ms: int) -> list[dict[str, Any]]:
        """Advance one second: a closed 1s kline per symbol and the live 1m kline."""
        out = []
        for symbol, price in self.prices.items():
            path = [price]
            for _ in range(4):
                step = Decimal(self.rng.gauss(0, 0.0004)) * path[-1]
                path.append(max(CENT, (path[-1] + step).quantize(CENT, ROUND_HALF_EVEN)))
            self.prices[symbol] = path[-1]
            volume = Decimal(self.rng.randint(1, 5000)) / 1000
            out.append(self._kline(symbol, "1s", second_ms, path, volume, closed=True))
            out.append(self._minute(symbol, second_ms, path, volume))
        return out

    def _minute(self, symbol: str, second_ms: int, path: list[Decimal], volume: Decimal) -> dict[str, Any]:
        start_ms = second_ms - second_ms % 60_000
        bar = self.minute.get(symbol)
        if bar is None or bar["open_time"] != start_ms:
            bar = {"open_time": start_ms, "path": [path[0]], "volume": Decimal(0)}
            self.minute[symbol] = bar
        bar["path"] += path[1:]
        bar["volume"] += volume
        closed = second_ms + 1000 - start_ms >= 60_000
        return self._kline(symbol, "1m", start_ms, bar["path"], bar["volume"], closed)

    @staticmethod
    def _kline(
        symbol: str, interval: str, open_ms: int, path: list[Decimal], volume: Decimal, closed: bool
    ) -> dict[str, Any]:
        return {
            "exchange": EXCHANGE, "symbol": symbol, "interval": interval, "open_time": open_ms,
            "open": str(path[0]), "high": str(max(path)), "low": str(min(path)), "close": str(path[-1]),
            "volume": str(volume), "closed": closed,
        }  # fmt: skip


@dataclass
class GridBot:
    """Buys below the market and sells above it, one order at a time."""

    rng: random.Random = field(default_factory=random.Random)
    symbol: str = "BTCUSDT"
    position: Decimal = Decimal(0)
    cash: Decimal = Decimal("100000.00")
    order: dict[str, Any] | None = None
    orders_placed: int = 0
    fills: int = 0

    def step(self, price: Decimal, now_ms: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """Returns (order updates, fills) for this second."""
        if self.order is None:
            return [self._place(price, now_ms)], []
        if self.rng.random() < 0.1:
            return [self._update("canceled", now_ms)], []
        remaining = Decimal(self.order["quantity"]) - Decimal(self.order["filled_quantity"])
        part = min(remaining, Decimal(self.rng.randint(1, 3)) / 1000)
        return self._fill(part, now_ms)

    def _place(self, price: Decimal, now_ms: int) -> dict[str, Any]:
        self.orders_placed += 1
        side = "buy" if self.position <= 0 else "sell"
        offset = Decimal("0.999") if side == "buy" else Decimal("1.001")
        self.order = {
            "order_id": f"{BOT_ID}-{now_ms}", "client_order_id": f"grid-{self.orders_placed}",
            "exchange": EXCHANGE, "symbol": self.symbol, "side": side, "type": "limit",
            "status": "new", "quantity": "0.005", "price": str((price * offset).quantize(CENT)),
            "filled_quantity": "0", "bot_id": BOT_ID, "strategy": "grid",
            "created_at": now_ms, "updated_at": now_ms, "seq": 0,
        }  # fmt: skip
        return dict(self.order)

    def _update(self, status: str, now_ms: int, **changes: Any) -> dict[str, Any]:
        assert self.order is not None  # only called with an open order
        self.order.update(status=status, updated_at=now_ms, seq=self.order["seq"] + 1, **changes)
        update = dict(self.order)
        if status in ("filled", "canceled"):
            self.order = None
        return update

    def _fill(self, quantity: Decimal, now_ms: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        assert self.order is not None
        order, price = self.order, Decimal(self.order["price"])
        filled = Decimal(order["filled_quantity"]) + quantity
        sign = 1 if order["side"] == "buy" else -1
        self.position += sign * quantity
        self.cash -= sign * quantity * price
        self.fills += 1
        fill = {
            "fill_id": f"{order['order_id']}-{self.fills}", "order_id": order["order_id"],
            "exchange": EXCHANGE, "symbol": self.symbol, "side": order["side"], "quantity": str(quantity),
            "price": str(price), "fee": str((quantity * price * Decimal("0.0002")).quantize(Decimal("1E-8"))),
            "fee_asset": "USDT", "liquidity": "maker", "bot_id": BOT_ID, "strategy": "grid", "ts": now_ms,
        }  # fmt: skip
        status = "filled" if filled >= Decimal(order["quantity"]) else "partially_filled"
        update = self._update(status, now_ms, filled_quantity=str(filled), avg_fill_price=str(price))
        return [update], [fill]

    def snapshot(self, now_ms: int, price: Decimal) -> dict[str, Any]:
        return {
            "bot_id": BOT_ID, "ts": now_ms, "seq": now_ms,
            "state": {
                "symbol": self.symbol, "position": str(self.position), "cash": str(self.cash.quantize(CENT)),
                "equity": str((self.cash + self.position * price).quantize(CENT)),
                "open_order": self.order["order_id"] if self.order else None,
                "orders_placed": self.orders_placed, "fills": self.fills,
            },
        }  # fmt: skip


async def run(
    redis: aioredis.Redis, streams: dict[str, str], stop: asyncio.Event, seed: int | None = None
) -> None:
    """Publish one second of market, bot orders/fills and bot state per second until `stop`."""
    rng = random.Random(seed)
    market, bot = Market(rng), GridBot(rng)
    log.info("demo market publishing to %s", ", ".join(sorted(set(streams.values()))))
    while not stop.is_set():
        now_ms = int(time.time() * 1000)
        second_ms = now_ms - now_ms % 1000 - 1000  # the second that just ended
        klines = market.tick(second_ms)
        orders, fills = bot.step(market.prices[bot.symbol], now_ms)
        states = [bot.snapshot(now_ms, market.prices[bot.symbol])]
        async with redis.pipeline(transaction=False) as pipe:
            for kind, messages in (
                ("kline", klines),
                ("order", orders),
                ("fill", fills),
                ("bot_state", states),
            ):
                for message in messages:
                    pipe.xadd(streams[kind], {"data": json.dumps({"kind": kind, **message})})
            await pipe.execute()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 1.0)
