"""Every validation rule of the native message format, through `native.decode`.

Payloads are written as raw JSON text (never `json.dumps` of floats) so that what the
decoder sees is exactly what a producer would publish.
"""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal
from typing import Any

import pytest

from tickvault.codecs.native import decode
from tickvault.errors import RecordError
from tickvault.record_schemas import EXAMPLES
from tickvault.records import (
    INTERVALS,
    RECORD_TYPES,
    BotState,
    Fill,
    Kline,
    Order,
    Record,
    dump_json,
)

DROP = object()  # marks a field to remove from a base payload

# Base payloads as field → raw JSON text.
KLINE: dict[str, str] = {
    "exchange": '"binance"',
    "symbol": '"BTCUSDT"',
    "interval": '"1m"',
    "open_time": "1767225600000",
    "open": '"100"',
    "high": '"110"',
    "low": '"90"',
    "close": '"105"',
    "volume": '"12.5"',
}
ORDER: dict[str, str] = {
    "order_id": '"o-1"',
    "exchange": '"binance"',
    "symbol": '"BTCUSDT"',
    "side": '"buy"',
    "type": '"market"',
    "status": '"new"',
    "quantity": '"1.5"',
    "updated_at": "1767225600000",
}
FILL: dict[str, str] = {
    "fill_id": '"f-1"',
    "order_id": '"o-1"',
    "exchange": '"binance"',
    "symbol": '"BTCUSDT"',
    "side": '"sell"',
    "quantity": '"0.5"',
    "price": '"100"',
    "ts": "1767225600000",
}
BOT_STATE: dict[str, str] = {
    "bot_id": '"grid-1"',
    "ts": "1767225600000",
    "state": '{"position": "0.5"}',
}
TRADE: dict[str, str] = {
    "exchange": '"binance"',
    "symbol": '"BTCUSDT"',
    "trade_id": '"t-1"',
    "price": '"100"',
    "quantity": '"0.5"',
    "ts": "1767225600000",
}
BASES = {"kline": KLINE, "order": ORDER, "fill": FILL, "bot_state": BOT_STATE, "trade": TRADE}


def raw(base: dict[str, str], **changes: Any) -> bytes:
    """A JSON object from raw field texts, with `changes` replacing (or DROP removing) fields."""
    fields = {**base, **changes}
    body = ", ".join(f"{json.dumps(k)}: {v}" for k, v in fields.items() if v is not DROP)
    return ("{" + body + "}").encode()


def ok(kind: str, **changes: Any) -> Any:
    return decode(raw(BASES[kind], **changes), kind)


def rejected(kind: str, **changes: Any) -> RecordError:
    with pytest.raises(RecordError) as info:
        decode(raw(BASES[kind], **changes), kind)
    return info.value


def utc(*args: int) -> dt.datetime:
    return dt.datetime(*args, tzinfo=dt.UTC)


# --- valid messages -------------------------------------------------------------------


@pytest.mark.parametrize("kind", sorted(EXAMPLES))
def test_each_example_decodes_to_its_kind(kind: str) -> None:
    record = decode(json.dumps(EXAMPLES[kind]).encode(), kind)
    assert type(record) is RECORD_TYPES[kind]
    assert kind == record.KIND


def test_kline_example_values() -> None:
    record = decode(json.dumps(EXAMPLES["kline"]).encode(), "kline")
    assert isinstance(record, Kline)
    assert record.open == Decimal("87012.50")
    assert str(record.open) == "87012.50"  # trailing zero kept: the exact decimal
    assert record.open_time == utc(2026, 1, 1)
    assert record.close_time == utc(2026, 1, 1, 0, 0, 59, 999000)
    assert record.trades == 842
    assert record.closed is True


def test_optional_fields_take_their_defaults() -> None:
    kline = ok("kline")
    assert (kline.close_time, kline.quote_volume, kline.trades, kline.closed) == (
        None,
        None,
        None,
        True,
    )
    order = ok("order")
    assert order.filled_quantity == Decimal(0)
    assert (order.price, order.stop_price, order.seq, order.created_at) == (None, None, None, None)
    fill = ok("fill")
    assert fill.fee == Decimal(0)
    assert (fill.fee_asset, fill.liquidity) == (None, None)


