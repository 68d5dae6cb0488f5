"""The kline interval grid: where the candles of each interval open.

Fixed intervals open at whole multiples of their length since the Unix epoch, except `1w`,
whose candles open on Mondays 00:00 UTC (as Binance's, and TimescaleDB's `time_bucket` of a
week, whose default origin 2000-01-03 is a Monday); `1M` opens on the first of each calendar
month, 00:00 UTC. All times here are epoch microseconds.
"""

from __future__ import annotations

import datetime as dt
from typing import Final

_S: Final = 1_000_000  # microseconds in a second
LENGTH_US: Final[dict[str, int]] = {
    "1s": _S, "1m": 60 * _S, "3m": 180 * _S, "5m": 300 * _S, "15m": 900 * _S, "30m": 1800 * _S,
    "1h": 3600 * _S, "2h": 7200 * _S, "4h": 14400 * _S, "6h": 21600 * _S, "8h": 28800 * _S,
    "12h": 43200 * _S, "1d": 86400 * _S, "3d": 259200 * _S, "1w": 604800 * _S,
}  # fmt: skip
ORIGIN_US: Final[dict[str, int]] = {"1w": 4 * 86400 * _S}  # 1970-01-05, a Monday
MONTH: Final = "1M"
_EPOCH: Final = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def to_us(t: dt.datetime) -> int:
    return (t - _EPOCH) // dt.timedelta(microseconds=1)


def from_us(us: int) -> dt.datetime:
    return _EPOCH + dt.timedelta(microseconds=us)


def ceil(us: int, interval: str) -> int:
    """The first open time of `interval` at or after `us`."""
    if interval == MONTH:
        t = from_us(us)
        first = t.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
        return to_us(first) if first == t else next_open(to_us(first), interval)
    length, origin = LENGTH_US[interval], ORIGIN_US.get(interval, 0)
    return origin + -((origin - us) // length) * length


def next_open(us: int, interval: str) -> int:
    """The open time after the grid point `us`."""
    if interval == MONTH:
        t = from_us(us)
        return to_us(t.replace(year=t.year + t.month // 12, month=t.month % 12 + 1))
    return us + LENGTH_US[interval]
