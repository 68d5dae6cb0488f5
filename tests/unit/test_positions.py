"""Positions, realized PnL and the trading summary computed from fills (tickvault.trading):
pure, exact, independent of the order fills come in."""

from __future__ import annotations

import random
from decimal import Context, Decimal, localcontext
from typing import Any

import pyarrow as pa
import pytest

from tests.trading_example import (
    ALL_SUMMARY,
    BTC_BEFORE_F7,
    BTC_POSITION,
    BTC_SUMMARY,
    BTC_WINDOW_SUMMARY,
    ETH_POSITION,
    FILLS,
    btc_ms,
)
from tickvault.trading import positions, summary
from tickvault.trading.book import Book, divide
from tickvault.trading.command import summary_row

D = Decimal
DEC = pa.decimal128(38, 18)


def table_of(messages: list[dict[str, Any]]) -> pa.Table:
    """Fill messages as the fills table Vault.fills gives (times in ms → µs)."""
    columns: dict[str, list[Any]] = {c: [] for c in positions.FILL_COLUMNS}
    for m in messages:
        for c in positions.FILL_COLUMNS:
            value = m.get(c)
            columns[c].append(D(value) if c in ("quantity", "price", "fee") else value)
    types = {"quantity": DEC, "price": DEC, "fee": DEC, "ts": pa.int64()}
    arrays = {c: pa.array(v, types.get(c, pa.string())) for c, v in columns.items()}
    arrays["ts"] = pa.compute.multiply(arrays["ts"], 1000).cast(pa.timestamp("us", tz="UTC"))
    return pa.table(arrays)


def fills_at(*specs: tuple[str, str, str]) -> pa.Table:
    """(side, quantity, price) fills of one symbol, one a second apart, no fees."""
    return table_of(
        [
            {"fill_id": f"x{i:03}", "exchange": "e", "symbol": "BTC-USDT", "side": side, "quantity": q,
             "price": p, "fee": "0", "ts": 1_000 * (i + 1), "bot_id": "b"}
            for i, (side, q, p) in enumerate(specs)
        ]
    )  # fmt: skip


def one(rows: pa.Table) -> dict[str, Any]:
    [row] = rows.to_pylist()
    return row


def test_the_hand_computed_example() -> None:
    rows = positions.table(table_of(FILLS))
    assert rows.schema == positions.SCHEMA
    assert rows.to_pylist() == [BTC_POSITION, ETH_POSITION]
    before_f7 = [m for m in FILLS if m["symbol"] == "BTCUSDT" and m["ts"] < btc_ms(7)]
    assert positions.table(table_of(before_f7)).to_pylist() == [BTC_BEFORE_F7]


def test_any_order_and_repeated_fills_give_the_same_result() -> None:
    want = positions.table(table_of(FILLS))
    shuffled = random.Random(7)
    for _ in range(20):
        messages = FILLS * 3  # each fill delivered three times
        shuffled.shuffle(messages)
        assert positions.table(table_of(messages)).equals(want)
    # the same fill_id again with a later ts (a second stored row) counts once, at its first ts
    late_copy = FILLS[3] | {"ts": FILLS[3]["ts"] + 1}
    assert positions.table(table_of([late_copy, *FILLS])).equals(want)


def test_equal_times_are_ordered_by_fill_id() -> None:
    # a sell then a buy at one instant: by fill_id "a" (sell 1 @ 10 from flat: short) before
    # "b" (buy 1 @ 12: closes the short at a loss of 2); the other way round it would be +2
    same = [
        {"fill_id": fid, "exchange": "e", "symbol": "S-Q", "side": side, "quantity": "1", "price": p,
         "fee": "0", "ts": 5, "bot_id": None}
        for fid, side, p in (("b", "buy", "12"), ("a", "sell", "10"))
    ]  # fmt: skip
    assert one(positions.table(table_of(same)))["realized_pnl"] == D(-2)


def test_exact_close_leaves_a_flat_position() -> None:
    row = one(positions.table(fills_at(("buy", "0.3", "100"), ("buy", "0.7", "101"), ("sell", "1", "102"))))
    assert row["quantity"] == 0 and row["average_price"] is None and row["opened_at"] is None
    assert row["realized_pnl"] == D("1.3")  # 102 - 100.7
    assert row["closed_at"] == row["last_fill_at"]


def test_short_first() -> None:
    row = one(positions.table(fills_at(("sell", "2", "50"), ("buy", "1", "40"), ("sell", "1", "60"))))
    # short 2 @ 50; buy 1 realizes 10; sell 1 @ 60 adds: short 2, cost 50 + 60, average 55
    assert (row["quantity"], row["average_price"], row["realized_pnl"]) == (D(-2), D(55), D(10))


