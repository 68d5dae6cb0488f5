"""The hot path (`codecs.fast`) agrees with the pydantic models on valid and invalid input.

For every payload of the corpus, with the topic's kind and with none (a mixed stream):
- when the hot path accepts it, the model accepts it too and gives the very same row;
- the pipeline's decoder (`native.decode_item`) gives the same item, or the same error with
  the same category and reason, as the model alone (`to_item(native.decode(...))`).
The corpus sets every field of a kline, a fill and a trade to each of many valid and invalid JSON
values, adds seeded random mixes of those, every bad message of the integration tests and the
published examples; hypothesis adds generated valid and near-valid messages of every kind
(tests/properties.py). The hot path must also accept the common shapes, or it would be no
faster than pydantic.
"""

from __future__ import annotations

import datetime as dt
import json
import random
from collections.abc import Iterator
from decimal import Decimal
from typing import Any, Final

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.integration.test_bad_input import BAD
from tests.integration.test_trades import BAD as BAD_TRADES
from tests.integration.test_trades import payload as trade_payload
from tests.properties import examples
from tests.property_messages import Message, messages, near_valid
from tests.unit.test_records import DROP, FILL, KLINE, TRADE, raw
from tickvault.codecs import fast, native
from tickvault.errors import RecordError
from tickvault.record_schemas import EXAMPLES
from tickvault.records import Fill, Kline, Trade
from tickvault.rows import Row, line, to_item
from tickvault.timestamps import MIN_EPOCH_MS

DECIMALS: Final = (
    '"1"', '"0"', '"0.0"', '"12.50"', '"90"', '"110"', '"100.000"', '"007.5"', '"-1"', '"-0"',
    '"-0.0"', '"+1"', '" 1"', '"1 "', '"1e3"', '"1E-7"', '".5"', '"5."', '"1_000"', '"\u0661\u0662"',
    '"NaN"', '"Infinity"', '"-inf"', '""', '"abc"', '"1.2.3"', "1", "0", "-1", "100", "12.50", "0.1",
    "1e3", "1.5E-7", "-0.0", "100.0", "1" + "0" * 50, '"1' + "0" * 45 + '"', '"0.' + "1" * 45 + '"',
    "1e999999999", '"1e-20000"', '"9' + "9" * 19 + '"', '"1' + "0" * 20 + '"', "1" + "0" * 20,
    '"0.' + "0" * 17 + '1"', '"0.' + "0" * 18 + '1"', '"1.' + "5" * 18 + '"', '"1.5' + "0" * 20 + '"',
    "true", "false", "null", "[1]", '{"a": 1}',
)  # fmt: skip
TIMES: Final = (
    "1767225600000", "1767225659999", "1767225540000", "0", "-1", "253402300799999", "253402300800000",
    "1767225600000.5", "1.7e12", '"2026-01-01T00:00:00Z"', '"2026-01-01T00:00:59.999+00:00"',
    '"2026-01-01T02:00:00+02:00"', '"2025-12-31T23:00:00-01:00"', '"2026-01-01T00:00:00"',
    '"2026-01-01"', '"garbage"', '"9999-12-31T23:59:59-01:00"', '"1767225600000"', "true", "null",
    "[1]", "1735689600", "99999999999", "100000000000", "1735689600000000", "1735689600000000000",
    "1735689600.123", '"1969-12-31T23:59:59.999999Z"', '"1970-01-01T00:00:00Z"',
    '"9999-12-31T23:59:59.999999Z"', '"10000-01-01T00:00:00Z"',
)  # fmt: skip
STRINGS: Final = (
    '"binance"', '"BTCUSDT"', '"BTC/USDT"', '"eth-usd.perp"', '""', '" x"', '"-bad"', '"a\\tb"',
    '"a\\nb"', '"a\\\\b"', '"x' + "y" * 200 + '"', '"' + "z" * 128 + '"', '"' + "z" * 129 + '"',
    '"\u7f51\u683c"', '"a\\u0000"', '"\\u007f"', '"\\ud800"', '"\x7f"', '"\\\\N"',
    '"' + "\u00e9" * 128 + '"', '"' + "\u00e9" * 129 + '"', '"ok.id_1"', '"bot:1"', '"BUY"', '"Sell"',
    '"buy"', '"sell"', '"maker"', '"TAKER"', '"both"', '"1m"', '"1M"', '"7m"', '"1m "', '"USDT"',
    "1", "null", "true", '["x"]',
)  # fmt: skip
INTEGERS: Final = ("0", "842", "-1", "9223372036854775807", "9223372036854775808", "1.0", '"5"')
BOOLEANS: Final = ("true", "false", '"true"', "0", "1")
KINDS: Final = ('"kline"', '"fill"', '"order"', '"trade"', '"quote"', "5", "null")
VALUES: Final = (*DECIMALS, *TIMES, *STRINGS, *INTEGERS, *BOOLEANS, *KINDS, DROP)
BASES: Final = {"kline": KLINE, "fill": FILL, "trade": TRADE}
FIELDS: Final = {
    "kline": ("kind", *Kline.model_fields),
    "fill": ("kind", *Fill.model_fields),
    "trade": ("kind", *Trade.model_fields),
}


