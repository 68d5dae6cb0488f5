"""Hypothesis profiles and the strategies the property tests share.

Profiles (`HYPOTHESIS_PROFILE`, loaded by tests/conftest.py):
- `ci` (the default): modest example counts and no deadline, so every property test file
  runs in seconds;
- `long`: LONG_FACTOR times as many examples, for a search before a release
  (`HYPOTHESIS_PROFILE=long pytest tests/unit tests/integration/test_roundtrip_properties.py`).
A test states its count for the `ci` profile with `examples(n)`; the profile scales it.

Messages are built as published text: a field → its raw JSON text, and alongside it the
value the store must keep for it (a Decimal equal to the text sent, an instant equal to the
one sent), so a property can compare what a codec gives with what was sent without going
through the code under test.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import re
from dataclasses import dataclass, field
from decimal import Decimal
from fractions import Fraction
from typing import Any, Final

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from tickvault.records import (
    ASSET_PATTERN,
    BOT_ID_PATTERN,
    EXCHANGE_PATTERN,
    INTERVALS,
    MAX_BIGINT,
    SYMBOL_PATTERN,
    TEXT_MAX_LENGTH,
)
from tickvault.timestamps import EPOCH, MAX_EPOCH_MS, MAX_TIME, MIN_EPOCH_MS

CI_EXAMPLES: Final = 100
LONG_FACTOR: Final = 20
PROFILE: Final = os.environ.get("HYPOTHESIS_PROFILE", "ci")
settings.register_profile("ci", max_examples=CI_EXAMPLES, deadline=None, print_blob=True)
settings.register_profile("long", max_examples=CI_EXAMPLES * LONG_FACTOR, deadline=None, print_blob=True)


def load_profile() -> None:
    """Load the profile HYPOTHESIS_PROFILE names (default `ci`)."""
    settings.load_profile(PROFILE)


def examples(n: int, long: int | None = None) -> settings:
    """Settings for a test of `n` examples under the `ci` profile (`long`, default
    LONG_FACTOR * n, under `long`), with no deadline; function-scoped fixtures allowed (they
    are set up once per test, which the tests here expect)."""
    return settings(
        max_examples=(n * LONG_FACTOR if long is None else long) if PROFILE == "long" else n,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )


# --- decimals -----------------------------------------------------------------------------

MAX_COLD: Final = Decimal("99999999999999999999.999999999999999999")  # decimal(38, 18)


@st.composite
def cold_decimals(draw: st.DrawFn, minimum: Decimal = -MAX_COLD, positive: bool = False) -> Decimal:
    """A Decimal within decimal(38, 18), >= `minimum` (> 0 when `positive`), any scale 0 to 18,
    often at the edges (one unit of 1E-18, 20 integer digits)."""
    scale = draw(st.integers(0, 18))
    top = 10 ** (20 + scale) - 1
    low = max(math.ceil(minimum * 10**scale), -top)
    low = max(low, 1) if positive else low
    edges = st.sampled_from([v for v in (low, 0, 1, top, low + 1) if low <= v <= top])
    coefficient = draw(st.one_of(edges, st.integers(low, top), st.integers(max(low, 0), min(top, 10**9))))
    return Decimal(f"{coefficient}E-{scale}")  # exact (scaleb would round to 28 digits)


def _plain(value: Decimal) -> str:
    return format(value, "f")


@st.composite
def decimal_text(draw: st.DrawFn, value: Decimal) -> str:
    """`value` as a producer may publish it: a JSON number or a string, plain, with extra
    trailing zeros, in exponent form, or (strings) with leading zeros, a plus or spaces."""
    plain = _plain(value)
    exponent = format(value, "e")
    padded = plain + ("" if "." in plain else ".") + "0" * draw(st.integers(1, 30))
    numbers = [plain, str(value), exponent, padded, exponent.upper()]
    if draw(st.booleans()):
        return draw(st.sampled_from(numbers))
    text = draw(st.sampled_from(numbers))
    if value >= 0 and draw(st.booleans()):
        text = draw(st.sampled_from(["+", "00", "+0"])) + text
    if draw(st.booleans()):
        text = draw(st.sampled_from([" ", "  ", "\t"])) + text + draw(st.sampled_from(["", " "]))
    return json.dumps(text)


def published_decimal(text: str) -> Decimal:
    """The value a published decimal's JSON text holds, read independently of tickvault."""
    value = json.loads(text, parse_float=Decimal)
    return Decimal(value.strip() if isinstance(value, str) else value)


# --- timestamps ---------------------------------------------------------------------------

MIN_TIME: Final = EPOCH
MS: Final = dt.timedelta(milliseconds=1)


