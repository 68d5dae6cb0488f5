"""Resampling klines to a higher interval (tickvault.reads.resample), on Arrow tables."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pyarrow as pa

from tickvault.reads.columns import SPECS
from tickvault.reads.resample import SOURCE_COLUMNS, resample, sources

UTC = dt.UTC


def days(first: dt.date, n: int, closed: bool = True) -> pa.Table:
    rows = []
    for i in range(n):
        d = first + dt.timedelta(days=i)
        rows.append({
            "exchange": "x", "symbol": "S", "open_time": dt.datetime(d.year, d.month, d.day, tzinfo=UTC),
            "open": Decimal(i + 10), "high": Decimal(i + 20), "low": Decimal(i + 1), "close": Decimal(i + 11),
            "volume": Decimal("0.5"), "quote_volume": Decimal(1) if i else None, "trades": 2,
            "closed": closed,
        })  # fmt: skip
    schema = SPECS["klines"].schema(tuple(SOURCE_COLUMNS))
    return pa.Table.from_pylist(rows, schema)


def test_weeks_open_on_monday_and_months_know_their_length() -> None:
    weeks = resample(days(dt.date(2026, 1, 1), 14), "1d", "1w").to_pylist()  # Thu 1 Jan .. Wed 14 Jan
    assert [(w["open_time"].date(), w["closed"]) for w in weeks] == [
        (dt.date(2025, 12, 29), False), (dt.date(2026, 1, 5), True), (dt.date(2026, 1, 12), False)
    ]  # fmt: skip
    assert weeks[1]["close_time"] == dt.datetime(2026, 1, 11, 23, 59, 59, 999000, tzinfo=UTC)
    assert (weeks[1]["open"], weeks[1]["close"], weeks[1]["high"], weeks[1]["low"]) == (14, 21, 30, 5)
    assert weeks[1]["volume"] == Decimal("3.5") and weeks[1]["trades"] == 14
    assert weeks[0]["quote_volume"] is None and weeks[1]["quote_volume"] == 7  # one source lacked it
    months = resample(days(dt.date(2026, 2, 1), 28 + 31), "1d", "1M").to_pylist()
    assert [(m["open_time"].date(), m["closed"], m["interval"]) for m in months] == [
        (dt.date(2026, 2, 1), True, "1M"), (dt.date(2026, 3, 1), True, "1M")
    ]  # fmt: skip
    assert resample(days(dt.date(2026, 2, 1), 28, closed=False), "1d", "1M").column("closed").to_pylist() == [
        False
    ]


def test_sources_divide_the_target() -> None:
    assert sources("1h") == ["30m", "15m", "5m", "3m", "1m", "1s"]
    assert sources("1w") == ["1d", "12h", "8h", "6h", "4h", "2h", "1h", "30m", "15m", "5m", "3m", "1m", "1s"]
    assert sources("3d") == ["1d", "12h", "8h", "6h", "4h", "2h", "1h", "30m", "15m", "5m", "3m", "1m", "1s"]
    assert "1w" not in sources("1M") and "3d" not in sources("1M") and sources("1m") == ["1s"]