def test_closed_false_is_kept() -> None:
    assert ok("kline", closed="false").closed is False


# --- decimals -------------------------------------------------------------------------


def test_json_number_with_many_digits_is_exact() -> None:
    record = ok("kline", volume="12345678901234567890.123456789")
    assert record.volume == Decimal("12345678901234567890.123456789")
    assert str(record.volume) == "12345678901234567890.123456789"


def test_json_string_with_many_digits_is_exact() -> None:
    record = ok("kline", volume='"12345678901234567890.123456789"')
    assert str(record.volume) == "12345678901234567890.123456789"


def test_json_number_that_a_float_would_round_is_exact() -> None:
    record = ok("fill", price="0.1", quantity="0.30000000000000001")
    assert record.price == Decimal("0.1")
    assert record.quantity == Decimal("0.30000000000000001")


def test_large_json_integer_is_exact() -> None:
    record = ok("kline", volume="12345678901234567890")  # 20 digits: the most decimal(38, 18) holds
    assert record.volume == Decimal("12345678901234567890")


@pytest.mark.parametrize(
    "text",
    ["123456789012345678901", '"100000000000000000000"', '"0.0000000000000000001"', "1e20", '"1.5e-19"'],
)
def test_decimal_the_cold_type_cannot_hold_is_rejected_naming_field_and_limit(text: str) -> None:
    # every accepted row must be able to roll to the cold tier's decimal(38, 18)
    error = rejected("fill", price=text)
    assert error.category == "invalid"
    assert "price" in error.reason
    assert "decimal(38, 18)" in error.reason and "20 integer and 18 fractional digits" in error.reason


@pytest.mark.parametrize(
    "text",
    ['"99999999999999999999.999999999999999999"', '"0.000000000000000001"', '"1.5' + "0" * 30 + '"', "1e19"],
)
def test_decimal_at_the_cold_limits_is_accepted_exactly(text: str) -> None:
    assert ok("fill", price=text).price == Decimal(json.loads(text) if text.startswith('"') else text)


def test_exponent_notation_is_accepted() -> None:
    assert ok("kline", volume="1.5e3").volume == Decimal("1500")
    assert ok("kline", volume='"1.5E-3"').volume == Decimal("0.0015")


def test_decimal_string_surrounding_whitespace_is_ignored() -> None:
    assert ok("kline", volume='" 7.25 "').volume == Decimal("7.25")


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity"])
def test_non_finite_json_literal_is_rejected(literal: str) -> None:
    error = rejected("kline", volume=literal)
    assert error.category == "invalid_json"
    assert literal in error.reason


@pytest.mark.parametrize("text", ["NaN", "nan", "Infinity", "-Infinity", "inf", "sNaN"])
def test_non_finite_string_is_rejected(text: str) -> None:
    error = rejected("kline", volume=f'"{text}"')
    assert error.category == "invalid"
    assert "volume" in error.reason
    assert "finite" in error.reason


@pytest.mark.parametrize("text", ['""', '"abc"', '"1.2.3"', '"   "', "null", "[1]", '{"v": 1}'])
def test_non_numeric_decimal_is_rejected(text: str) -> None:
    error = rejected("kline", volume=text)
    assert error.category == "invalid"
    assert "volume" in error.reason


@pytest.mark.parametrize(
    ("kind", "field"),
    [
        ("kline", "open"),
        ("kline", "volume"),
        ("order", "quantity"),
        ("fill", "price"),
        ("fill", "fee"),
    ],
)
@pytest.mark.parametrize("literal", ["true", "false"])
def test_boolean_where_number_expected_is_rejected(kind: str, field: str, literal: str) -> None:
    error = rejected(kind, **{field: literal})
    assert error.category == "invalid"
    assert field in error.reason


