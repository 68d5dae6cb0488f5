"""The demo market continues from its own last messages, and closes what a stop left open."""

from __future__ import annotations

import random
from decimal import Decimal
from typing import Any

from tickvault.demo import BOT_ID, EXCHANGE, GridBot, Market

MINUTE_MS = 1_796_000_040_000  # a minute boundary
T0 = MINUTE_MS + 25_000


def kline(symbol: str, interval: str, open_ms: int, ohlc: str, closed: bool, **extra: Any) -> dict[str, Any]:
    o, h, low, c = ohlc.split()
    return {
        "kind": "kline", "exchange": EXCHANGE, "symbol": symbol, "interval": interval,
        "open_time": open_ms, "open": o, "high": h, "low": low, "close": c, "volume": "1.5",
        "closed": closed, **extra,
    }  # fmt: skip


def stopped_market() -> list[dict[str, Any]]:
    """What the demo last published before a stop, newest first (as XREVRANGE returns it)."""
    return [
        kline("ETHUSDT", "1m", MINUTE_MS, "3100.00 3110.00 3090.00 3105.55", closed=False),
        kline("ETHUSDT", "1s", T0, "3104.00 3106.00 3104.00 3105.55", closed=True),
        kline("BTCUSDT", "1m", MINUTE_MS, "87000.00 87200.00 86900.00 87123.45", closed=False),
        kline("BTCUSDT", "1s", T0, "87100.00 87130.00 87090.00 87123.45", closed=True),
        kline("BTCUSDT", "1s", T0 - 1000, "87000.00 87100.00 87000.00 87100.00", closed=True),
        {**kline("BTCUSDT", "1s", T0, "1.00 1.00 1.00 1.00", closed=True), "exchange": "other"},
    ]


def test_prices_continue_from_the_last_close() -> None:
    market = Market(random.Random(1))
    market.resume(stopped_market())
    assert market.prices == {
        "BTCUSDT": Decimal("87123.45"),
        "ETHUSDT": Decimal("3105.55"),
        "SOLUSDT": Decimal("145.00"),
    }
    first = {(k["symbol"], k["interval"]): k for k in market.tick(T0 + 1000)}
    assert first["BTCUSDT", "1s"]["open"] == "87123.45"
    assert first["ETHUSDT", "1s"]["open"] == "3105.55"
    assert first["SOLUSDT", "1s"]["open"] == "145.00"  # never published: its start price


def test_a_1m_candle_left_open_in_an_earlier_minute_is_published_closed_with_the_same_values() -> None:
    market = Market(random.Random(1))
    market.resume(stopped_market())
    later = MINUTE_MS + 5 * 60_000 + 7000
    out = [k for k in market.tick(later) if k["symbol"] == "BTCUSDT" and k["interval"] == "1m"]
    assert len(out) == 2
    left_open, current = out
    assert left_open == {
        "exchange": EXCHANGE, "symbol": "BTCUSDT", "interval": "1m", "open_time": MINUTE_MS,
        "open": "87000.00", "high": "87200.00", "low": "86900.00", "close": "87123.45",
        "volume": "1.5", "closed": True,
    }  # fmt: skip
    assert current["open_time"] == later - 7000
    assert current["open"] == "87123.45"
    assert current["closed"] is False
    # published once: the next second only updates the current bar
    assert [k["open_time"] for k in market.tick(later + 1000) if k["interval"] == "1m"] == [later - 7000] * 3


def test_a_1m_candle_of_the_current_minute_continues() -> None:
    market = Market(random.Random(1))
    market.resume(stopped_market())
    [bar] = [k for k in market.tick(T0 + 3000) if k["symbol"] == "BTCUSDT" and k["interval"] == "1m"]
    assert bar["open_time"] == MINUTE_MS
    assert bar["open"] == "87000.00"
    assert Decimal(bar["high"]) >= Decimal("87200.00")
    assert Decimal(bar["low"]) <= Decimal("86900.00")
    assert Decimal(bar["volume"]) > Decimal("1.5")