@st.composite
def time_text(
    draw: st.DrawFn,
    lowest: dt.datetime = MIN_TIME,
    highest: dt.datetime = MAX_TIME,
    min_epoch_ms: int = MIN_EPOCH_MS,
) -> tuple[str, dt.datetime]:
    """(JSON text, instant) of a timestamp in [lowest, highest]: integer epoch milliseconds
    (not below `min_epoch_ms`) or ISO-8601 with an offset, microseconds and edges included."""
    lo_ms = max(min_epoch_ms, -(-(lowest - EPOCH) // MS))
    hi_ms = min(MAX_EPOCH_MS, (highest - EPOCH) // MS)
    if lo_ms <= hi_ms and draw(st.booleans()):
        ms = draw(st.one_of(st.sampled_from([lo_ms, hi_ms]), st.integers(lo_ms, hi_ms)))
        return str(ms), EPOCH + dt.timedelta(milliseconds=ms)
    naive = (lowest.replace(tzinfo=None), highest.replace(tzinfo=None))
    instant = draw(st.one_of(st.sampled_from(naive), st.datetimes(*naive))).replace(tzinfo=dt.UTC)
    offset = dt.timedelta(minutes=draw(st.sampled_from([0, 60, -90, 330, 1439, -1439, 0])))
    try:
        local = instant.astimezone(dt.timezone(offset))
        local.astimezone(dt.UTC)  # a local time after 9999-12-31 cannot be parsed back
    except OverflowError:
        local = instant
    text = local.isoformat(timespec=draw(st.sampled_from(["auto", "microseconds", "seconds"])))
    if local.isoformat(timespec="seconds") == text and local.microsecond:  # `seconds` drops them
        text = local.isoformat()
    finer = draw(st.one_of(st.just(""), st.from_regex(r"[0-9]{1,6}", fullmatch=True)))
    if finer:  # digits past the microsecond, as nanosecond clocks write: rounded half-even
        whole = instant.replace(microsecond=0)
        micros = round(Fraction(f"0.{instant.microsecond:06d}{finer}") * 10**6)
        if micros <= (highest - whole) // dt.timedelta(microseconds=1):  # not past `highest`
            rounded = whole + dt.timedelta(microseconds=micros)
            if lowest <= rounded:
                seconds = local.isoformat(timespec="microseconds")
                text, instant = seconds[:26] + finer + seconds[26:], rounded
    if text.endswith("+00:00") and draw(st.booleans()):
        text = text[:-6] + "Z"
    return json.dumps(text), instant


def published_time(text: str) -> dt.datetime:
    """The instant a published timestamp's JSON text holds, read independently of tickvault."""
    value = json.loads(text)
    if isinstance(value, int):
        return EPOCH + dt.timedelta(milliseconds=value)
    fine = _FRACTION.search(value)
    if fine is None:
        return dt.datetime.fromisoformat(value).astimezone(dt.UTC)
    whole = dt.datetime.fromisoformat(value[: fine.start()] + value[fine.end() :])
    micros = round(Fraction("0." + fine[1]) * 10**6)  # half-even, to PostgreSQL's microsecond
    return (whole + dt.timedelta(microseconds=micros)).astimezone(dt.UTC)


_FRACTION: Final = re.compile(r"(?<=[0-9]{2}:[0-9]{2}:[0-9]{2})[.,]([0-9]+)")  # of hh:mm:ss


# --- other fields -------------------------------------------------------------------------


def _pattern(pattern: str) -> st.SearchStrategy[str]:
    return st.from_regex(pattern, fullmatch=True)


def _json_text(value: Any) -> st.SearchStrategy[str]:
    """A string as JSON, with or without \\u escapes of its non-ASCII characters."""
    return st.sampled_from([json.dumps(value), json.dumps(value, ensure_ascii=False)])


TEXTS: Final = st.text(
    st.characters(codec="utf-8", exclude_categories=["Cc"]), min_size=1, max_size=TEXT_MAX_LENGTH
)
IDENTIFIERS: Final = {
    "exchange": _pattern(EXCHANGE_PATTERN), "symbol": _pattern(SYMBOL_PATTERN),
    "bot_id": _pattern(BOT_ID_PATTERN), "account": _pattern(BOT_ID_PATTERN),
    "asset": _pattern(ASSET_PATTERN), "fee_asset": _pattern(ASSET_PATTERN),
}  # fmt: skip
ENUMS: Final = {
    "side": ("buy", "sell", "BUY", "Sell"), "liquidity": ("maker", "taker", "MAKER"),
    "action": ("buy", "sell", "hold", "close", "HOLD"), "interval": INTERVALS,
}  # fmt: skip
TEXT_FIELDS: Final = ("order_id", "client_order_id", "fill_id", "trade_id", "strategy")


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
        self.message.fields[name] = self.draw(_json_text(value))

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
        TEXTS.flatmap(_json_text),
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