def outcome(decode: Any, payload: bytes, kind: str | None) -> tuple[Any, ...]:
    try:
        return ("ok", decode(payload, kind))
    except RecordError as exc:
        return ("error", exc.category, exc.reason)


def agree(payload: bytes, kind: str | None, min_epoch_ms: int = MIN_EPOCH_MS) -> bool:
    """Assert both paths agree on `payload`; True when the hot path took it."""
    row = fast.decode(payload, kind, min_epoch_ms)
    expected = outcome(lambda p, k: to_item(native.decode(p, k, min_epoch_ms)), payload, kind)
    if row is not None:
        assert expected == ("ok", row), payload
    assert outcome(native.codec(min_epoch_ms), payload, kind) == expected, payload
    return row is not None


def one_field_changed(named: bool) -> Iterator[tuple[str, bytes]]:
    """Payloads with one field changed; `named`: the message carries its kind."""
    for kind, base in BASES.items():
        base = {**base, "kind": f'"{kind}"'} if named else base
        for name in FIELDS[kind]:
            for value in VALUES:
                yield kind, raw(base, **{name: value})


def random_mixes(n: int, seed: int) -> Iterator[tuple[str, bytes]]:
    rng = random.Random(seed)
    for _ in range(n):
        kind = rng.choice(list(BASES))
        names = rng.sample(FIELDS[kind], 3)
        yield kind, raw(BASES[kind], **{name: rng.choice(VALUES) for name in names})


@pytest.mark.parametrize("min_epoch_ms", [MIN_EPOCH_MS, 0], ids=["default-floor", "no-floor"])
@pytest.mark.parametrize("mixed", [False, True], ids=["kind-of-topic", "mixed-stream"])
def test_every_field_set_to_every_value_agrees(mixed: bool, min_epoch_ms: int) -> None:
    taken = sum(
        agree(payload, None if mixed else kind, min_epoch_ms) for kind, payload in one_field_changed(mixed)
    )
    assert taken > 500  # the hot path is not simply deferring everything


def test_the_time_cache_does_not_bypass_the_floor() -> None:
    payload = raw(FILL, ts="1735689600")
    assert agree(payload, "fill", min_epoch_ms=0)  # the hot path takes it, and caches its time
    assert not agree(payload, "fill")
    error = outcome(native.decode_item, payload, "fill")
    assert error[:2] == ("error", "invalid")
    assert "ts: looks like epoch seconds" in error[2]


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_random_mixes_agree(seed: int) -> None:
    for kind, payload in random_mixes(3000, seed):
        agree(payload, kind)


def test_bad_messages_of_the_integration_tests_agree() -> None:
    for bad in BAD:
        kind = None if bad.stream == "mixed" else bad.stream
        assert not agree(bad.payload, kind)
        assert outcome(native.decode_item, bad.payload, kind)[:2] == ("error", bad.category)


def test_bad_trades_of_the_integration_tests_agree() -> None:
    for message, fragment in BAD_TRADES:
        assert not agree(trade_payload(message), "trade")
        error = outcome(native.decode_item, trade_payload(message), "trade")
        assert error[0] == "error" and fragment in error[2], (message, error)


