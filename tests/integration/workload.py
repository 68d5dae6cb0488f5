"""Deterministic mixed workloads with unique keys, as raw JSON text (decimals written as
exact JSON number literals or strings), plus the rows they must produce."""

from __future__ import annotations

import datetime as dt
import random
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

T0_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z
EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def ts(ms: int) -> dt.datetime:
    return EPOCH + dt.timedelta(milliseconds=ms)


def _price(rng: random.Random) -> Decimal:
    return Decimal(rng.randrange(1, 10**12)) / Decimal(10**8)


@dataclass
class Workload:
    payloads: dict[str, list[str]] = field(default_factory=dict)
    expected: dict[str, dict[tuple[Any, ...], dict[str, Any]]] = field(default_factory=dict)

    def total(self) -> int:
        return sum(len(p) for p in self.payloads.values())


def build(klines: int, orders: int, fills: int, states: int, seed: int = 7) -> Workload:
    rng = random.Random(seed)
    w = Workload(payloads={k: [] for k in ("kline", "order", "fill", "bot_state")})
    w.expected = {k: {} for k in w.payloads}
    for i in range(klines):
        symbol, minute = f"SYM{i % 500}", i // 500
        low = _price(rng)
        high = low + _price(rng)
        open_, close = low + (high - low) / 4, high - (high - low) / 3
        # at the limits of decimal(38, 18), the cold tier's type that ingest enforces
        open_, close = open_.quantize(Decimal("1E-18")), close.quantize(Decimal("1E-18"))
        volume = Decimal(f"{rng.randrange(10**20)}.{rng.randrange(10**9):09d}")
        open_ms = T0_MS + minute * 60_000
        row = {
            "exchange": "binance", "symbol": symbol, "interval": "1m", "open_time": ts(open_ms),
            "close_time": ts(open_ms + 59_999), "open": open_, "high": high, "low": low,
            "close": close, "volume": volume, "quote_volume": None, "trades": i, "closed": True,
        }  # fmt: skip
        w.expected["kline"][("binance", symbol, "1m", ts(open_ms))] = row
        # numbers as bare JSON literals for half the fields, strings for the rest
        w.payloads["kline"].append(
            f'{{"exchange":"binance","symbol":"{symbol}","interval":"1m","open_time":{open_ms},'
            f'"close_time":{open_ms + 59_999},"open":{open_},"high":"{high}","low":{low},'
            f'"close":"{close}","volume":{volume},"trades":{i},"extra":"ignored"}}'
        )
    for i in range(orders):
        qty = Decimal(rng.randrange(1, 10**6)) / 1000
        price = _price(rng)
        updated_ms = T0_MS + i * 17
        row = {
            "order_id": f"o{i}", "client_order_id": f"c{i}", "exchange": "bybit",
            "symbol": f"SYM{i % 50}", "side": "buy" if i % 2 else "sell", "type": "limit",
            "status": "new", "quantity": qty, "price": price, "stop_price": None,
            "filled_quantity": Decimal(0), "avg_fill_price": None, "bot_id": f"bot{i % 7}",
            "strategy": "grid", "created_at": ts(updated_ms), "updated_at": ts(updated_ms), "seq": 1,
        }  # fmt: skip
        w.expected["order"][("bybit", f"o{i}")] = row
        w.payloads["order"].append(
            f'{{"order_id":"o{i}","client_order_id":"c{i}","exchange":"bybit","symbol":"SYM{i % 50}",'
            f'"side":"{row["side"].upper()}","type":"limit","status":"new","quantity":"{qty}",'
            f'"price":{price},"bot_id":"bot{i % 7}","strategy":"grid",'
            f'"created_at":"{ts(updated_ms).isoformat()}","updated_at":{updated_ms},"seq":1}}'
        )
    for i in range(fills):
        qty, price, fee = Decimal(rng.randrange(1, 10**6)) / 1000, _price(rng), -Decimal(i) / 10**9
        fill_ms = T0_MS + i * 11
        row = {
            "fill_id": f"f{i}", "order_id": f"o{i % max(orders, 1)}", "exchange": "bybit",
            "symbol": f"SYM{i % 50}", "side": "sell", "quantity": qty, "price": price, "fee": fee,
            "fee_asset": "USDT", "liquidity": "taker", "bot_id": None, "strategy": None,
            "ts": ts(fill_ms),
        }  # fmt: skip
        w.expected["fill"][("bybit", f"SYM{i % 50}", f"f{i}")] = row
        w.payloads["fill"].append(
            f'{{"fill_id":"f{i}","order_id":"o{i % max(orders, 1)}","exchange":"bybit",'
            f'"symbol":"SYM{i % 50}","side":"sell","quantity":{qty},"price":"{price}","fee":{fee},'
            f'"fee_asset":"USDT","liquidity":"TAKER","ts":"{ts(fill_ms).isoformat()}"}}'
        )
    for i in range(states):
        value = _price(rng)
        w.expected["bot_state"][(f"bot-{i}",)] = {
            "bot_id": f"bot-{i}", "ts": ts(T0_MS + i), "seq": i,
            "state": {"position": value, "levels": [1, Decimal("2.50")], "on": True},
        }  # fmt: skip
        w.payloads["bot_state"].append(
            f'{{"bot_id":"bot-{i}","ts":{T0_MS + i},"seq":{i},'
            f'"state":{{"position":{value},"levels":[1,2.50],"on":true}}}}'
        )
    return w


KEYS = {
    "kline": ("klines", ("exchange", "symbol", "interval", "open_time")),
    "order": ("orders", ("exchange", "order_id")),
    "fill": ("fills", ("exchange", "symbol", "fill_id")),
    "bot_state": ("bot_state", ("bot_id",)),
}
