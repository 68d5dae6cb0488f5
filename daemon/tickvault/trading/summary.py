"""The trading summary of a set of fills over a window [start, end): one row of SCHEMA. No I/O:
`Vault.trading_summary` reads the fills before `end` (hot and cold) and calls `table`.

Every position is replayed from its first fill (`positions.replay`), so a position opened
before `start` closes at its true average entry price; the figures then count what happened
in the window:

- fills: fills with start <= ts < end.
- realized_pnl, fees, other_fees, net_pnl: realized by, and paid on, those fills (quote
  asset; other_fees per asset, not converted; net_pnl = realized_pnl - fees).
- round_trips: round trips (book.Trip: flat → flat, or up to a flip) that closed in the
  window; each counts with its whole net PnL (realized minus its quote fees), also the part
  from before `start`. wins: net PnL > 0; losses: net PnL < 0; a trip at exactly 0 is
  neither.
- win_rate = wins / round_trips (null without round trips).
- average_win = gross wins / wins, average_loss = gross losses / losses (negative); null
  without wins or losses.
- profit_factor = gross wins / |gross losses|; null when there is no losing trip (0/0 or
  x/0: undefined, as backtesting.py's NaN), 0 when there are losses and no wins.
- max_drawdown: the largest fall, from a running peak, of the curve of cumulative net PnL
  (realized - quote fees) after each fill of the window, starting at 0 at `start`; >= 0, in
  the quote asset. The curve takes fills in (ts, exchange, symbol, fill_id) order.

Ratios are rounded half to even to 18 places; sums are exact (book.EXACT), shown at 18
places as every output decimal (positions.out).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Final

import pyarrow as pa
import pyarrow.compute as pc

from tickvault.reads.columns import DECIMAL, TIME
from tickvault.trading import positions
from tickvault.trading.book import EXACT, ZERO, Step, Trip, divide

SCHEMA: Final = pa.schema(
    [
        ("fills", pa.int64()),
        ("round_trips", pa.int64()),
        ("wins", pa.int64()),
        ("losses", pa.int64()),
        ("realized_pnl", DECIMAL),
        ("fees", DECIMAL),
        ("other_fees", positions.OTHER_FEES),
        ("net_pnl", DECIMAL),
        ("win_rate", DECIMAL),
        ("average_win", DECIMAL),
        ("average_loss", DECIMAL),
        ("profit_factor", DECIMAL),
        ("max_drawdown", DECIMAL),
        ("first_fill_at", TIME),
        ("last_fill_at", TIME),
    ]
)
FILL_COLUMNS: Final = positions.FILL_COLUMNS


@dataclass
class _Window:
    """What the fills of the window add up to, gathered fill by fill."""

    start_us: int | None
    ts: list[int]
    steps: dict[int, Step] = field(default_factory=dict)
    trips: list[Trip] = field(default_factory=list)

    def __call__(self, i: int, step: Step) -> None:
        if self.start_us is None or self.ts[i] >= self.start_us:
            self.steps[i] = step
        trip = step.trip
        if trip is not None and (self.start_us is None or trip.closed_at_us >= self.start_us):
            self.trips.append(trip)


def table(fills: pa.Table, start_us: int | None = None) -> pa.Table:
    """The summary (one row of SCHEMA) of `fills` (every fill before the window's end, any
    order, at least FILL_COLUMNS) over the window from `start_us` (epoch µs; None: from the
    first fill)."""
    prepared = positions.prepare(fills)
    ts = prepared.column("ts").cast(pa.int64()).to_pylist() if prepared.num_rows else []
    window = _Window(start_us, ts)
    for _ in positions.replay(prepared, window):
        pass
    in_time = _time_order(prepared, window)
    row = _totals(window, in_time) | _trips(window.trips) | {"max_drawdown": _drawdown(window, in_time)}
    row["first_fill_at"] = ts[in_time[0]] if in_time else None
    row["last_fill_at"] = ts[in_time[-1]] if in_time else None
    return pa.Table.from_pylist([row], schema=SCHEMA)


def _time_order(prepared: pa.Table, window: _Window) -> list[int]:
    """Row numbers of the window's fills in (ts, exchange, symbol, fill_id) order."""
    if not window.steps:
        return []
    keys = [(c, "ascending") for c in ("ts", "exchange", "symbol", "fill_id")]
    return [i for i in pc.sort_indices(prepared, sort_keys=keys).to_pylist() if i in window.steps]


def _totals(window: _Window, in_time: list[int]) -> dict[str, Any]:
    realized = fees = ZERO
    other: dict[str, Decimal] = {}
    for i in in_time:
        step = window.steps[i]
        realized = EXACT.add(realized, step.realized_pnl)
        fees = EXACT.add(fees, step.quote_fee)
        if step.other_fee is not None:
            asset, fee = step.other_fee
            other[asset] = EXACT.add(other.get(asset, ZERO), fee)
    return {
        "fills": len(in_time),
        "realized_pnl": positions.out(realized),
        "fees": positions.out(fees),
        "other_fees": positions.other_fees(other),
        "net_pnl": positions.out(EXACT.subtract(realized, fees)),
    }


def _trips(trips: list[Trip]) -> dict[str, Any]:
    wins = [t.net_pnl for t in trips if t.net_pnl > 0]
    losses = [t.net_pnl for t in trips if t.net_pnl < 0]
    gross_win, gross_loss = _sum(wins), _sum(losses)
    return {
        "round_trips": len(trips),
        "wins": len(wins),
        "losses": len(losses),
        "win_rate": positions.out(divide(Decimal(len(wins)), Decimal(len(trips)))) if trips else None,
        "average_win": positions.out(divide(gross_win, Decimal(len(wins)))) if wins else None,
        "average_loss": positions.out(divide(gross_loss, Decimal(len(losses)))) if losses else None,
        "profit_factor": positions.out(divide(gross_win, -gross_loss)) if losses else None,
    }


def _sum(values: list[Decimal]) -> Decimal:
    total = ZERO
    for v in values:
        total = EXACT.add(total, v)
    return total


def _drawdown(window: _Window, in_time: list[int]) -> Decimal | None:
    value = peak = deepest = ZERO
    for i in in_time:
        step = window.steps[i]
        value = EXACT.add(value, EXACT.subtract(step.realized_pnl, step.quote_fee))
        peak = max(peak, value)
        deepest = max(deepest, EXACT.subtract(peak, value))
    return positions.out(deepest)