def test_boolean_trades_is_rejected() -> None:
    assert "trades" in rejected("kline", trades="true").reason


def test_fractional_trades_is_rejected() -> None:
    assert "trades" in rejected("kline", trades="5.5").reason


@pytest.mark.parametrize("text", ["1_000", "\u0661\u0662"])
def test_decimal_string_outside_the_published_pattern_is_rejected(text: str) -> None:
    # schemas/*.schema.json publish the pattern ^\s*[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?\s*$
    # (ASCII digits, no separators); the decoder must not accept more than it publishes.
    error = rejected("kline", volume=json.dumps(text))
    assert "volume" in error.reason


@pytest.mark.parametrize("text", ["1e999999999", '"1e999999999"', "1e-20000", '"-1E-999999"'])
def test_finite_decimal_that_no_numeric_column_can_hold_is_rejected(text: str) -> None:
    # PostgreSQL numeric (and asyncpg's encoder, which raises a bare ValueError) stop at a
    # weight of 2**16-1 base-10000 digits and a scale of 16383; a message beyond that must
    # become a dead letter at decode time instead of failing the batch write.
    error = rejected("fill", fee=text)
    assert "fee" in error.reason


# --- prices and quantities ------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "field"),
    [
        ("kline", "volume"),
        ("kline", "quote_volume"),
        ("order", "quantity"),
        ("order", "price"),
        ("order", "stop_price"),
        ("order", "filled_quantity"),
        ("order", "avg_fill_price"),
        ("fill", "quantity"),
        ("fill", "price"),
        ("trade", "price"),
        ("trade", "quantity"),
        ("trade", "quote_quantity"),
    ],
)
def test_negative_price_or_quantity_is_rejected(kind: str, field: str) -> None:
    error = rejected(kind, **{field: '"-0.01"'})
    assert error.category == "invalid"
    assert field in error.reason


def test_negative_kline_prices_are_rejected() -> None:
    error = rejected("kline", open='"-1"', high='"-1"', low='"-1"', close='"-1"')
    assert "negative" in error.reason


@pytest.mark.parametrize(
    ("kind", "field"),
    [
        ("order", "quantity"),
        ("fill", "quantity"),
        ("order", "price"),
        ("trade", "price"),
        ("trade", "quantity"),
    ],
)
def test_zero_where_positive_needed_is_rejected(kind: str, field: str) -> None:
    assert field in rejected(kind, **{field: "0"}).reason


def test_zero_fill_price_is_accepted() -> None:
    assert ok("fill", price="0").price == Decimal(0)


def test_trade_optional_fields_and_side_case() -> None:
    bare = ok("trade")
    assert (bare.side, bare.quote_quantity, bare.trade_id) == (None, None, "t-1")
    full = ok("trade", side='"SELL"', quote_quantity='"50.0"')
    assert (full.side, full.quote_quantity) == ("sell", Decimal("50.0"))
    assert ok("trade", quote_quantity="0").quote_quantity == Decimal(0)
    assert "side" in rejected("trade", side='"hold"').reason


def test_trade_id_must_be_a_string() -> None:
    assert "trade_id" in rejected("trade", trade_id="4460839211").reason


def test_fill_fee_may_be_negative() -> None:
    assert ok("fill", fee='"-0.0001"').fee == Decimal("-0.0001")
    assert ok("fill", fee="-0.25").fee == Decimal("-0.25")


# --- kline rules ----------------------------------------------------------------------


def test_high_below_low_is_rejected() -> None:
    error = rejected("kline", high='"89"', low='"90"', open='"89.5"', close='"89.5"')
    assert "high < low" in error.reason


@pytest.mark.parametrize(
    "changes",
    [{"open": '"111"'}, {"open": '"89"'}, {"close": '"110.01"'}, {"close": '"89.99"'}],
)
def test_open_or_close_outside_low_high_is_rejected(changes: dict[str, str]) -> None:
    error = rejected("kline", **changes)
    assert "between low and high" in error.reason


