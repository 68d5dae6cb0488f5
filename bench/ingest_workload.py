"""The ingest bench's workload: N native messages (klines, fills, order lifecycles, public
trades) and the rows the daemon will store from them, prebuilt as tuples, with the check that
the prebuilt rows are what the codec makes of the payloads. No I/O.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import random
import uuid
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Final

from runner import BenchError
from tickvault.codecs import native

BATCH_ROWS: Final = 5000
N_SYMBOLS: Final = 500
BASE_MS: Final = 1_794_614_400_000  # 2026-11-14T00:00:00Z
EPOCH: Final = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
KINDS: Final = ("kline", "order", "fill", "bot_state", "trade")
DEFAULT_MIX: Final = (80, 15, 5, 0)  # percent of klines, fills, orders, trades
ORDER_STEPS: Final = (("new", 0), ("partially_filled", 1), ("filled", 2))  # (status, filled thirds)


Rows = dict[str, list[tuple[Any, ...]]]  # table → prebuilt rows


@dataclass
class Workload:
    payloads: dict[str, list[bytes]] = field(default_factory=lambda: {k: [] for k in KINDS})
    kline_rows: list[tuple[Any, ...]] = field(default_factory=list)  # Kline.COLUMNS order
    trade_rows: list[tuple[Any, ...]] = field(default_factory=list)  # Trade.COLUMNS order
    order_ids: int = 0
    orders_filled: int = 0

    @property
    def total(self) -> int:
        return sum(len(p) for p in self.payloads.values())


def _ts(ms: int) -> dt.datetime:
    return EPOCH + dt.timedelta(milliseconds=ms)


def _fixed(units: int, places: int) -> str:
    """An exact decimal string from an integer count of 10**-places."""
    return f"{units // 10**places}.{units % 10**places:0{places}d}"


def _dumps(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def _kline(i: int, rng: random.Random) -> tuple[bytes, tuple[Any, ...]]:
    symbol, open_ms = f"S{i % N_SYMBOLS:03d}USDT", BASE_MS + (i // N_SYMBOLS) * 60_000
    open_c = rng.randint(1_000, 10_000_000)  # cents
    close_c = open_c + rng.randint(-open_c // 100, open_c // 100)
    high_c = max(open_c, close_c) + rng.randint(0, open_c // 200)
    low_c = min(open_c, close_c) - rng.randint(0, open_c // 200)
    volume_m = rng.randint(1, 10_000_000)  # thousandths
    prices = [_fixed(c, 2) for c in (open_c, high_c, low_c, close_c)]
    volume, quote = _fixed(volume_m, 3), _fixed(volume_m * close_c, 5)
    trades = rng.randint(1, 5000)
    message = {
        "exchange": "binance", "symbol": symbol, "interval": "1m", "open_time": open_ms,
        "close_time": open_ms + 59_999, "open": prices[0], "high": prices[1], "low": prices[2],
        "close": prices[3], "volume": volume, "quote_volume": quote, "trades": trades, "closed": True,
    }  # fmt: skip
    row = (
        "binance", symbol, "1m", _ts(open_ms), _ts(open_ms + 59_999),
        *(Decimal(p) for p in prices), Decimal(volume), Decimal(quote), trades, True,
    )  # fmt: skip
    return _dumps(message), row


def _fill(i: int, rng: random.Random) -> bytes:
    qty_m, price_c = rng.randint(1, 1_000_000), rng.randint(1_000, 10_000_000)
    return _dumps({
        "fill_id": f"f{i}", "order_id": f"o{rng.randint(0, 10**9)}", "exchange": "binance",
        "symbol": f"S{i % N_SYMBOLS:03d}USDT", "side": rng.choice(("buy", "sell")),
        "quantity": _fixed(qty_m, 3), "price": _fixed(price_c, 2),
        "fee": _fixed(qty_m * 10, 7), "fee_asset": "USDT", "liquidity": rng.choice(("maker", "taker")),
        "bot_id": f"bot-{i % 20}", "strategy": "grid", "ts": BASE_MS + i * 10,
    })  # fmt: skip


def _trade(i: int, rng: random.Random) -> tuple[bytes, tuple[Any, ...]]:
    """A public trade as an exchange feed publishes it: ids rising per symbol, about 4 trades
    per millisecond over all symbols, the taker side, the quote quantity on 4 of 5."""
    symbol, ts_ms = f"S{i % N_SYMBOLS:03d}USDT", BASE_MS + i // 4
    price_c, qty_m = rng.randint(1_000, 10_000_000), rng.randint(1, 5_000_000)  # cents, 1e-5
    price, quantity = _fixed(price_c, 2), _fixed(qty_m, 5)
    side = rng.choice(("buy", "sell"))
    quote = _fixed(price_c * qty_m, 7) if i % 5 else None
    message = {
        "exchange": "binance", "symbol": symbol, "trade_id": str(i), "price": price,
        "quantity": quantity, "side": side, "ts": ts_ms,
    }  # fmt: skip
    if quote is not None:
        message["quote_quantity"] = quote
    row = (
        "binance", symbol, str(i), Decimal(price), Decimal(quantity), side,
        None if quote is None else Decimal(quote), _ts(ts_ms),
    )  # fmt: skip
    return _dumps(message), row


def _order(j: int, rng: random.Random) -> bytes:
    order, step = divmod(j, len(ORDER_STEPS))
    status, thirds = ORDER_STEPS[step]
    qty_m = 3_000 * (1 + order % 50)  # divisible by 3 thousandths
    created_ms = BASE_MS + order * 1_000
    return _dumps({
        "order_id": f"o{order}", "client_order_id": f"c{order}", "exchange": "binance",
        "symbol": f"S{order % N_SYMBOLS:03d}USDT", "side": "buy" if order % 2 else "sell",
        "type": "limit", "status": status, "quantity": _fixed(qty_m, 3),
        "price": _fixed(rng.randint(1_000, 10_000_000), 2),
        "filled_quantity": _fixed(qty_m * thirds // 3, 3), "bot_id": f"bot-{order % 20}",
        "strategy": "grid", "created_at": _ts(created_ms).isoformat(),
        "updated_at": _ts(created_ms + 100 * step).isoformat(), "seq": step,
    })  # fmt: skip


def build_workload(
    n: int, seed: int, offset: int = 0, mix: tuple[int, int, int, int] = DEFAULT_MIX
) -> Workload:
    """N messages, `mix` percent klines / fills / orders / trades; `offset` shifts every key,
    so two workloads never share one."""
    rng = random.Random(seed + offset)
    n_klines, n_fills, n_trades = (round(n * share / 100) for share in (mix[0], mix[1], mix[3]))
    n_orders = n - n_klines - n_fills - n_trades
    w = Workload()
    for i in range(offset, offset + n_klines):
        payload, row = _kline(i, rng)
        w.payloads["kline"].append(payload)
        w.kline_rows.append(row)
    w.payloads["fill"] = [_fill(i, rng) for i in range(offset, offset + n_fills)]
    for i in range(offset, offset + n_trades):
        payload, row = _trade(i, rng)
        w.payloads["trade"].append(payload)
        w.trade_rows.append(row)
    first_order = len(ORDER_STEPS) * offset
    w.payloads["order"] = [_order(j, rng) for j in range(first_order, first_order + n_orders)]
    w.order_ids = -(-n_orders // len(ORDER_STEPS))
    w.orders_filled = n_orders // len(ORDER_STEPS)
    _check_rows(w)
    return w


def table_rows(w: Workload) -> dict[str, list[tuple[Any, ...]]]:
    """Every row the daemon will store, prebuilt as tuples per table (decoded by the models,
    outside any timing): the input of the raw-COPY limit."""
    fills = [native.decode(p, "fill").row() for p in w.payloads["fill"]]
    orders = [native.decode(p, "order") for p in w.payloads["order"]]
    events = [(*o.row(), _event_hash(o.row())) for o in orders]
    last = {(o.exchange, o.order_id): o for o in orders}
    current = [o.row() for o in last.values()]  # one row per order, as the daemon stores
    tables = {"klines": w.kline_rows, "fills": fills, "order_events": events, "orders": current}
    return tables | {"trades": w.trade_rows} if w.trade_rows else tables


def _event_hash(row: tuple[Any, ...]) -> uuid.UUID:
    return uuid.UUID(bytes=hashlib.md5(repr(row).encode()).digest())  # a key, not security


def _check_rows(w: Workload) -> None:
    """The prebuilt tuples must be exactly what the codec makes of the payloads."""
    for kind, rows in (("kline", w.kline_rows), ("trade", w.trade_rows)):
        for payload, row in zip(w.payloads[kind][:200], rows[:200], strict=False):
            decoded = native.decode(payload, kind).row()
            if decoded != row:
                raise BenchError(f"workload bug: prebuilt row {row} != decoded {decoded}")
