"""A synthetic market for `tickvault dev --demo` and `tickvault demo`: random-walk prices for
a few symbols (closed 1s klines and a live 1m kline), a toy grid bot that places limit orders
and gets filled, and a bot-state snapshot every second. Everything is published in the native
message format to the configured streams or topics, exactly as a feed adapter or a bot would.

On start the demo continues from its own last messages, read back from the streams or topics
it publishes to (newest first, a bounded number): they hold even what the daemon has not stored
yet. Prices go on from the last close per symbol; a 1m candle left open in an earlier minute
is published again closed; the grid bot gets back its position, cash, counters and its open
order, which then fills or is canceled as before.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any, Final, Protocol

import redis.asyncio as aioredis

from tickvault.settings import Settings

log = logging.getLogger(__name__)
EXCHANGE: Final = "demo"
BOT_ID: Final = "demo-grid-1"
OPEN_STATUSES: Final = frozenset({"new", "open", "partially_filled"})
# newest entries read back per stream on start: 6 klines, at most 1 order update and 1 bot
# state per second, with room for other publishers on the same streams
HISTORY_ENTRIES: Final = {"kline": 1000, "order": 200, "bot_state": 200}
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
    # per symbol the current 1m bar: open_time (ms), path (prices: first = open, last = close),
    # volume, closed
    minute: dict[str, dict[str, Any]] = field(default_factory=dict)

    def tick(self, second_ms: int) -> list[dict[str, Any]]:
        """Advance one second: a closed 1s kline per symbol and the live 1m kline (after the
        previous 1m kline, closed, when it was left open: a skipped last second, or a stop)."""
        out = []
        for symbol, price in self.prices.items():
            path = [price]
            for _ in range(4):
                step = Decimal(self.rng.gauss(0, 0.0004)) * path[-1]
                path.append(max(CENT, (path[-1] + step).quantize(CENT, ROUND_HALF_EVEN)))
            self.prices[symbol] = path[-1]
            volume = Decimal(self.rng.randint(1, 5000)) / 1000
            out.append(self._kline(symbol, "1s", second_ms, path, volume, closed=True))
            out += self._minute(symbol, second_ms, path, volume)
        return out

    def _minute(
        self, symbol: str, second_ms: int, path: list[Decimal], volume: Decimal
    ) -> list[dict[str, Any]]:
        start_ms = second_ms - second_ms % 60_000
        out = []
        bar = self.minute.get(symbol)
        if bar is not None and bar["open_time"] != start_ms:
            if not bar["closed"]:
                out.append(self._kline(symbol, "1m", bar["open_time"], bar["path"], bar["volume"], True))
            bar = None
        if bar is None:
            bar = {"open_time": start_ms, "path": [path[0]], "volume": Decimal(0), "closed": False}
            self.minute[symbol] = bar
        bar["path"] += path[1:]
        bar["volume"] += volume
        bar["closed"] = second_ms + 1000 - start_ms >= 60_000
        out.append(self._kline(symbol, "1m", start_ms, bar["path"], bar["volume"], bar["closed"]))
        return out

    def resume(self, klines: list[dict[str, Any]]) -> None:
        """Continue from the demo's klines, newest first: the last close per symbol, and the
        1m bar if its last message left it open."""
        for symbol in self.prices:
            mine = [k for k in klines if k.get("exchange") == EXCHANGE and k.get("symbol") == symbol]
            if mine:
                self.prices[symbol] = Decimal(mine[0]["close"])
            bar = next((k for k in mine if k.get("interval") == "1m"), None)
            if bar is not None and not bar.get("closed", True):
                path = [Decimal(bar[key]) for key in ("open", "high", "low", "close")]
                self.minute[symbol] = {
                    "open_time": int(bar["open_time"]), "path": path,
                    "volume": Decimal(bar["volume"]), "closed": False,
                }  # fmt: skip

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

    def resume(self, orders: list[dict[str, Any]], states: list[dict[str, Any]]) -> None:
        """Continue from the bot's messages, newest first: position, cash and counters from its
        last state; its last order, if that was still open, is its open order again."""
        state = next((m["state"] for m in states if m.get("bot_id") == BOT_ID), None)
        if state is not None:
            self.position, self.cash = Decimal(state["position"]), Decimal(state["cash"])
            self.orders_placed, self.fills = int(state["orders_placed"]), int(state["fills"])
        order = next((m for m in orders if m.get("bot_id") == BOT_ID), None)
        if order is not None and order["status"] in OPEN_STATUSES:
            self.order = {k: v for k, v in order.items() if k != "kind"}

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


class Channel(Protocol):
    """Where the demo publishes and what it reads back on start (RedisChannel here; the Kafka
    one is in demo_command.py)."""

    async def history(self, kind: str) -> list[dict[str, Any]]:
        """The newest `HISTORY_ENTRIES[kind]` messages of `kind`, newest first; entries that
        are not JSON objects of that kind (other publishers) are skipped."""
        ...

    async def publish(self, messages: list[tuple[str, dict[str, Any]]]) -> None:
        """Send (kind, message) pairs, in order, to each kind's stream or topic."""
        ...


