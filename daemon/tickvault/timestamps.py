"""Timestamps in messages: what is accepted, and UTC. No I/O.

A timestamp is an integer of epoch milliseconds or an ISO-8601 string with a UTC offset, held
as an aware UTC datetime. Every timestamp lies in TIME_RANGE, from the epoch to the end of
Python's datetime in 9999 (PostgreSQL's `timestamptz` goes further). An integer in another
unit would land in the wrong century rather than fail, so its size is checked: one below
`min_epoch_ms` (default MIN_EPOCH_MS, 1973) is refused as likely epoch seconds, one above the
range as likely micro- or nanoseconds.
"""

from __future__ import annotations

import datetime as dt
import re
from decimal import ROUND_HALF_EVEN, Context, Decimal, InvalidOperation
from typing import Any, Final

EPOCH: Final = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
MAX_TIME: Final = dt.datetime.max.replace(tzinfo=dt.UTC)  # 9999-12-31T23:59:59.999999Z
TIME_RANGE: Final = "1970-01-01T00:00:00Z..9999-12-31T23:59:59.999999Z"
MAX_EPOCH_MS: Final = 253_402_300_799_999  # 9999-12-31T23:59:59.999Z
MAX_EPOCH_US: Final = MAX_EPOCH_MS * 1000 + 999
MAX_EPOCH_NS: Final = MAX_EPOCH_US * 1000 + 999
# 1973-03-03T09:46:40Z in milliseconds. Below it, an integer read as epoch seconds is a date
# from 1970 to the year 5138, so any producer's seconds are refused rather than stored in 1970.
MIN_EPOCH_MS: Final = 100_000_000_000
_MS_RANGE: Final = f"0..{MAX_EPOCH_MS} (1970-01-01T00:00:00Z..9999-12-31T23:59:59.999Z)"
_NOT_A_TIME: Final = "timestamp must be epoch milliseconds or an ISO-8601 string"
_FORMS: Final = "timestamps are integer epoch milliseconds or ISO-8601 strings"
_YEAR_AFTER_9999: Final = re.compile(r"\+?0*[1-9][0-9]{4,}-[0-9]{2}-[0-9]{2}")
# a fraction of the seconds of the time of day (hh:mm:ss or hhmmss), before the offset
_SECONDS_FRACTION: Final = re.compile(
    r"(?:(?<=[0-9]{2}:[0-9]{2}:[0-9]{2})|(?<=[Tt ][0-9]{6}))[.,]([0-9]+)(?=[Zz+-]|$)"
)
_MICROSECOND: Final = Decimal("0.000001")
_HALF_EVEN: Final = Context(prec=9, rounding=ROUND_HALF_EVEN)  # whatever the caller's context
_FRACTIONAL_OFFSET: Final = re.compile(r"[+-][0-9]{2}:?[0-9]{2}:?[0-9]{2}[.,][0-9]+$")


def parse_timestamp(value: Any, min_epoch_ms: int = 0) -> dt.datetime:
    """Epoch milliseconds, an ISO-8601 string with an offset, or an aware datetime → UTC.

    Raises ValueError saying why when the instant is outside TIME_RANGE, or when an integer
    is below `min_epoch_ms` or above the range (then naming the unit it likely is in).
    """
    if isinstance(value, bool):
        raise ValueError(_NOT_A_TIME)
    if isinstance(value, int):
        return EPOCH + dt.timedelta(milliseconds=_epoch_ms(value, min_epoch_ms))
    if isinstance(value, float | Decimal):
        raise ValueError(_fraction_reason(value))
    if isinstance(value, str):
        value = _iso(value)
    if isinstance(value, dt.datetime):
        return _utc(value)
    raise ValueError(_NOT_A_TIME)