@pytest.mark.parametrize("kind", ["kline", "fill", "trade"])
def test_examples_take_the_hot_path(kind: str) -> None:
    payload = json.dumps(EXAMPLES[kind]).encode()
    assert agree(payload, kind)
    assert agree(json.dumps({**EXAMPLES[kind], "kind": kind}).encode(), None)


@pytest.mark.parametrize(
    ("kind", "changes"),
    [
        ("kline", {}),
        ("kline", {"open": "100", "high": "110.5", "low": "90", "close": "105", "volume": "12.5"}),
        ("kline", {"open_time": '"2026-01-01T00:00:00Z"', "close_time": '"2026-01-01T00:00:59.999Z"'}),
        ("kline", {"close_time": "null", "quote_volume": "null", "trades": "null", "closed": "false"}),
        ("fill", {}),
        ("fill", {"side": '"BUY"', "liquidity": '"Maker"', "fee": '"0.01"', "fee_asset": '"BNB"'}),
        ("fill", {"ts": '"2026-01-01T01:00:00+01:00"', "bot_id": '"grid-1"', "strategy": '"grid v2"'}),
        ("fill", {"quantity": "0.5", "price": "100", "fee": "0", "liquidity": "null", "fee_asset": "null"}),
        ("trade", {}),
        ("trade", {"side": '"BUY"', "quote_quantity": '"50.00"', "trade_id": '"4460839211"'}),
        ("trade", {"price": "87012.51", "quantity": "0.0015", "quote_quantity": "130.5187", "side": "null"}),
        ("trade", {"ts": '"2026-01-01T00:00:00.123456+00:00"', "quote_quantity": "null", "side": '"sell"'}),
    ],
)
def test_common_shapes_take_the_hot_path(kind: str, changes: dict[str, str]) -> None:
    assert agree(raw(BASES[kind], **changes), kind)


def test_hot_row_is_the_model_row_as_copy_text() -> None:
    payload = json.dumps(EXAMPLES["kline"]).encode()
    row = fast.decode(payload, "kline")
    record = native.decode(payload, "kline")
    assert row == Row(
        "kline", line(record.row()), dt.datetime(2026, 1, 1, tzinfo=dt.UTC), "BTCUSDT", record.series
    )
    assert row is not None
    assert row.text.split("\t")[3:6] == [
        "2026-01-01 00:00:00+00:00",
        "2026-01-01 00:00:59.999000+00:00",
        "87012.50",
    ]


def test_messages_with_escapes_are_left_to_the_model_which_escapes_for_copy() -> None:
    payload = raw(FILL, strategy='"a\\\\b"')
    assert fast.decode(payload, "fill") is None
    row = native.decode_item(payload, "fill")
    assert isinstance(row, Row)
    assert "\ta\\\\b\t" in row.text


FLOORS = st.sampled_from([MIN_EPOCH_MS, 0])


@examples(200)
@given(messages(), st.booleans(), FLOORS)
def test_generated_messages_of_every_kind_agree(message: Message, mixed: bool, min_epoch_ms: int) -> None:
    """Valid messages of every kind, every decimal form, times at the edges, unicode text."""
    payload = message.payload(with_kind=mixed)
    took = agree(payload, None if mixed else message.kind, min_epoch_ms)
    assert took or message.kind not in BASES or b"\\" in payload or _unusual(message)


def _unusual(message: Message) -> bool:
    """A decimal the hot path leaves to the model: negative, or not written plainly (a sign,
    an exponent, spaces, leading zeros, more than 18 decimals; a JSON number such as 0.0000000
    that Python's Decimal writes with an exponent, 0E-7)."""
    for name, value in message.decimals.items():
        text = message.fields[name]
        plain = json.loads(text) if text.startswith('"') else str(Decimal(text))
        if value < 0 or plain != format(value, "f"):
            return True
    return False


@examples(300)
@given(near_valid(), st.booleans(), FLOORS)
def test_generated_near_valid_messages_of_every_kind_agree(
    mutated: tuple[Message, set[str]], mixed: bool, min_epoch_ms: int
) -> None:
    """One to three fields removed, added or set to a wrong type, an odd number or an edge."""
    message, _ = mutated
    agree(message.payload(with_kind=mixed), None if mixed else message.kind, min_epoch_ms)