def parsed(payloads: Sequence[bytes | str], kind: str) -> list[dict[str, Any]]:
    """The payloads that are JSON objects of `kind` (a missing `kind` field counts as it)."""
    out = []
    for payload in payloads:
        try:
            message = json.loads(payload)
        except ValueError:
            continue
        if isinstance(message, dict) and message.get("kind", kind) == kind:
            out.append(message)
    return out


@dataclass
class RedisChannel:
    """Redis streams: XADD with the message's JSON in the field `data`; history by XREVRANGE."""

    redis: aioredis.Redis
    streams: dict[str, str]

    async def history(self, kind: str) -> list[dict[str, Any]]:
        entries = await self.redis.xrevrange(self.streams[kind], count=HISTORY_ENTRIES[kind]) or []
        return parsed([(fields or {}).get(b"data", b"") for _, fields in entries], kind)

    async def publish(self, messages: list[tuple[str, dict[str, Any]]]) -> None:
        async with self.redis.pipeline(transaction=False) as pipe:
            for kind, message in messages:
                pipe.xadd(self.streams[kind], {"data": json.dumps({"kind": kind, **message})})
            await pipe.execute()


async def resumed(channel: Channel, rng: random.Random) -> tuple[Market, GridBot]:
    """The market and bot where the last run left them (fresh ones on a first run)."""
    market, bot = Market(rng), GridBot(rng)
    klines, orders, states = [await channel.history(kind) for kind in ("kline", "order", "bot_state")]
    try:
        market.resume(klines)
        bot.resume(orders, states)
    except (ArithmeticError, KeyError, TypeError, ValueError) as exc:  # not the demo's own messages
        log.warning("demo history not usable (%s: %s); starting afresh", type(exc).__name__, exc)
        return Market(rng), GridBot(rng)
    if klines:
        log.info("demo market continues from %d klines, open order %s", len(klines), bot.order is not None)
    return market, bot


async def run(
    redis: aioredis.Redis, streams: dict[str, str], stop: asyncio.Event, seed: int | None = None
) -> None:
    """Publish to Redis `streams` (kind → stream) until `stop`; see `publish_until`."""
    log.info("demo market publishing to %s", ", ".join(sorted(set(streams.values()))))
    await publish_until(RedisChannel(redis, streams), stop, seed)


async def publish_until(channel: Channel, stop: asyncio.Event, seed: int | None = None) -> None:
    """Publish one second of market, bot orders/fills and bot state per second until `stop`."""
    market, bot = await resumed(channel, random.Random(seed))
    last_second_ms = -1
    while not stop.is_set():
        now_ms = int(time.time() * 1000)
        second_ms = now_ms - now_ms % 1000 - 1000  # the second that just ended
        if second_ms != last_second_ms:  # a timer firing early must not tick a second twice
            await channel.publish(_second(market, bot, second_ms, now_ms))
            last_second_ms = second_ms
        # wake just after the next second starts, so that no second is skipped by drift
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 1.05 - time.time() % 1.0)


def _second(market: Market, bot: GridBot, second_ms: int, now_ms: int) -> list[tuple[str, dict[str, Any]]]:
    klines = market.tick(second_ms)
    orders, fills = bot.step(market.prices[bot.symbol], now_ms)
    states = [bot.snapshot(now_ms, market.prices[bot.symbol])]
    return [
        (kind, message)
        for kind, messages in (("kline", klines), ("order", orders), ("fill", fills), ("bot_state", states))
        for message in messages
    ]