def test_open_and_close_on_the_bounds_are_accepted() -> None:
    record = ok("kline", open='"90"', close='"110"')
    assert (record.open, record.close) == (record.low, record.high)


def test_close_time_before_open_time_is_rejected() -> None:
    error = rejected("kline", close_time="1767225599999")
    assert "close_time is before open_time" in error.reason


def test_close_time_equal_to_open_time_is_accepted() -> None:
    assert ok("kline", close_time="1767225600000").close_time == utc(2026, 1, 1)


@pytest.mark.parametrize("interval", INTERVALS)
def test_every_documented_interval_is_accepted(interval: str) -> None:
    assert ok("kline", interval=json.dumps(interval)).interval == interval


def test_intervals_are_the_documented_set() -> None:
    documented = [
        "1s", "1m", "3m", "5m", "15m", "30m", "1h", "2h",
        "4h", "6h", "8h", "12h", "1d", "3d", "1w", "1M",
    ]  # fmt: skip
    assert list(INTERVALS) == documented


@pytest.mark.parametrize("interval", ["2m", "1H", "1D", "60", "", "1 m", "1M "])
def test_unknown_interval_is_rejected(interval: str) -> None:
    error = rejected("kline", interval=json.dumps(interval))
    assert "interval" in error.reason


def test_interval_is_case_sensitive() -> None:
    assert ok("kline", interval='"1M"').interval == "1M"  # one month
    assert ok("kline", interval='"1m"').interval == "1m"  # one minute


@pytest.mark.parametrize("text", ['"true"', "1", "0", "null"])
def test_closed_must_be_a_boolean(text: str) -> None:
    assert "closed" in rejected("kline", closed=text).reason


# --- timestamps -----------------------------------------------------------------------


def test_epoch_milliseconds_become_exact_utc() -> None:
    record = ok("kline", open_time="1767225600123", close_time="1767225659999")
    assert record.open_time == utc(2026, 1, 1, 0, 0, 0, 123000)
    assert record.open_time.tzinfo is dt.UTC
    assert record.close_time == utc(2026, 1, 1, 0, 0, 59, 999000)


def test_epoch_zero_is_the_epoch_once_the_floor_allows_it() -> None:
    assert decode(raw(FILL, ts="0"), "fill", min_epoch_ms=0).ts == utc(1970, 1, 1)


def test_iso_with_offset_is_converted_to_utc() -> None:
    record = ok("fill", ts='"2026-01-01T05:30:00.250+05:30"')
    assert record.ts == utc(2026, 1, 1, 0, 0, 0, 250000)
    assert record.ts.utcoffset() == dt.timedelta(0)
    assert record.ts.tzinfo is dt.UTC


def test_iso_with_negative_offset_crosses_midnight() -> None:
    assert ok("fill", ts='"2025-12-31T20:00:00-04:00"').ts == utc(2026, 1, 1)


def test_iso_with_z_suffix_is_utc() -> None:
    assert ok("fill", ts='"2026-01-01T00:00:03.500Z"').ts == utc(2026, 1, 1, 0, 0, 3, 500000)


@pytest.mark.parametrize("text", ['"2026-01-01T00:00:00"', '"2026-01-01"'])
def test_naive_iso_is_rejected_naming_the_offset(text: str) -> None:
    error = rejected("fill", ts=text)
    assert "ts" in error.reason
    assert "offset" in error.reason


@pytest.mark.parametrize("text", ["1767225600000.0", "1767225600000.5", "1.7672256e12"])
def test_float_epoch_is_rejected(text: str) -> None:
    assert "ts" in rejected("fill", ts=text).reason


@pytest.mark.parametrize("text", ["-1", "-1767225600000"])
def test_negative_epoch_is_rejected(text: str) -> None:
    assert "ts" in rejected("fill", ts=text).reason


def test_epoch_beyond_year_9999_is_rejected() -> None:
    assert "ts" in rejected("fill", ts="253402300800000").reason


