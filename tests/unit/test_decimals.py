"""The canonical form of a decimal on every read path (tickvault.decimals), and the JSON
numbers `dump_json` writes: positional, exact, never an exponent."""

from __future__ import annotations

import json
from decimal import Decimal, localcontext

import pytest

from tickvault.decimals import canonical, in_numeric_range, text
from tickvault.records import dump_json

# value as stored or decoded → canonical text
CASES = [
    ("87012.50", "87012.5"),
    ("87012.500000000000000000", "87012.5"),  # a cold-tier column's fixed scale
    ("87100.00", "87100"),
    ("10000", "10000"),
    ("1E+4", "10000"),  # asyncpg's decoding of numeric 10000
    ("1.0E+5", "100000"),
    ("100000", "100000"),
    ("0.00000001", "0.00000001"),
    ("1E-8", "0.00000001"),
    ("0.0000200", "0.00002"),
    ("-0.000001", "-0.000001"),
    ("-12.340", "-12.34"),
    ("-1E+3", "-1000"),
    ("0", "0"),
    ("0.000", "0"),
    ("-0", "0"),
    ("-0.00", "0"),
    ("0E+7", "0"),
    ("0E-12", "0"),
    ("1", "1"),
    ("1.0", "1"),
    ("10", "10"),
    ("120.0100", "120.01"),
    ("12345678901234567890.123456789000", "12345678901234567890.123456789"),
    ("0.050000000000000000001", "0.050000000000000000001"),  # more digits than a context's 28
    ("1E+40", "1" + "0" * 40),
    ("1.5E+40", "15" + "0" * 39),
    ("-9.99E-30", "-0." + "0" * 29 + "999"),
    ("1E-16383", "0." + "0" * 16382 + "1"),  # numeric's finest scale
    ("9" * 60 + "." + "9" * 60, "9" * 60 + "." + "9" * 60),
    ("123456789" * 5 + "E+20", "123456789" * 5 + "0" * 20),
]


@pytest.mark.parametrize(("stored", "expected"), CASES)
def test_text_is_positional_exact_and_without_trailing_zeros(stored: str, expected: str) -> None:
    value = Decimal(stored)
    assert text(value) == expected
    assert Decimal(expected) == value  # the exact value, nothing rounded
    assert "E" not in text(value).upper()


@pytest.mark.parametrize(("stored", "expected"), CASES)
def test_canonical_keeps_the_value_drops_trailing_zeros_and_positive_exponents(
    stored: str, expected: str
) -> None:
    value = canonical(Decimal(stored))
    _, digits, exponent = value.as_tuple()
    assert value == Decimal(stored)
    assert isinstance(exponent, int)
    assert exponent <= 0
    if exponent < 0:
        assert digits[-1] != 0  # no trailing fractional zero
    assert format(value, "f") == expected
    assert value.as_tuple() == Decimal(expected).as_tuple()


def test_canonical_tuples_of_the_issues_examples() -> None:
    assert canonical(Decimal("1E+4")).as_tuple() == Decimal("10000").as_tuple()
    assert canonical(Decimal("1.0E+5")).as_tuple() == Decimal("100000").as_tuple()
    assert canonical(Decimal("1E-8")).as_tuple() == Decimal("0.00000001").as_tuple()
    assert canonical(Decimal("87012.50")).as_tuple() == Decimal("87012.5").as_tuple()
    assert canonical(Decimal("-0.000")).as_tuple() == Decimal("0").as_tuple()


def test_canonical_is_idempotent_and_ignores_the_context_precision() -> None:
    with localcontext() as ctx:
        ctx.prec = 3  # a context that rounds must not matter: canonical builds from digits
        for stored, expected in CASES:
            once = canonical(Decimal(stored))
            assert canonical(once).as_tuple() == once.as_tuple()
            assert format(once, "f") == expected


@pytest.mark.parametrize("bad", ["NaN", "Infinity", "-Infinity", "sNaN"])
def test_canonical_refuses_non_finite(bad: str) -> None:
    with pytest.raises(ValueError, match="finite"):
        canonical(Decimal(bad))


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("1E+131071", True),
        ("1E+131072", False),
        ("1E-16383", True),
        ("1E-16384", False),
        ("0E-16384", False),
        ("-5.5", True),
        ("NaN", False),
        ("Infinity", False),
    ],
)
def test_in_numeric_range_follows_postgresql_numeric(value: str, expected: bool) -> None:
    assert in_numeric_range(Decimal(value)) is expected


def test_dump_json_writes_positional_numbers_keeping_their_scale() -> None:
    """Bot state JSON: never exponent form; the scale sent is kept (storage is unchanged)."""
    value = {"a": Decimal("1E+4"), "b": [Decimal("1E-8"), Decimal("87012.50")], "c": Decimal("-1.0E+5")}
    dumped = dump_json(value)
    assert dumped == '{"a":10000,"b":[0.00000001,87012.50],"c":-100000}'
    assert json.loads(dumped, parse_float=Decimal) == value


def test_dump_json_does_not_expand_numbers_beyond_numeric() -> None:
    """1E+999999999 positional would be a gigabyte; jsonb refuses it either way."""
    assert dump_json({"x": Decimal("1E+999999999"), "y": Decimal("1E-999999999")}) == (
        '{"x":1E+999999999,"y":1E-999999999}'
    )
