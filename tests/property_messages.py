"""Whole messages of every kind for the property tests, as published text.

A `Message` holds each field's raw JSON text and, alongside, the value each decimal and time
field was published with (tests/properties.py draws them), so a property can compare what a
codec or a read gives with what was sent. `messages` draws valid ones; `near_valid` valid
ones with fields removed, added or set to odd values (ODD_VALUES).
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Final

from hypothesis import strategies as st

from tests.properties import (
    ENUMS,
    IDENTIFIERS,
    MAX_COLD,
    MIN_TIME,
    TEXTS,
    cold_decimals,
    decimal_text,
    json_text,
    time_text,
)
from tickvault.records import MAX_BIGINT
from tickvault.timestamps import MAX_EPOCH_MS, MAX_TIME, MIN_EPOCH_MS


@dataclass
class Message:
    """A message as published: `fields` holds each field's raw JSON text; `decimals` and
    `times` the value each decimal and time field was published with."""

    kind: str
    fields: dict[str, str] = field(default_factory=dict)
    decimals: dict[str, Decimal] = field(default_factory=dict)
    times: dict[str, dt.datetime] = field(default_factory=dict)

    def payload(self, with_kind: bool = False) -> bytes:
        fields = {"kind": json.dumps(self.kind), **self.fields} if with_kind else self.fields
        return ("{" + ", ".join(f"{json.dumps(k)}: {v}" for k, v in fields.items()) + "}").encode()


class Builder:
    """Draws the fields of one Message."""

    def __init__(
        self, draw: st.DrawFn, kind: str, times: tuple[dt.datetime, dt.datetime], min_epoch_ms: int
    ) -> None:
        self.draw, self.message, self.span, self.floor = draw, Message(kind), times, min_epoch_ms

    def decimal(self, name: str, value: Decimal) -> None:
        self.message.fields[name] = self.draw(decimal_text(value))
        self.message.decimals[name] = value

    def number(self, name: str, minimum: Decimal = -MAX_COLD, positive: bool = False) -> Decimal:
        value = self.draw(cold_decimals(minimum, positive))
        self.decimal(name, value)
        return value

    def time(self, name: str) -> dt.datetime:
        text, instant = self.draw(time_text(*self.span, self.floor))
        self.message.fields[name] = text
        self.message.times[name] = instant
        return instant

    def text(self, name: str, optional: bool = False) -> None:
        if optional and self.draw(st.booleans()):
            return
        if name in IDENTIFIERS:
            value = self.draw(IDENTIFIERS[name])
        elif name in ENUMS:
            value = self.draw(st.sampled_from(ENUMS[name]))
        else:
            value = self.draw(TEXTS)
        self.message.fields[name] = self.draw(json_text(value))

    def raw(self, name: str, text: str) -> None:
        self.message.fields[name] = text


ZERO: Final = Decimal(0)


def _kline(b: Builder) -> None:
    for name in ("exchange", "symbol", "interval"):
        b.text(name)
    opened = b.time("open_time")
    values = sorted(b.draw(cold_decimals(ZERO)) for _ in range(4))
    low, high, o, c = values[0], values[3], *b.draw(st.permutations(values[1:3]))
    for name, value in (("open", o), ("high", high), ("low", low), ("close", c)):
        b.decimal(name, value)
    b.number("volume", ZERO)
    if b.draw(st.booleans()):
        b.number("quote_volume", ZERO)
    if b.draw(st.booleans()):
        b.raw("trades", str(b.draw(st.integers(0, MAX_BIGINT))))
    if b.draw(st.booleans()):
        b.raw("closed", b.draw(st.sampled_from(["true", "false"])))
    if b.draw(st.booleans()):
        text, closes = b.draw(time_text(opened, b.span[1], b.floor))
        b.message.fields["close_time"], b.message.times["close_time"] = text, closes


def _order(b: Builder) -> None:
    for name in ("order_id", "exchange", "symbol", "side"):
        b.text(name)
    kind = b.draw(st.sampled_from(["market", "limit", "stop", "stop_limit", "LIMIT"]))
    b.raw("type", json.dumps(kind))
    b.raw("status", json.dumps(b.draw(st.sampled_from(["new", "open", "partially_filled", "FILLED"]))))
    quantity = b.number("quantity", positive=True)
    if kind.lower() in ("limit", "stop_limit") or b.draw(st.booleans()):
        b.number("price", positive=True)
    if kind in ("stop", "stop_limit") or b.draw(st.booleans()):
        b.number("stop_price", positive=True)
    if b.draw(st.booleans()):
        b.decimal("filled_quantity", b.draw(st.sampled_from([ZERO, quantity])))
    if b.draw(st.booleans()):
        b.number("avg_fill_price", ZERO)
    for name in ("client_order_id", "bot_id", "strategy"):
        b.text(name, optional=True)
    if b.draw(st.booleans()):
        b.time("created_at")
    b.time("updated_at")
    if b.draw(st.booleans()):
        b.raw("seq", str(b.draw(st.integers(0, MAX_BIGINT))))


def _fill(b: Builder) -> None:
    for name in ("fill_id", "order_id", "exchange", "symbol", "side"):
        b.text(name)
    b.number("quantity", positive=True)
    b.number("price", ZERO)
    if b.draw(st.booleans()):
        b.number("fee")
    for name in ("fee_asset", "liquidity", "bot_id", "strategy"):
        b.text(name, optional=True)
    b.time("ts")


def _trade(b: Builder) -> None:
    for name in ("exchange", "symbol", "trade_id"):
        b.text(name)
    b.number("price", positive=True)
    b.number("quantity", positive=True)
    b.text("side", optional=True)
    if b.draw(st.booleans()):
        b.number("quote_quantity", ZERO)
    b.time("ts")


def _balance(b: Builder) -> None:
    for name in ("account", "exchange", "asset"):
        b.text(name)
    b.number("free", ZERO)
    if b.draw(st.booleans()):
        b.number("locked", ZERO)
    b.time("ts")


def _signal(b: Builder) -> None:
    for name in ("bot_id", "strategy", "exchange", "symbol", "action"):
        b.text(name)
    b.time("ts")
    if b.draw(st.booleans()):
        b.number("strength")
    if b.draw(st.booleans()):
        b.raw("metadata", b.draw(json_object_text()))


def _bot_state(b: Builder) -> None:
    b.text("bot_id")
    b.time("ts")
    if b.draw(st.booleans()):
        b.raw("seq", str(b.draw(st.integers(0, MAX_BIGINT))))
    b.raw("state", b.draw(json_object_text()))


BUILDERS: Final = {
    "kline": _kline, "order": _order, "fill": _fill, "bot_state": _bot_state,
    "balance": _balance, "signal": _signal, "trade": _trade,
}  # fmt: skip
KINDS: Final = tuple(BUILDERS)


@st.composite
def json_value_text(draw: st.DrawFn, depth: int = 3) -> str:
    """Raw JSON text of a value a bot state may hold: numbers in every form, unicode."""
    scalar = st.one_of(
        st.just("null"), st.sampled_from(["true", "false"]),
        st.integers(-(10**30), 10**30).map(str), cold_decimals().flatmap(decimal_text),
        TEXTS.flatmap(json_text),
    )  # fmt: skip
    if depth == 0 or draw(st.integers(0, 2)) == 0:
        return draw(scalar)
    if draw(st.booleans()):
        return "[" + ",".join(draw(st.lists(json_value_text(depth - 1), max_size=4))) + "]"
    return draw(json_object_text(depth - 1))


@st.composite
def json_object_text(draw: st.DrawFn, depth: int = 3) -> str:
    keys = draw(st.lists(TEXTS, max_size=4, unique=True))
    return "{" + ",".join(json.dumps(k) + ":" + draw(json_value_text(depth)) for k in keys) + "}"


@st.composite
def messages(
    draw: st.DrawFn,
    kinds: tuple[str, ...] = KINDS,
    lowest: dt.datetime = MIN_TIME,
    highest: dt.datetime = MAX_TIME,
    min_epoch_ms: int = MIN_EPOCH_MS,
) -> Message:
    """A valid message of one of `kinds`, timestamps within [lowest, highest] (integers of
    epoch milliseconds not below `min_epoch_ms`)."""
    kind = draw(st.sampled_from(kinds))
    builder = Builder(draw, kind, (lowest, highest), min_epoch_ms)
    BUILDERS[kind](builder)
    return builder.message


FILL_BASE: Final = {
    "fill_id": '"f-1"', "order_id": '"o-1"', "exchange": '"binance"', "symbol": '"BTCUSDT"',
    "side": '"sell"', "quantity": '"0.5"', "price": '"100"', "ts": "1767225600000",
}  # fmt: skip

# Values that break a field's rule, or sit just at or past its edge: wrong types, huge and odd
# numbers, non-finite ones, exponents, unicode, nesting, times at and past the edges.
ODD_VALUES: Final = (
    "null", "true", "false", "[]", "{}", '""', '" "', "0", "-0", "-1", "1.0", "-0.0", "1e3", "1E+400",
    "1e-400", "1" + "0" * 400, "1" + "0" * 5000, "0." + "0" * 17 + "1", "0." + "0" * 18 + "1",
    "9" * 20, "9" * 21, "NaN", "Infinity", "-Infinity", '"NaN"', '"-inf"', '"Infinity"', '"sNaN"',
    '"1e3"', '"1E-18"', '"1E-19"', '"0x10"', '"1_000"', '"\u0661"', '"\\u0661"', '"١٢"', '"½"',
    '"1,5"', '"1.5.5"', '"."', '"-"', '"e5"', '"+.5"', '"5e"', "[" * 100 + "]" * 100,
    "[" * 5000 + "]" * 5000, '{"a":' * 70 + "1" + "}" * 70, '"\\ud800"', '"\\u0000"', '"a\\tb"',
    '"\\\\N"', '"\u00e9\u7f51\U0001f600"', '"' + "x" * 129 + '"', str(MIN_EPOCH_MS - 1),
    str(MIN_EPOCH_MS), str(MAX_EPOCH_MS), str(MAX_EPOCH_MS + 1), str(MAX_EPOCH_MS * 1000),
    str(2**63), str(2**64), str(-(2**63) - 1), "1767225600000.0", "1.7672256e12",
    '"1970-01-01T00:00:00Z"', '"1969-12-31T23:59:59.999999Z"', '"9999-12-31T23:59:59.999999Z"',
    '"9999-12-31T23:59:59.999999-00:01"', '"10000-01-01T00:00:00Z"', '"+10000-01-01T00:00:00Z"',
    '"2026-01-01T00:00:00"', '"2026-01-01"', '"2026-02-30T00:00:00Z"', '"2026-01-01T24:00:00Z"',
    '"2026-01-01T00:00:00+24:00"', '"2026-01-01T00:00:00.1234567Z"', '"0001-01-01T00:00:00+00:00"',
    '"2026-01-01T00:00:00.9999999Z"', '"9999-12-31T23:59:59.9999995Z"', '"2026-01-01T00:00:00+00:00:00.5"',
    '"2026-01-01T00:00:00,5+01:00"', '"20260101T000000Z"', '"2026-W01-1T00:00Z"',
    '"2026-01-01T00:00.5Z"', '"2026-01-01T00.5Z"', '"2026-01-01T00:00:00.1234567.5Z"',
)  # fmt: skip


@st.composite
def near_valid(draw: st.DrawFn, kinds: tuple[str, ...] = KINDS) -> tuple[Message, set[str]]:
    """A valid message with one to three fields changed to odd values, removed, or added
    (unknown fields); returns it and the names of the fields changed."""
    message = draw(messages(kinds))
    names = [*message.fields, "kind", "unknown", "kline", "ts", "open_time"]
    changed = set()
    for _ in range(draw(st.integers(1, 3))):
        name = draw(st.sampled_from(names))
        changed.add(name)
        action = draw(st.integers(0, 5))
        if action == 0:
            message.fields.pop(name, None)
        elif action == 1:
            message.fields[name] = draw(st.sampled_from(KINDS).map(json.dumps))
        elif action == 2:
            message.fields[name] = draw(json_value_text(2))
        else:
            message.fields[name] = draw(st.sampled_from(ODD_VALUES))
    return message, changed