@pytest.mark.parametrize("text", ["true", "false", "null", '"1767225600000"', '"yesterday"', "[0]"])
def test_other_timestamp_types_are_rejected(text: str) -> None:
    assert "ts" in rejected("fill", ts=text).reason


# --- orders ---------------------------------------------------------------------------


def test_filled_quantity_above_quantity_is_rejected() -> None:
    error = rejected("order", quantity='"1"', filled_quantity='"1.0000001"')
    assert "filled_quantity exceeds quantity" in error.reason


def test_filled_quantity_equal_to_quantity_is_accepted() -> None:
    record = ok("order", quantity='"1"', filled_quantity="1.0", status='"filled"')
    assert record.filled_quantity == record.quantity


@pytest.mark.parametrize("order_type", ["limit", "stop_limit"])
def test_limit_order_without_price_is_rejected(order_type: str) -> None:
    error = rejected("order", type=json.dumps(order_type), stop_price='"95"')
    assert "needs a price" in error.reason


@pytest.mark.parametrize("order_type", ["stop", "stop_limit"])
def test_stop_order_without_stop_price_is_rejected(order_type: str) -> None:
    error = rejected("order", type=json.dumps(order_type), price='"100"')
    assert "needs a stop_price" in error.reason


def test_stop_limit_with_both_prices_is_accepted() -> None:
    record = ok("order", type='"stop_limit"', price='"100"', stop_price='"95"')
    assert (record.type, record.price, record.stop_price) == (
        "stop_limit",
        Decimal(100),
        Decimal(95),
    )


def test_market_order_needs_no_price() -> None:
    assert ok("order", type='"market"').price is None


def test_side_type_status_are_case_insensitive() -> None:
    record = ok("order", side='"BUY"', type='"Limit"', status='"PARTIALLY_FILLED"', price='"1"')
    assert (record.side, record.type, record.status) == ("buy", "limit", "partially_filled")


def test_fill_side_and_liquidity_are_case_insensitive() -> None:
    record = ok("fill", side='"SELL"', liquidity='"Taker"')
    assert (record.side, record.liquidity) == ("sell", "taker")


@pytest.mark.parametrize(
    ("field", "value"),
    [("side", '"long"'), ("type", '"iceberg"'), ("status", '"done"'), ("side", "1")],
)
def test_unknown_order_enum_value_is_rejected(field: str, value: str) -> None:
    assert field in rejected("order", **{field: value}).reason


def test_unknown_liquidity_is_rejected() -> None:
    assert "liquidity" in rejected("fill", liquidity='"both"').reason


@pytest.mark.parametrize("text", ["-1", "1.0", "true", '"3"', str(2**63)])
def test_bad_seq_is_rejected(text: str) -> None:
    assert "seq" in rejected("order", seq=text).reason


def test_seq_at_bigint_max_is_accepted() -> None:
    assert ok("order", seq=str(2**63 - 1)).seq == 2**63 - 1


# --- bot state ------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["[1, 2]", '"running"', "42", "null", "true"])
def test_bot_state_needs_an_object_state(text: str) -> None:
    error = rejected("bot_state", state=text)
    assert "state" in error.reason


def test_bot_state_keeps_nested_numbers_exact() -> None:
    record = ok("bot_state", state='{"pnl": 0.10000000000000000001, "levels": [1.50, 2]}')
    assert record.state == {
        "pnl": Decimal("0.10000000000000000001"),
        "levels": [Decimal("1.50"), 2],
    }


def test_empty_state_object_is_accepted() -> None:
    assert ok("bot_state", state="{}").state == {}


# --- fields ---------------------------------------------------------------------------


def test_unknown_extra_fields_are_ignored() -> None:
    record = ok("fill", extra='"x"', nested='{"a": [1, 2]}', note='"NaN"')
    assert isinstance(record, Fill)
    assert not hasattr(record, "extra")
    assert "extra" not in record.model_dump()


