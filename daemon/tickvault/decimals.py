"""The one canonical form of a decimal read back from tickvault. No I/O.

Storage keeps what was sent (`numeric` holds `87012.50` with its scale), but every read path —
`Vault` results, the CLI's table, CSV and JSON Lines, bot state JSON, and the Arrow, Parquet
and export paths as they arrive — hands out the same form, so a row reads the same whichever
tier or format it comes from:

- the exact value, never rounded;
- trailing fractional zeros removed: `87012.50` → `87012.5`, `0.000` → `0`, `-0` → `0`;
- never an exponent: `Decimal('1E+4')` (as asyncpg decodes `numeric` 10000) becomes
  `Decimal('10000')` with exponent 0, and prints as `10000`; `1E-8` prints as `0.00000001`.

`canonical` gives the `Decimal`, `text` its positional string. Both expect finite values within
PostgreSQL `numeric`'s range (`in_numeric_range`), which is every value a read path sees: the
positional form of `1E+999999999` would be a gigabyte of zeros.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Final

ZERO: Final = Decimal(0)
# PostgreSQL numeric limits, as records.py enforces them on input
MAX_INTEGER_DIGITS: Final = 131_072
MAX_FRACTION_DIGITS: Final = 16_383
# the cold tier's column type, decimal(38, 18): what ingest accepts must be able to roll
COLD_PRECISION: Final = 38
COLD_SCALE: Final = 18
COLD_INTEGER_DIGITS: Final = COLD_PRECISION - COLD_SCALE
COLD_TYPE: Final = f"decimal({COLD_PRECISION}, {COLD_SCALE})"


def canonical(value: Decimal) -> Decimal:
    """The same value with trailing fractional zeros removed and exponent <= 0.

    `Decimal('87012.50')` → `Decimal('87012.5')`, `Decimal('1E+4')` → `Decimal('10000')`,
    `Decimal('-0.00')` → `Decimal('0')`. Exact: built from the digits, not through a context
    that could round. Raises ValueError for NaN and Infinity.
    """
    if not value:  # every zero, whatever its sign or exponent
        return ZERO
    sign, digits, exponent = value.as_tuple()
    if not isinstance(exponent, int):
        raise ValueError(f"not a finite decimal: {value}")
    if exponent > 0:
        return Decimal((sign, digits + (0,) * exponent, 0))
    if exponent == 0 or digits[-1] != 0:
        return value
    kept = len(digits)
    while exponent < 0 and digits[kept - 1] == 0:
        kept -= 1
        exponent += 1
    return Decimal((sign, digits[:kept], exponent))


def text(value: Decimal) -> str:
    """The canonical value in positional notation: `87012.5`, `10000`, `0.00000001`, `-3`."""
    return format(canonical(value), "f")


def in_numeric_range(value: Decimal) -> bool:
    """True if PostgreSQL `numeric` can hold the value exactly (and it is finite)."""
    if not value.is_finite():
        return False
    exponent = value.as_tuple().exponent
    assert isinstance(exponent, int)  # finite
    return value.adjusted() < MAX_INTEGER_DIGITS and -exponent <= MAX_FRACTION_DIGITS


def fits_cold(value: Decimal) -> bool:
    """True if the cold tier's decimal(38, 18) holds the value exactly: at most 20 integer
    and 18 fractional digits once trailing fractional zeros are dropped (`1.50000…0` with 30
    zeros fits). False for NaN and Infinity."""
    if not value.is_finite():
        return False
    if value.adjusted() >= COLD_INTEGER_DIGITS:  # before `canonical`, which would write 1E+999 out
        return False
    exponent = canonical(value).as_tuple().exponent
    assert isinstance(exponent, int)  # finite
    return -exponent <= COLD_SCALE
