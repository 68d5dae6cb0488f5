"""Properties of the native codec (fast path and model path, as the pipeline calls them):

- any byte string, and any message near a valid one (a field removed, added, or set to a
  wrong type, a huge or odd number, NaN or Infinity, an exponent, unicode, deep nesting, a
  time at or past an edge), gives a record or a RecordError with a category and a reason:
  never another exception;
- what it gives holds the values published: each decimal equal to the text sent, each time
  equal to the instant sent, each identifier as sent (enumerations in lower case), bot state
  and signal metadata equal as JSON (numbers by value).

Examples per test: tests/properties.py (`HYPOTHESIS_PROFILE=long` for a longer search).
"""

from __future__ import annotations

import datetime as dt
import json
import re
from decimal import Decimal
from typing import Any, Final

from hypothesis import example, given
from hypothesis import strategies as st

from tests.properties import examples, published_decimal, published_time, time_text
from tests.property_messages import FILL_BASE, KINDS, ODD_VALUES, Message, messages, near_valid
from tickvault.codecs import CODECS
from tickvault.errors import RecordError
from tickvault.records import RECORD_TYPES, Order
from tickvault.rows import NULL, Item

CATEGORIES: Final = frozenset(
    {"not_utf8", "invalid_json", "not_object", "unknown_kind", "invalid", "unknown_event"}
)
DECIMALS: Final = frozenset({
    "open", "high", "low", "close", "volume", "quote_volume", "quantity", "price", "stop_price",
    "filled_quantity", "avg_fill_price", "fee", "free", "locked", "strength", "quote_quantity",
})  # fmt: skip
TIMES: Final = frozenset({"open_time", "close_time", "created_at", "updated_at", "ts"})
ENUMS: Final = frozenset({"side", "type", "status", "liquidity", "action"})
JSON_OBJECTS: Final = frozenset({"state", "metadata"})
TEXTS: Final = frozenset({
    "exchange", "symbol", "interval", "order_id", "client_order_id", "fill_id", "trade_id", "strategy",
    "bot_id", "account", "asset", "fee_asset",
})  # fmt: skip
_COPY_ESCAPE: Final = re.compile(r"\\(.)")
_UNESCAPED: Final = {"t": "\t", "n": "\n", "r": "\r", "\\": "\\"}
NATIVE: Final = (CODECS["native"](), CODECS["native"](0))
KIND_OR_NONE: Final = st.sampled_from([*KINDS, None])


def outcome(codec: Any, payload: bytes, kind: str | None) -> Item | list[Item] | RecordError:
    """The codec's item(s), or its RecordError; any other exception escapes (and fails)."""
    try:
        return codec(payload, kind)  # type: ignore[no-any-return]
    except RecordError as exc:
        assert exc.category in CATEGORIES, exc.category
        assert exc.reason and str(exc) == exc.reason
        return exc


def values(item: Item) -> dict[str, Any]:
    """The item's columns as Python values: a Row's COPY text read back, an Order's fields."""
    columns = RECORD_TYPES[item.KIND].COLUMNS
    if isinstance(item, Order):
        return {c: getattr(item, c) for c in columns}
    texts = item.text.split("\t")
    assert len(texts) == len(columns), item
    out: dict[str, Any] = {}
    for name, text in zip(columns, texts, strict=True):
        value = None if text == NULL else _COPY_ESCAPE.sub(lambda m: _UNESCAPED.get(m[1], m[1]), text)
        if value is not None and name in DECIMALS:
            out[name] = Decimal(value)
        elif value is not None and name in TIMES:
            out[name] = dt.datetime.fromisoformat(value)
        else:
            out[name] = value
    return out


def check_value(name: str, stored: Any, published: str) -> None:
    """`stored` is what `published` (raw JSON text) says, read without tickvault."""
    if published == "null":
        assert stored is None, name
    elif name in DECIMALS:
        assert isinstance(stored, Decimal) and stored == published_decimal(published), (name, published)
    elif name in TIMES:
        assert stored == published_time(published) and stored.utcoffset() == dt.timedelta(0), name
    elif name in JSON_OBJECTS:
        sent = json.loads(published, parse_float=Decimal)
        got = stored if isinstance(stored, dict) else json.loads(stored, parse_float=Decimal)
        assert got == sent, name
    elif name in ENUMS:
        assert stored == json.loads(published).lower(), name
    elif name in TEXTS:
        assert stored == json.loads(published), name


def check_message(item: Item, message: Message, changed: set[str] = frozenset()) -> None:  # type: ignore[assignment]
    """Every value of `item` that `message` published is the value published."""
    got = values(item)
    for name, text in message.fields.items():
        if name in got and (name not in changed or name in DECIMALS | TIMES):
            check_value(name, got[name], text)
    for name, instant in message.times.items():
        if name in got and name not in changed:
            assert got[name] == instant, name
    for name, value in message.decimals.items():
        if name in got and name not in changed:
            assert got[name] == value, name


@examples(100)
@given(st.binary(max_size=300), KIND_OR_NONE)
@example(b"\xff", "kline")
@example(b"[" * 100_000, "fill")
@example(b'{"kind": "bot_state", "state": ' + b"[" * 100_000, None)
def test_any_bytes_give_a_record_or_a_dead_letter(payload: bytes, kind: str | None) -> None:
    for name, codec in CODECS.items():
        for decode in (codec(), codec(0)):
            outcome(decode, payload, kind if name != "binance" else None)