@pytest.mark.parametrize(
    ("kind", "field"),
    [(kind, field) for kind, base in BASES.items() for field in base],
)
def test_missing_required_field_is_named(kind: str, field: str) -> None:
    error = rejected(kind, **{field: DROP})
    assert error.category == "invalid"
    assert field in error.reason
    assert "required" in error.reason.lower()


def test_several_missing_fields_are_all_named() -> None:
    error = rejected("order", side=DROP, quantity=DROP)
    assert "side" in error.reason
    assert "quantity" in error.reason


def test_reason_names_the_kind() -> None:
    assert rejected("fill", price='"-1"').reason.startswith("invalid fill:")


@pytest.mark.parametrize("text", ["null", "1", "true", "[1]"])
def test_wrong_type_for_string_field_is_rejected(text: str) -> None:
    assert "exchange" in rejected("kline", exchange=text).reason


# --- symbols and text -----------------------------------------------------------------


@pytest.mark.parametrize(
    "symbol",
    ["BTCUSDT", "BTC-USDT", "BTC/USDT:USDT", "btc_usdt", "ETH.PERP", "A", "X@Y+1", "A" * 64],
)
def test_valid_symbols_are_accepted(symbol: str) -> None:
    assert ok("kline", symbol=json.dumps(symbol)).symbol == symbol


@pytest.mark.parametrize(
    "symbol",
    [
        "",
        "-BTC",
        "BTC USDT",
        "BTC\nUSDT",
        "BTCUSDT\n",
        "BTC\u0000USDT",
        "BTC\tUSDT",
        "BTC\u00e9",
        "A" * 65,
    ],
)
def test_invalid_symbols_are_rejected(symbol: str) -> None:
    assert "symbol" in rejected("kline", symbol=json.dumps(symbol)).reason


@pytest.mark.parametrize("text", ["o\u00001", "o\n1", "o\u001f", "o\u007f", ""])
def test_control_characters_in_ids_are_rejected(text: str) -> None:
    assert "order_id" in rejected("order", order_id=json.dumps(text)).reason


def test_unicode_order_id_is_accepted() -> None:
    assert ok("order", order_id='"\u00e9t\u00e9-1"').order_id == "\u00e9t\u00e9-1"


@pytest.mark.parametrize("exchange", ["bin ance", "_x", "a" * 33, "x\u0000"])
def test_invalid_exchange_is_rejected(exchange: str) -> None:
    assert "exchange" in rejected("kline", exchange=json.dumps(exchange)).reason


# --- kinds ----------------------------------------------------------------------------


def test_kind_in_message_overrides_topic_default() -> None:
    record = decode(raw(ORDER, kind='"order"'), "kline")
    assert isinstance(record, Order)


def test_kind_in_message_is_enough_without_default() -> None:
    assert isinstance(decode(raw(BOT_STATE, kind='"bot_state"'), None), BotState)


def test_topic_default_applies_without_kind() -> None:
    assert isinstance(decode(raw(FILL), "fill"), Fill)


def test_unknown_kind_is_rejected() -> None:
    with pytest.raises(RecordError) as info:
        decode(raw(FILL, kind='"quote"'), "fill")
    assert info.value.category == "unknown_kind"
    assert "quote" in info.value.reason


@pytest.mark.parametrize("kind", ['"Kline"', '"KLINE"', "1", "true", '["kline"]'])
def test_kind_must_be_an_exact_known_string(kind: str) -> None:
    with pytest.raises(RecordError) as info:
        decode(raw(KLINE, kind=kind), None)
    assert info.value.category == "unknown_kind"


def test_unknown_default_kind_is_rejected() -> None:
    with pytest.raises(RecordError) as info:
        decode(raw(FILL), "quote")
    assert info.value.category == "unknown_kind"


def test_no_kind_and_no_default_is_rejected() -> None:
    with pytest.raises(RecordError) as info:
        decode(raw(FILL), None)
    assert info.value.category == "unknown_kind"
    assert "kind" in info.value.reason


