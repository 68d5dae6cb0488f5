"""Holes in a kline series: the open times of the interval grid (reads.intervals) within a
window that no stored candle has, as half-open ranges.

A range [start, end) means: every grid open time t with start <= t < end is missing; `end` is
the next stored candle's open time, or the window's end. Candles are expected on the grid:
between two stored open times, a hole is reported when they lie more than one interval apart.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc

from tickvault.reads.intervals import LENGTH_US, MONTH, ceil, from_us, next_open


@dataclass(frozen=True)
class Gap:
    start: dt.datetime  # the first missing open time (UTC)
    end: dt.datetime  # exclusive: the next stored open time, or the window's end
    candles: int  # missing open times in [start, end)


def holes(open_times: pa.ChunkedArray | pa.Array, start_us: int, end_us: int, interval: str) -> list[Gap]:
    """The gaps of sorted, distinct `open_times` (timestamp[us]) in [start_us, end_us)."""
    times = pc.cast(open_times, pa.int64()).to_pylist() if interval == MONTH else None
    if times is not None or len(open_times) == 0:
        return _walk(times or [], start_us, end_us, interval)
    us = pc.cast(open_times, pa.int64())
    out: list[Gap] = []
    first_due = ceil(start_us, interval)
    first = us[0].as_py()
    if first_due < first:
        out.append(_gap(first_due, first, interval))
    if len(us) > 1:
        step = LENGTH_US[interval]
        later, earlier = us.slice(1), us.slice(0, len(us) - 1)
        jumps = pc.greater(pc.subtract(later, earlier), step)
        for i in pc.indices_nonzero(jumps).to_pylist():
            due = ceil(earlier[i].as_py() + 1, interval)
            if due < later[i].as_py():
                out.append(_gap(due, later[i].as_py(), interval))
    due = ceil(us[len(us) - 1].as_py() + 1, interval)
    if due < end_us:
        out.append(_gap(due, end_us, interval))
    return out


def _walk(times: list[int], start_us: int, end_us: int, interval: str) -> list[Gap]:
    """The same by stepping the grid: for calendar months, or when nothing is stored."""
    out: list[Gap] = []
    stored = iter([*times, end_us])
    due = ceil(start_us, interval)
    for t in stored:
        if due < t and due < end_us:
            out.append(_gap(due, min(t, end_us), interval))
        due = ceil(t + 1, interval) if t < end_us else due
    return out


def _gap(start_us: int, end_us: int, interval: str) -> Gap:
    if interval == MONTH:
        n, t = 0, start_us
        while t < end_us:
            n, t = n + 1, next_open(t, interval)
    else:
        n = -((start_us - end_us) // LENGTH_US[interval])
    return Gap(from_us(start_us), from_us(end_us), n)
