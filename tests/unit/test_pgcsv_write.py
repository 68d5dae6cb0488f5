"""`pgcsv.write`, Arrow to the CSV that `COPY … FROM STDIN (FORMAT csv)` reads, as the roller's
merge loads cold rows back (`archive.hot.reload`): decimals in their canonical text, NULL
told from an empty string, times in UTC. tests/integration/test_archive_overlap.py loads such
text into PostgreSQL."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pyarrow as pa
import pytest
from hypothesis import given

from tests.properties import cold_decimals, examples
from tickvault import pgcsv
from tickvault.decimals import canonical

COLD_DECIMAL = pa.decimal128(38, 18)


@pytest.mark.parametrize(
    ("value", "text"),
    [
        ("87012.5", "87012.5"),
        ("100", "100"),
        ("-5", "-5"),
        ("0", "0"),
        ("-0.000", "0"),
        ("0.000001", "0.000001"),
        ("0.0000001", "1E-7"),  # Arrow writes below 1E-6 with an exponent; PostgreSQL reads it
        ("-0.000000123", "-1.23E-7"),
        ("0.000000000000000001", "1E-18"),
        ("99999999999999999999.999999999999999999", "99999999999999999999.999999999999999999"),
        ("120.0100", "120.01"),
    ],
)
def test_decimals_lose_the_cold_scales_padding(value: str, text: str) -> None:
    got = pgcsv.canonical_text(pa.array([Decimal(value)], COLD_DECIMAL)).to_pylist()
    assert got == [text]


@given(cold_decimals())
@examples(300)
def test_the_text_of_every_cold_decimal_is_its_canonical_value_with_its_scale(value: Decimal) -> None:
    (text,) = pgcsv.canonical_text(pa.array([value], COLD_DECIMAL)).to_pylist()
    # equal digits and exponent: the scale PostgreSQL's numeric takes from this text is canonical's
    assert Decimal(text).as_tuple() == canonical(value).as_tuple()


def test_nulls_empty_strings_quotes_times_and_booleans() -> None:
    at = dt.datetime(2026, 1, 1, 0, 0, 0, 1, tzinfo=dt.UTC)
    table = pa.table(
        {
            "s": pa.array(["a", "", None, 'x,"y"\nz']),
            "d": pa.array([Decimal("1.50"), None, Decimal(0), Decimal("-2")], COLD_DECIMAL),
            "t": pa.array([at, None, at, at], pa.timestamp("us", tz="UTC")),
            "b": pa.array([True, False, None, True]),
            "i": pa.array([1, None, -5, 2**62], pa.int64()),
        }
    )
    assert pgcsv.write(table) == (
        b'"a","1.5","2026-01-01 00:00:00.000001Z","true","1"\n'
        b'"",,,"false",\n'  # the empty string quoted, NULL bare
        b',"0","2026-01-01 00:00:00.000001Z",,"-5"\n'
        b'"x,""y""\nz","-2","2026-01-01 00:00:00.000001Z","true","4611686018427387904"\n'
    )