def test_message_for_one_kind_fails_as_another() -> None:
    with pytest.raises(RecordError) as info:
        decode(raw(FILL), "kline")
    assert info.value.category == "invalid"
    assert info.value.reason.startswith("invalid kline:")


# --- payload shape --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("payload", "type_name"),
    [
        (b"[1, 2]", "list"),
        (b'"kline"', "str"),
        (b"42", "int"),
        (b"1.5", "Decimal"),
        (b"null", "NoneType"),
    ],
)
def test_json_that_is_not_an_object_is_rejected(payload: bytes, type_name: str) -> None:
    with pytest.raises(RecordError) as info:
        decode(payload, "kline")
    assert info.value.category == "not_object"
    assert type_name in info.value.reason


@pytest.mark.parametrize("payload", [b"", b"{", b"{'a': 1}", b'{"a": 1,}', b"not json", b'{"a": 1} {}'])
def test_invalid_json_is_rejected(payload: bytes) -> None:
    with pytest.raises(RecordError) as info:
        decode(payload, "kline")
    assert info.value.category == "invalid_json"


@pytest.mark.parametrize("payload", [b"\xff\xfe{}", b'{"symbol": "\xc3("}', b"\x80"])
def test_non_utf8_bytes_are_rejected(payload: bytes) -> None:
    with pytest.raises(RecordError) as info:
        decode(payload, "kline")
    assert info.value.category == "not_utf8"


def test_utf8_text_is_accepted() -> None:
    record = decode(raw(ORDER, strategy=json.dumps("gr\u00eflle", ensure_ascii=False)), "order")
    assert record.strategy == "gr\u00eflle"


def test_reason_does_not_echo_the_input() -> None:
    secret = "s3cr3t-value-123"
    error = rejected("kline", volume=json.dumps(secret))
    assert secret not in error.reason


# --- rows -----------------------------------------------------------------------------


@pytest.mark.parametrize("kind", sorted(EXAMPLES))
def test_row_order_equals_columns(kind: str) -> None:
    record: Record = decode(json.dumps(EXAMPLES[kind]).encode(), kind)
    row = record.row()
    assert len(row) == len(record.COLUMNS)
    for column, value in zip(record.COLUMNS, row, strict=True):
        if (kind, column) in (("bot_state", "state"), ("signal", "metadata")):
            assert value == dump_json(getattr(record, column)), column  # JSON objects as text
            continue
        assert value == getattr(record, column), column


def test_columns_cover_every_field_but_kind() -> None:
    for cls in RECORD_TYPES.values():
        assert set(cls.COLUMNS) == set(cls.model_fields) - {"kind"}, cls.KIND


def test_order_row_values() -> None:
    record = decode(json.dumps(EXAMPLES["order"]).encode(), "order")
    row = dict(zip(Order.COLUMNS, record.row(), strict=True))
    assert row["quantity"] == Decimal("0.050")
    assert row["updated_at"] == utc(2026, 1, 1, 0, 0, 3, 500000)
    assert row["seq"] == 2


def test_bot_state_row_serialises_state_with_exact_decimals() -> None:
    record = ok(
        "bot_state",
        seq="3",
        state='{"pnl": 12345678901234567890.123456789, "levels": [1.50, 2, "x"], "on": true,'
        ' "none": null, "nested": {"q": "0.10"}}',
    )
    bot_id, ts, seq, state_text = record.row()
    assert (bot_id, ts, seq) == ("grid-1", utc(2026, 1, 1), 3)
    assert isinstance(state_text, str)
    assert state_text == (
        '{"pnl":12345678901234567890.123456789,"levels":[1.50,2,"x"],"on":true,'
        '"none":null,"nested":{"q":"0.10"}}'
    )
    assert json.loads(state_text, parse_float=Decimal) == record.state


def test_dump_json_round_trips_exactly() -> None:
    value = {"a": Decimal("0.1000"), "b": [Decimal("-0"), 7, "t\u00e9\n"], "c": {"d": False}}
    text = dump_json(value)
    assert json.loads(text, parse_float=Decimal) == value
    assert "0.1000" in text