def test_a_bar_whose_last_second_was_skipped_is_closed_by_the_next_minute() -> None:
    market = Market(random.Random(1))
    market.tick(MINUTE_MS + 57_000)  # second 58 and 59 never ticked
    bars = [k for k in market.tick(MINUTE_MS + 60_000) if k["symbol"] == "SOLUSDT" and k["interval"] == "1m"]
    assert [(k["open_time"], k["closed"]) for k in bars] == [(MINUTE_MS, True), (MINUTE_MS + 60_000, False)]


def order(status: str, filled: str, seq: int, bot_id: str = BOT_ID) -> dict[str, Any]:
    return {
        "kind": "order", "order_id": f"{bot_id}-1", "client_order_id": "grid-7", "exchange": EXCHANGE,
        "symbol": "BTCUSDT", "side": "buy", "type": "limit", "status": status, "quantity": "0.005",
        "price": "86900.00", "filled_quantity": filled, "bot_id": bot_id, "strategy": "grid",
        "created_at": T0 - 5000, "updated_at": T0, "seq": seq,
    }  # fmt: skip


STATE = {
    "kind": "bot_state", "bot_id": BOT_ID, "ts": T0, "seq": T0,
    "state": {
        "symbol": "BTCUSDT", "position": "0.012", "cash": "98957.40", "equity": "100000.00",
        "open_order": f"{BOT_ID}-1", "orders_placed": 7, "fills": 19,
    },
}  # fmt: skip


def test_the_bot_resumes_its_state_and_its_partially_filled_order_until_it_ends() -> None:
    bot = GridBot(random.Random(3))
    newest_first = [order("partially_filled", "0.002", 4), order("new", "0", 0, bot_id="someone-else")]
    bot.resume(newest_first, [STATE])
    assert (bot.position, bot.cash, bot.orders_placed, bot.fills) == (
        Decimal("0.012"),
        Decimal("98957.40"),
        7,
        19,
    )
    assert bot.order is not None
    assert "kind" not in bot.order
    updates: list[dict[str, Any]] = []
    fills: list[dict[str, Any]] = []
    now_ms = T0 + 1000
    while bot.order is not None and now_ms < T0 + 60_000:
        step_orders, step_fills = bot.step(Decimal("86950.00"), now_ms)
        updates += step_orders
        fills += step_fills
        now_ms += 1000
    assert bot.order is None
    assert {u["order_id"] for u in updates} == {f"{BOT_ID}-1"}
    assert [u["seq"] for u in updates] == list(range(5, 5 + len(updates)))
    assert updates[-1]["status"] in ("filled", "canceled")
    assert fills  # seed 3 fills it: fill ids go on from the stored counter, none repeats an earlier one
    assert fills[0]["fill_id"] == f"{BOT_ID}-1-20"
    assert Decimal(updates[-1]["filled_quantity"]) == Decimal("0.002") + sum(
        Decimal(f["quantity"]) for f in fills
    )


def test_a_finished_order_is_not_resumed() -> None:
    for status in ("filled", "canceled"):
        bot = GridBot(random.Random(3))
        bot.resume([order(status, "0.005", 6)], [STATE])
        assert bot.order is None
        [placed], [] = bot.step(Decimal("87000.00"), T0 + 1000)
        assert placed["client_order_id"] == "grid-8"


def test_a_first_run_starts_fresh() -> None:
    market, bot = Market(random.Random(1)), GridBot(random.Random(1))
    market.resume([])
    bot.resume([], [])
    assert market.prices["BTCUSDT"] == Decimal("87000.00")
    assert market.minute == {}
    assert (bot.position, bot.cash, bot.order, bot.orders_placed) == (
        Decimal(0),
        Decimal("100000.00"),
        None,
        0,
    )