@examples(100)
@given(st.lists(st.sampled_from(ODD_VALUES), min_size=1, max_size=4), KIND_OR_NONE)
def test_odd_json_gives_a_record_or_a_dead_letter(parts: list[str], kind: str | None) -> None:
    """Odd values alone, in arrays and in objects keyed by real field names."""
    keys = ["kind", "ts", "price", "state", "e", "k", "start", "data"]
    for payload in (parts[0], "[" + ",".join(parts) + "]", "{" + ",".join(
        f'"{keys[i % len(keys)]}": {p}' for i, p in enumerate(parts)
    ) + "}"):  # fmt: skip
        for codec in CODECS.values():
            outcome(codec(), payload.encode(), kind)


@examples(150)
@given(messages(), st.booleans())
def test_valid_messages_are_stored_as_published(message: Message, mixed: bool) -> None:
    payload = message.payload(with_kind=mixed)
    for codec in NATIVE:
        item = outcome(codec, payload, None if mixed else message.kind)
        assert not isinstance(item, RecordError), (item.reason, payload)
        assert not isinstance(item, list) and message.kind == item.KIND
        check_message(item, message)


@examples(300)
@given(near_valid(), st.booleans())
def test_messages_near_valid_ones_are_stored_as_published_or_dead_lettered(
    mutated: tuple[Message, set[str]], mixed: bool
) -> None:
    message, changed = mutated
    payload = message.payload(with_kind=mixed)
    for codec in NATIVE:
        item = outcome(codec, payload, None if mixed else message.kind)
        if not isinstance(item, RecordError):
            assert not isinstance(item, list)
            check_message(item, message, changed)


@examples(100)
@given(time_text(min_epoch_ms=0))
@example(('"2026-01-01T00:00:00.9999999Z"', dt.datetime(2026, 1, 1, 0, 0, 1, tzinfo=dt.UTC)))  # was cut short
@example(('"2026-01-01T00:00:00.0000015+01:00"', dt.datetime(2025, 12, 31, 23, 0, 0, 2, tzinfo=dt.UTC)))
@example(('"9999-12-31T23:59:59.9999994Z"', dt.datetime.max.replace(tzinfo=dt.UTC)))
def test_times_are_the_instant_published_to_the_microsecond(sent: tuple[str, dt.datetime]) -> None:
    """Finer digits than the microsecond round half-even, as PostgreSQL rounds its input."""
    text, instant = sent
    assert published_time(text) == instant
    for kind in ("fill", None):
        payload = Message("fill", {**FILL_BASE, "ts": text}).payload(with_kind=kind is None)
        item = outcome(CODECS["native"](0), payload, kind)
        assert not isinstance(item, RecordError | list), item
        assert item.time == instant


@examples(50)
@given(time_text(), st.from_regex(r"[.,][0-9]{1,9}", fullmatch=True))
@example(('"2026-01-01T00:00:00+00:00"', dt.datetime(2026, 1, 1, tzinfo=dt.UTC)), ".5")  # was +00:00
def test_an_offset_with_a_fraction_of_a_second_is_a_dead_letter(
    sent: tuple[str, dt.datetime], fraction: str
) -> None:
    """fromisoformat reads +00:00:00.5 as +00:00; ISO-8601 offsets have no seconds at all."""
    text = json.loads(sent[0])
    text = sent[1].isoformat() if isinstance(text, int) else text.replace("Z", "+00:00")
    payload = Message("fill", {**FILL_BASE, "ts": json.dumps(text + ":00" + fraction)}).payload()
    for codec in NATIVE:
        error = outcome(codec, payload, "fill")
        assert isinstance(error, RecordError) and "offset has no fraction" in error.reason


@examples(50)
@given(time_text(), st.from_regex(r"[.,][0-9]{1,9}", fullmatch=True), st.sampled_from([13, 16, 19]))
@example(('"2026-01-01T00:00:00Z"', dt.datetime(2026, 1, 1, tzinfo=dt.UTC)), ".5", 16)  # read as 0.5 s
@example(('"2026-01-01T00:00:00Z"', dt.datetime(2026, 1, 1, tzinfo=dt.UTC)), ".5", 13)
def test_a_fraction_anywhere_but_after_the_seconds_is_a_dead_letter(
    sent: tuple[str, dt.datetime], fraction: str, end: int
) -> None:
    """A fraction of the hour (hh.5) or the minute (hh:mm.5), which fromisoformat read as a
    fraction of a second, or a second fraction after the seconds' (ss.5.5)."""
    text = json.loads(sent[0])
    text = sent[1].isoformat() if isinstance(text, int) else text.replace("Z", "+00:00")
    offset = text[-6:]
    odd = text[:end] + fraction + offset if end < 19 else text[:-6] + ".5" + fraction + offset
    payload = Message("fill", {**FILL_BASE, "ts": json.dumps(odd)}).payload()
    for codec in NATIVE:
        error = outcome(codec, payload, "fill")
        assert isinstance(error, RecordError) and "ts: not an ISO-8601 timestamp" in error.reason, odd
