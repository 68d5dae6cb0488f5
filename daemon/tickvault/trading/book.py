"""One position by the average-cost method, a fill at a time. Pure and exact; no I/O.

A `Book` holds the position of one (bot_id, exchange, symbol) and `apply` takes its fills in
order (callers order them by (ts, fill_id)). The rules:

- The quantity is signed: buys add, sells subtract; > 0 long, < 0 short.
- A fill on the side of the position (or from flat) adds to it: the entry cost grows by
  quantity x price, and the average entry price is cost / |quantity|.
- A fill against the position reduces it at the average entry price and realizes
  closed x (price - average) for a long, closed x (average - price) for a short; the entry
  cost drops by closed x average, and the average entry price of what remains is unchanged.
  A fill that closes all of it realizes closed x price - cost (cost - closed x price for a
  short): a round trip's realized PnL is exactly its proceeds minus its costs, whatever the
  rounding of the average (below) on the way.
- A fill larger than the position flips it: the whole position closes at the average entry
  price (realizing PnL), and the remainder opens the other side at the fill's price.
- Fees: a fee in the quote asset (`fee_in_quote`) adds to `fees` and to the net PnL; a fee
  in any other asset (BNB, the base asset) is kept per asset in `other_fees`, never converted
  and never subtracted from PnL or quantity.
- A round trip runs from the fill that opens a position (from flat, or the remainder of a
  flip) to the fill that makes it flat or flips it. Its net PnL is the PnL it realized minus
  the quote fees of its fills; a flipping fill's quote fee is shared between the trip it
  closes and the one it opens in proportion to the quantities (closed share rounded to
  SCALE places, the rest to the new trip, so the two add up exactly).

Exactness: sums and products run in `EXACT`, a decimal context that raises on any rounding
(decimal.Inexact), with 200 digits — far beyond what decimal(38, 18) operands need. The one
division, the average entry price (and the fee share of a flip), is rounded once, half to
even, to SCALE = 18 places (`divide`, in integers), when a fill adds to the
position; a partial close realizes against that average and leaves it as it is, and the
full close settles what the rounding left (above). `rounded` brings a value to 18 places
for decimal(38, 18) output.
"""

from __future__ import annotations

import decimal
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Final

from tickvault.decimals import COLD_SCALE

SCALE: Final = COLD_SCALE  # fractional digits of averages and of every output value
EXACT: Final = decimal.Context(
    prec=200,
    rounding=decimal.ROUND_HALF_EVEN,
    traps=[decimal.Inexact, decimal.InvalidOperation, decimal.DivisionByZero, decimal.Overflow],
)
_ROUNDING: Final = decimal.Context(
    prec=200, rounding=decimal.ROUND_HALF_EVEN, traps=[decimal.InvalidOperation]
)
_QUANTUM: Final = Decimal(1).scaleb(-SCALE)
ZERO: Final = Decimal(0)
_UNIT: Final = 10**SCALE


def divide(numerator: Decimal, denominator: Decimal) -> Decimal:
    """numerator / denominator rounded once, half to even, to SCALE places (exact when the
    quotient has at most SCALE places). Raises ZeroDivisionError for a zero denominator."""
    top, bottom = numerator.as_integer_ratio()
    over, under = denominator.as_integer_ratio()
    if not over:
        raise ZeroDivisionError(f"{numerator} / 0")
    if over < 0:
        top, over = -top, -over
    whole, rest = divmod(top * under * _UNIT, bottom * over)  # floor, 0 <= rest < divisor
    twice, divisor = 2 * rest, bottom * over
    if twice > divisor or (twice == divisor and whole % 2):
        whole += 1
    return Decimal(whole).scaleb(-SCALE, context=EXACT)


def rounded(value: Decimal) -> Decimal:
    """The value rounded half to even to SCALE places, as decimal(38, 18) holds it."""
    return value.quantize(_QUANTUM, context=_ROUNDING)


@dataclass(frozen=True)
class Trip:
    """A finished round trip: open and close times (epoch microseconds), the PnL it
    realized, its quote fees, and `net_pnl` = realized_pnl - fees. Decimals exact."""

    opened_at_us: int
    closed_at_us: int
    realized_pnl: Decimal
    fees: Decimal

    @property
    def net_pnl(self) -> Decimal:
        return EXACT.subtract(self.realized_pnl, self.fees)


@dataclass(frozen=True)
class Step:
    """What one fill did: PnL it realized, its fee in the quote asset (0 when the fee is in
    another asset), the round trip it finished (if any), and its fee in another asset as
    (asset, fee) (None when the fee is in the quote asset or 0)."""

    realized_pnl: Decimal
    quote_fee: Decimal
    trip: Trip | None = None
    other_fee: tuple[str, Decimal] | None = None


