"""The export's column conversions write each decimal and time as tickvault.output does for
one value (decimals.text, isoformat with Z), for any value the reads can return."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pyarrow as pa
from hypothesis import given
from hypothesis import strategies as st

from tickvault import decimals
from tickvault.export import convert
from tickvault.output import text

# decimal128(38, 18): 20 integer and 18 fractional digits
DECIMALS = st.decimals(
    min_value=Decimal("-99999999999999999999.999999999999999999"),
    max_value=Decimal("99999999999999999999.999999999999999999"),
    places=18,
    allow_nan=False,
    allow_infinity=False,
)
TIMES = st.datetimes(
    min_value=dt.datetime(1970, 1, 1), max_value=dt.datetime(2200, 1, 1), timezones=st.just(dt.UTC)
)


@given(st.lists(st.one_of(st.none(), DECIMALS), max_size=40))
def test_decimals_as_canonical_text(values: list[Decimal | None]) -> None:
    column = pa.array(values, pa.decimal128(38, 18))
    got = convert.decimal_text(column).to_pylist()
    assert got == [None if v is None else decimals.text(v) for v in values]


def test_tiny_and_round_decimals() -> None:
    values = [Decimal("1E-18"), Decimal("0"), Decimal("-0.0000001"), Decimal("1E+19"), Decimal("10.10")]
    got = convert.decimal_text(pa.array(values, pa.decimal128(38, 18))).to_pylist()
    assert got == ["0.000000000000000001", "0", "-0.0000001", "10000000000000000000", "10.1"]


@given(st.lists(st.one_of(st.none(), TIMES), max_size=40))
def test_times_as_iso_utc(values: list[dt.datetime | None]) -> None:
    column = pa.array(values, pa.timestamp("us", tz="UTC"))
    assert convert.time_text(column).to_pylist() == [None if v is None else text(v) for v in values]


@given(st.lists(st.one_of(st.none(), st.integers(-(10**9), 10**9)), max_size=40), st.integers(0, 4))
def test_decimals_of_any_scale_keep_their_integer_digits(values: list[int | None], scale: int) -> None:
    """export_table takes any Arrow result: a scale-0 column (`Decimal("100")`) has no
    fraction to trim, so `100` stays `100` and `0` stays `0`."""
    typed = [None if v is None else Decimal(v).scaleb(-scale) for v in values]
    column = pa.array(typed, pa.decimal128(18, scale))
    expected = [None if v is None else decimals.text(v) for v in typed]
    assert convert.decimal_text(column).to_pylist() == expected