def _iso(text: str) -> dt.datetime:
    """An ISO-8601 string → datetime. A fraction of a second finer than the microsecond
    (`…:00.9999999Z`, as nanosecond clocks write) is rounded half-even to the microsecond,
    as PostgreSQL rounds its input, rather than cut short as `fromisoformat` cuts it. A
    fraction anywhere but after the seconds is refused (`fromisoformat` drops an offset's and
    reads a minute's or an hour's as a second's)."""
    micros, fine = 0, None
    if "." in text or "," in text:
        if _FRACTIONAL_OFFSET.search(text):  # which fromisoformat ignores: +00:00:00.5 as +00:00
            raise ValueError("not an ISO-8601 timestamp: a UTC offset has no fraction of a second")
        fine = _SECONDS_FRACTION.search(text)
        # fromisoformat reads 00:00.5 (half a minute) and 00.5 (half an hour) as half a second,
        # and takes 00:00:00.1234567.5 as 00:00:00.123456
        if fine is None or text.count(".") + text.count(",") > 1:
            raise ValueError("not an ISO-8601 timestamp: a fraction must follow the seconds")
        if len(fine[1]) <= 6:
            fine = None
    if fine is not None:
        micros = int(Decimal(f"0.{fine[1]}").quantize(_MICROSECOND, context=_HALF_EVEN).scaleb(6, _HALF_EVEN))
        text = text[: fine.start()] + text[fine.end() :]  # the whole seconds, and what follows
    try:
        parsed = dt.datetime.fromisoformat(text)
    except ValueError:
        # ISO-8601 writes years past 9999 with more digits, which datetime cannot parse
        raise ValueError(
            f"outside {TIME_RANGE}" if _YEAR_AFTER_9999.match(text) else "not an ISO-8601 timestamp"
        ) from None
    try:
        return parsed + dt.timedelta(microseconds=micros) if micros else parsed
    except OverflowError:  # 9999-12-31T23:59:59.9999995Z rounds past the end of datetime
        raise ValueError(f"outside {TIME_RANGE}") from None


def _epoch_ms(value: int, min_epoch_ms: int) -> int:
    if 0 <= value < min_epoch_ms:
        floor = (EPOCH + dt.timedelta(milliseconds=min_epoch_ms)).isoformat().replace("+00:00", "Z")
        raise ValueError(
            f"looks like epoch seconds; timestamps are epoch milliseconds, from {min_epoch_ms} "
            f"({floor}) unless source.min_epoch_ms is lowered"
        )
    if MAX_EPOCH_MS < value <= MAX_EPOCH_NS:
        unit = "microseconds" if value <= MAX_EPOCH_US else "nanoseconds"
        raise ValueError(f"looks like epoch {unit}; timestamps are epoch milliseconds, {_MS_RANGE}")
    if not 0 <= value <= MAX_EPOCH_MS:
        raise ValueError(f"epoch milliseconds outside {_MS_RANGE}")
    return value


def _fraction_reason(value: float | Decimal) -> str:
    try:
        seconds = 0 <= value < MIN_EPOCH_MS
    except InvalidOperation:  # a Decimal NaN, from a Python caller
        seconds = False
    if seconds:
        return f"a number with a fraction or exponent looks like epoch seconds; {_FORMS}"
    return f"{_FORMS}, not numbers with a fraction or exponent"


def _utc(value: dt.datetime) -> dt.datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("timestamp has no UTC offset; naive timestamps are ambiguous")
    try:
        utc = value.astimezone(dt.UTC)
    except OverflowError:  # e.g. 9999-12-31T23:00:00-02:00, after the end of datetime
        raise ValueError(f"outside {TIME_RANGE}") from None
    if utc < EPOCH:
        raise ValueError(f"outside {TIME_RANGE}")
    return utc


def parse_epoch_ms_or_us(value: int, min_epoch_ms: int = 0) -> dt.datetime:
    """An integer of epoch milliseconds or microseconds → UTC, the unit told by its size as
    `parse_timestamp` tells it: up to MAX_EPOCH_MS it is milliseconds, above that and up to
    MAX_EPOCH_US microseconds (for files that mix both, as exchanges' dumps do).

    Raises ValueError saying why for a negative value, one below `min_epoch_ms` (likely
    seconds) or one above MAX_EPOCH_US (likely nanoseconds).
    """
    if MAX_EPOCH_MS < value <= MAX_EPOCH_US:
        return EPOCH + dt.timedelta(microseconds=value)
    if value > MAX_EPOCH_US:
        raise ValueError("looks like epoch nanoseconds; expected epoch milliseconds or microseconds")
    return EPOCH + dt.timedelta(milliseconds=_epoch_ms(value, min_epoch_ms))