@dataclass
class Book:
    """The position of one (bot_id, exchange, symbol). `quantity` signed; `cost` the entry
    cost of the open quantity (>= 0); `realized_pnl` and `fees` (quote asset) over every fill
    applied; `other_fees` per asset; `opened_at_us` when the open position was opened (None
    when flat); `closed_at_us` the last time it became flat (or flipped), None if never;
    times in epoch microseconds."""

    quantity: Decimal = ZERO
    cost: Decimal = ZERO
    realized_pnl: Decimal = ZERO
    fees: Decimal = ZERO
    other_fees: dict[str, Decimal] = field(default_factory=dict)
    fills: int = 0
    opened_at_us: int | None = None
    closed_at_us: int | None = None
    last_fill_at_us: int | None = None
    _trip_pnl: Decimal = ZERO
    _trip_fees: Decimal = ZERO
    _average: Decimal | None = None  # cache of cost / |quantity|, None when stale

    @property
    def average_price(self) -> Decimal | None:
        """cost / |quantity| as of the last fill that added to the position, rounded to SCALE
        places (`divide`); reductions leave it as it is. None when flat."""
        if not self.quantity:
            return None
        if self._average is None:
            self._average = divide(self.cost, abs(self.quantity))
        return self._average

    def apply(
        self, buy: bool, quantity: Decimal, price: Decimal, fee: Decimal, fee_asset: str | None,
        fee_in_quote: bool, ts_us: int,
    ) -> Step:  # fmt: skip
        """Apply one fill (quantity > 0). `fee_in_quote`: the fee is in the quote asset
        (else it goes to `other_fees[fee_asset]`). Raises decimal.Inexact if a sum or product
        would round (values far beyond decimal(38, 18)), ValueError for quantity <= 0."""
        if quantity <= 0:
            raise ValueError(f"fill quantity must be > 0, got {quantity}")
        self.fills += 1
        self.last_fill_at_us = ts_us
        quote_fee, other = (fee, None) if fee_in_quote else (ZERO, (fee_asset or "", fee) if fee else None)
        self.fees = EXACT.add(self.fees, quote_fee)
        if other is not None:
            self.other_fees[other[0]] = EXACT.add(self.other_fees.get(other[0], ZERO), fee)
        if not self.quantity or (self.quantity > 0) == buy:
            self._add(buy, quantity, price, quote_fee, ts_us)
            return Step(ZERO, quote_fee, None, other)
        realized, trip = self._reduce(buy, quantity, price, quote_fee, ts_us)
        return Step(realized, quote_fee, trip, other)

    def _add(self, buy: bool, quantity: Decimal, price: Decimal, quote_fee: Decimal, ts_us: int) -> None:
        if not self.quantity:
            self.opened_at_us, self._trip_pnl, self._trip_fees = ts_us, ZERO, ZERO
        self.cost = EXACT.add(self.cost, EXACT.multiply(quantity, price))
        self.quantity = EXACT.add(self.quantity, quantity if buy else -quantity)
        self._trip_fees = EXACT.add(self._trip_fees, quote_fee)
        self._average = None

    def _reduce(
        self, buy: bool, quantity: Decimal, price: Decimal, quote_fee: Decimal, ts_us: int
    ) -> tuple[Decimal, Trip | None]:
        held = abs(self.quantity)
        average = self.average_price
        assert average is not None  # not flat
        closed = min(quantity, held)
        if closed < held:
            gain = EXACT.subtract(price, average)
            realized = EXACT.multiply(closed, gain if self.quantity > 0 else -gain)
        else:  # all of it: exactly what it was sold (bought back) for against what it cost
            gain = EXACT.subtract(EXACT.multiply(closed, price), self.cost)
            realized = gain if self.quantity > 0 else -gain
        rest = EXACT.subtract(quantity, closed)
        closed_fee = divide(EXACT.multiply(quote_fee, closed), quantity) if rest else quote_fee
        self.realized_pnl = EXACT.add(self.realized_pnl, realized)
        self._trip_pnl = EXACT.add(self._trip_pnl, realized)
        self._trip_fees = EXACT.add(self._trip_fees, closed_fee)
        if closed < held:
            self.quantity = EXACT.add(self.quantity, quantity if buy else -quantity)
            self.cost = EXACT.subtract(self.cost, EXACT.multiply(closed, average))  # the average stays
            return realized, None
        assert self.opened_at_us is not None
        trip = Trip(self.opened_at_us, ts_us, self._trip_pnl, self._trip_fees)
        self.quantity, self.cost, self._average = ZERO, ZERO, None
        self.opened_at_us, self.closed_at_us = None, ts_us
        if rest:  # the flip: the remainder opens the other side at this fill's price
            self._add(buy, rest, price, EXACT.subtract(quote_fee, closed_fee), ts_us)
        return realized, trip
