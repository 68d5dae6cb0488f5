"""The interval grid and the holes in it (tickvault.reads.intervals, tickvault.reads.gaps)."""

from __future__ import annotations

import datetime as dt

import pyarrow as pa
import pytest

from tickvault.reads.gaps import Gap, holes
from tickvault.reads.intervals import ceil, from_us, next_open, to_us


def t(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).replace(tzinfo=dt.UTC)


def us(*texts: str) -> pa.Array:
    return pa.array([t(x) for x in texts], pa.timestamp("us", tz="UTC"))


def gaps(times: pa.Array, start: str, end: str, interval: str) -> list[tuple[str, str, int]]:
    found = holes(times, to_us(t(start)), to_us(t(end)), interval)
    return [(g.start.isoformat()[:16], g.end.isoformat()[:16], g.candles) for g in found]


@pytest.mark.parametrize(
    ("at", "interval", "first"),
    [
        ("2026-01-01T00:00:00", "1m", "2026-01-01T00:00:00"),
        ("2026-01-01T00:00:01", "1m", "2026-01-01T00:01:00"),
        ("2026-01-01T00:07:00", "15m", "2026-01-01T00:15:00"),
        ("2026-01-01T00:00:00", "1w", "2026-01-05T00:00:00"),  # weeks open on Mondays
        ("2026-01-05T00:00:00", "1w", "2026-01-05T00:00:00"),
        ("2026-01-02T00:00:00", "3d", "2026-01-04T00:00:00"),  # epoch day 20457 = 3 x 6819
        ("2026-01-15T12:00:00", "1M", "2026-02-01T00:00:00"),
        ("2026-12-01T00:00:00", "1M", "2026-12-01T00:00:00"),
        ("1969-12-31T23:59:30", "1m", "1970-01-01T00:00:00"),
    ],
)
def test_first_open_time_at_or_after(at: str, interval: str, first: str) -> None:
    assert from_us(ceil(to_us(t(at)), interval)) == t(first)


def test_months_roll_over_the_year() -> None:
    assert from_us(next_open(to_us(t("2026-12-01T00:00:00")), "1M")) == t("2027-01-01T00:00:00")


def test_holes_inside_before_and_after_the_stored_candles() -> None:
    times = us("2026-01-01T00:02:00", "2026-01-01T00:03:00", "2026-01-01T00:07:00", "2026-01-01T00:08:00")
    assert gaps(times, "2026-01-01T00:00:00", "2026-01-01T00:10:00", "1m") == [
        ("2026-01-01T00:00", "2026-01-01T00:02", 2),
        ("2026-01-01T00:04", "2026-01-01T00:07", 3),
        ("2026-01-01T00:09", "2026-01-01T00:10", 1),
    ]


def test_no_hole_in_a_full_series_and_the_whole_window_when_nothing_is_stored() -> None:
    full = us(*(f"2026-01-01T00:0{i}:00" for i in range(5)))
    assert gaps(full, "2026-01-01T00:00:00", "2026-01-01T00:05:00", "1m") == []
    assert gaps(us(), "2026-01-01T00:00:30", "2026-01-01T00:05:00", "1m") == [
        ("2026-01-01T00:01", "2026-01-01T00:05", 4)
    ]
    assert gaps(us(), "2026-01-01T00:00:30", "2026-01-01T00:01:00", "1m") == []  # no grid point inside


def test_holes_of_weeks_and_months() -> None:
    weeks = us("2026-01-05T00:00:00", "2026-01-26T00:00:00")
    assert gaps(weeks, "2026-01-01T00:00:00", "2026-02-03T00:00:00", "1w") == [
        ("2026-01-12T00:00", "2026-01-26T00:00", 2),
        ("2026-02-02T00:00", "2026-02-03T00:00", 1),
    ]
    months = us("2026-01-01T00:00:00", "2026-04-01T00:00:00")
    assert gaps(months, "2025-11-15T00:00:00", "2026-06-01T00:00:00", "1M") == [
        ("2025-12-01T00:00", "2026-01-01T00:00", 1),
        ("2026-02-01T00:00", "2026-04-01T00:00", 2),
        ("2026-05-01T00:00", "2026-06-01T00:00", 1),
    ]


def test_gap_is_a_value() -> None:
    g = holes(
        us("2026-01-01T00:00:00"), to_us(t("2026-01-01T00:00:00")), to_us(t("2026-01-01T00:02:00")), "1m"
    )
    assert g == [Gap(t("2026-01-01T00:01:00"), t("2026-01-01T00:02:00"), 1)]
