"""The time range and the unit rule of integer timestamps, through `native.decode`.

One range for both forms: 1970-01-01T00:00:00Z to 9999-12-31T23:59:59.999999Z (epoch
milliseconds 0..253402300799999). Integers are epoch milliseconds; one below the floor
(`min_epoch_ms`, default 100000000000 = 1973-03-03T09:46:40Z) is refused as likely epoch
seconds, one above the range as likely micro- or nanoseconds. ISO-8601 strings are not
subject to the floor. Every refusal names the field and the range or the likely unit.
"""

from __future__ import annotations

import datetime as dt
from typing import Final

import pytest

from tests.unit.test_records import FILL, KLINE, raw
from tickvault.codecs.native import decode
from tickvault.errors import RecordError
from tickvault.timestamps import MIN_EPOCH_MS, parse_timestamp

MS_RANGE: Final = "0..253402300799999 (1970-01-01T00:00:00Z..9999-12-31T23:59:59.999Z)"
ISO_RANGE: Final = "1970-01-01T00:00:00Z..9999-12-31T23:59:59.999999Z"
TO_MS: Final = "timestamps are epoch milliseconds"
AS_SECONDS: Final = (
    f"looks like epoch seconds; {TO_MS}, from 100000000000 (1973-03-03T09:46:40Z) "
    "unless source.min_epoch_ms is lowered"
)
AS_FRACTION: Final = (
    "a number with a fraction or exponent looks like epoch seconds; "
    "timestamps are integer epoch milliseconds or ISO-8601 strings"
)


def utc(*args: int) -> dt.datetime:
    return dt.datetime(*args, tzinfo=dt.UTC)


def fill_ts(text: str, min_epoch_ms: int = MIN_EPOCH_MS) -> dt.datetime:
    return decode(raw(FILL, ts=text), "fill", min_epoch_ms).ts


def fill_reason(text: str, min_epoch_ms: int = MIN_EPOCH_MS) -> str:
    with pytest.raises(RecordError) as info:
        decode(raw(FILL, ts=text), "fill", min_epoch_ms)
    assert info.value.category == "invalid"
    return info.value.reason


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0", utc(1970, 1, 1)),
        ("253402300799999", utc(9999, 12, 31, 23, 59, 59, 999000)),
        ('"1970-01-01T00:00:00Z"', utc(1970, 1, 1)),
        ('"1970-01-01T01:00:00+01:00"', utc(1970, 1, 1)),
        ('"9999-12-31T23:59:59.999999Z"', utc(9999, 12, 31, 23, 59, 59, 999999)),
        ('"9999-12-31T23:59:59.999999+00:00"', utc(9999, 12, 31, 23, 59, 59, 999999)),
    ],
)
def test_both_ends_of_the_range_are_accepted(text: str, expected: dt.datetime) -> None:
    assert fill_ts(text, min_epoch_ms=0) == expected
    kline = decode(raw(KLINE, open_time=text, close_time="null"), "kline", 0)
    assert kline.open_time == expected


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("-1", f"epoch milliseconds outside {MS_RANGE}"),
        ("-1767225600000", f"epoch milliseconds outside {MS_RANGE}"),
        ("253402300800000", f"looks like epoch microseconds; {TO_MS}, {MS_RANGE}"),
        ("253402300799999999999999", f"epoch milliseconds outside {MS_RANGE}"),
        ('"1969-12-31T23:59:59.999999Z"', f"outside {ISO_RANGE}"),
        ('"1970-01-01T00:59:59+01:00"', f"outside {ISO_RANGE}"),
        ('"9999-12-31T23:59:59.999999-00:01"', f"outside {ISO_RANGE}"),
        ('"0001-01-01T00:00:00+01:00"', f"outside {ISO_RANGE}"),
        ('"10000-01-01T00:00:00Z"', f"outside {ISO_RANGE}"),
        ('"+10000-01-01T00:00:00Z"', f"outside {ISO_RANGE}"),
    ],
)
def test_one_past_either_end_is_invalid_naming_the_field_and_the_range(text: str, reason: str) -> None:
    for floor in (0, MIN_EPOCH_MS):
        assert fill_reason(text, floor) == f"invalid fill: ts: {reason}"


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("1735689600", AS_SECONDS),  # 2025-01-01 in seconds
        ("0", AS_SECONDS),
        ("99999999999", AS_SECONDS),
        ("1735689600000000", f"looks like epoch microseconds; {TO_MS}, {MS_RANGE}"),  # Binance spot, 2025
        ("253402300799999999", f"looks like epoch microseconds; {TO_MS}, {MS_RANGE}"),
        ("253402300800000000", f"looks like epoch nanoseconds; {TO_MS}, {MS_RANGE}"),
        ("1735689600000000000", f"looks like epoch nanoseconds; {TO_MS}, {MS_RANGE}"),
        ("1735689600.123", AS_FRACTION),  # cryptofeed
        ("1735689600.0", AS_FRACTION),
        ("1.7356896e9", AS_FRACTION),
        ("1735689600000.5", "timestamps are integer epoch milliseconds or ISO-8601 strings, "
         "not numbers with a fraction or exponent"),
    ],
)  # fmt: skip
def test_an_integer_in_another_unit_is_invalid_naming_the_likely_unit(text: str, reason: str) -> None:
    assert fill_reason(text) == f"invalid fill: ts: {reason}"


def test_the_floor_is_the_first_millisecond_accepted() -> None:
    assert fill_ts("100000000000") == utc(1973, 3, 3, 9, 46, 40)
    assert fill_reason("99999999999").startswith("invalid fill: ts: looks like epoch seconds")


def test_a_lowered_floor_takes_small_integers_as_milliseconds() -> None:
    assert fill_ts("1735689600", min_epoch_ms=0) == utc(1970, 1, 21, 2, 8, 9, 600000)
    assert fill_ts("86400000", min_epoch_ms=86_400_000) == utc(1970, 1, 2)
    reason = fill_reason("86399999", min_epoch_ms=86_400_000)
    assert reason == (
        f"invalid fill: ts: looks like epoch seconds; {TO_MS}, from 86400000 (1970-01-02T00:00:00Z) "
        "unless source.min_epoch_ms is lowered"
    )


def test_iso_strings_are_not_subject_to_the_floor() -> None:
    assert fill_ts('"1970-01-02T00:00:00Z"') == utc(1970, 1, 2)


def test_every_time_field_follows_the_rule() -> None:
    with pytest.raises(RecordError, match="close_time: looks like epoch seconds"):
        decode(raw(KLINE, close_time="1767225659"), "kline")
    with pytest.raises(RecordError, match="open_time: looks like epoch microseconds"):
        decode(raw(KLINE, open_time="1767225600000000", close_time="null"), "kline")


def test_query_bounds_have_no_floor_but_the_range() -> None:
    # `tickvault query --start 0` and Vault bounds: epoch ms from 0, within the range
    assert parse_timestamp(0) == utc(1970, 1, 1)
    with pytest.raises(ValueError, match="outside 1970"):
        parse_timestamp("1969-12-31T23:00:00Z")