def test_several_flips_and_their_round_trips() -> None:
    fills = fills_at(
        ("buy", "1", "10"),  # long 1 @ 10
        ("sell", "3", "12"),  # +2, flip: short 2 @ 12
        ("buy", "5", "9"),  # +6, flip: long 3 @ 9
        ("sell", "3", "9"),  # 0, flat
    )
    row = one(positions.table(fills))
    assert (row["quantity"], row["realized_pnl"], row["fills"]) == (D(0), D(8), 4)
    result = summary_row(summary.table(fills))
    assert (result["round_trips"], result["wins"], result["losses"]) == (3, 2, 0)  # a trip at 0 is neither
    assert result["win_rate"] == D("0.666666666666666667") and result["profit_factor"] is None
    assert result["average_win"] == D(4) and result["max_drawdown"] == D(0)


def test_a_flip_shares_its_fee_between_the_two_trips() -> None:
    book = Book()
    book.apply(True, D(1), D(10), D("0.01"), "USDT", True, 1)
    step = book.apply(False, D(3), D(10), D("0.1"), "USDT", True, 2)  # closes 1 of 3: fee 1/3 of 0.1
    assert step.trip is not None and step.trip.fees == D("0.01") + D("0.033333333333333333")
    closing = book.apply(True, D(2), D(10), D(0), "USDT", True, 3)
    assert closing.trip is not None and closing.trip.fees == D("0.066666666666666667")
    assert step.trip.fees + closing.trip.fees == D("0.11") and book.fees == D("0.11")


def test_a_rounded_average_still_closes_to_the_exact_pnl() -> None:
    fills = fills_at(("buy", "1", "1"), ("buy", "1", "1"), ("buy", "1", "2"), ("sell", "1", "2"))
    row = one(positions.table(fills))
    assert row["average_price"] == D("1.333333333333333333")  # 4 / 3, half even at 18 places
    assert row["realized_pnl"] == D("0.666666666666666667")
    closed = one(positions.table(fills_at(("buy", "1", "1"), ("buy", "1", "1"), ("buy", "1", "2"),
                                           ("sell", "1", "2"), ("sell", "2", "2"))))  # fmt: skip
    assert closed["realized_pnl"] == D(2)  # 6 - 4 exactly, whatever the average's rounding


def test_many_digits_stay_exact_and_values_beyond_the_output_type_fail_clearly() -> None:
    quantity, buy, sell = "1234567.123456789012345678", "98765432.123456789012345678", "98765433.5"
    row = one(positions.table(fills_at(("buy", quantity, buy), ("sell", quantity, sell))))
    with localcontext(Context(prec=100)):
        want = D(quantity) * (D(sell) - D(buy))  # 36 fractional digits
    assert row["realized_pnl"] == want.quantize(D("1E-18"))  # rounded once, to 18 places
    big = "12345678901234567890"
    with pytest.raises(ValueError, match="does not fit decimal"):
        positions.table(fills_at(("buy", big, big), ("sell", big, "0")))


def test_fee_assets_are_told_apart_by_the_symbol() -> None:
    for symbol, asset, quote in (
        ("BTCUSDT", "USDT", True), ("BTCUSDT", "usdt", True), ("BTCUSDT", "BTC", False),
        ("ETHBTC", "BTC", True), ("BTC-USDT", "USDT", True), ("BTC-USDT", "BTC", False),
        ("BTC/USDT:USDT", "USDT", True), ("BTC-USDT-SWAP", "USDT", True), ("BTCUSDT", "BNB", False),
        ("BTCUSDT", None, True), ("USDT", "USDT", False),
    ):  # fmt: skip
        assert positions.fee_in_quote(symbol, asset) is quote, (symbol, asset)


def test_divide_rounds_once_half_to_even() -> None:
    assert divide(D(4), D(3)) == D("1.333333333333333333")
    assert divide(D(2), D(3)) == D("0.666666666666666667")
    assert divide(D("5E-19"), D(1)) == D(0)  # a half at the 19th place: to even (0)
    assert divide(D("15E-19"), D(1)) == D("0.000000000000000002")
    with pytest.raises(ZeroDivisionError):
        divide(D(1), D(0))


def test_summary_of_the_example() -> None:
    btc = [m for m in FILLS if m["symbol"] == "BTCUSDT"]
    result = summary.table(table_of(btc))
    assert result.schema == summary.SCHEMA
    assert summary_row(result) == BTC_SUMMARY
    assert summary_row(summary.table(table_of(FILLS))) == ALL_SUMMARY
    window = [m for m in btc if m["ts"] < btc_ms(8)]  # end (exclusive) at f8
    assert summary_row(summary.table(table_of(window), btc_ms(5) * 1000)) == BTC_WINDOW_SUMMARY


def test_summary_of_nothing() -> None:
    row = summary_row(summary.table(table_of([])))
    assert row["fills"] == 0 and row["round_trips"] == 0 and row["realized_pnl"] == 0
    assert row["win_rate"] is None and row["max_drawdown"] == 0 and row["first_fill_at"] is None


def test_profit_factor_is_zero_with_losses_only() -> None:
    row = summary_row(summary.table(fills_at(("buy", "1", "10"), ("sell", "1", "9"))))
    assert (row["losses"], row["profit_factor"], row["average_loss"]) == (1, D(0), D(-1))
    assert row["max_drawdown"] == D(1) and row["win_rate"] == D(0)
