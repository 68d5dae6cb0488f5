"""Hypothesis profiles and the strategies the property tests share.

Profiles (`HYPOTHESIS_PROFILE`, loaded by tests/conftest.py):
- `ci` (the default): modest example counts and no deadline, so every property test file
  runs in seconds;
- `long`: LONG_FACTOR times as many examples, for a search before a release
  (`HYPOTHESIS_PROFILE=long pytest tests/unit tests/integration/test_roundtrip_properties.py`).
A test states its count for the `ci` profile with `examples(n)`; the profile scales it.

Values are drawn as published text with the value the store must keep for it alongside (a
Decimal equal to the text sent, an instant equal to the one sent), so a property can
compare what a codec gives with what was sent without going through the code under test;
tests/property_messages.py builds whole messages of them.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import re
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


def json_text(value: Any) -> st.SearchStrategy[str]:
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
