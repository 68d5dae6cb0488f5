"""PostgreSQL's `COPY … (FORMAT csv)` text and Arrow, both ways, without a Python object per
value: `read` parses what `COPY … TO STDOUT` writes, `write` makes what `COPY … FROM STDIN`
reads.

PostgreSQL writes booleans as `t`/`f`, NULL as an empty unquoted field and an empty string
as `""`; numerics as their exact positional text (parsed straight into Arrow decimals, never
through float). It reads `true`/`false`, and tells NULL from an empty string the same way
(https://www.postgresql.org/docs/current/sql-copy.html, "CSV Format").
"""

from __future__ import annotations

import io
from typing import BinaryIO, Final

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

# Arrow's text of a decimal (Decimal128::ToString: positional, or scientific below 1E-6, as
# Java's BigDecimal.toString) → the fewest fractional digits: trailing zeros of the fraction,
# then a bare point, are dropped ("1.50000E-7" → "1.5E-7", "2.000" → "2"), and a zero of any
# scale is "0". PostgreSQL's numeric takes its scale from the text, so it stores exactly what
# `decimals.canonical` gives.
_TRAILING_ZEROS: Final = (r"^(-?[0-9]*\.[0-9]*?)0+((?:E[-+][0-9]+)?)$", r"\1\2")
_BARE_POINT: Final = (r"\.((?:E[-+][0-9]+)?)$", r"\1")
_ZERO: Final = (r"^-?0(?:E[-+][0-9]+)?$", "0")


def read(source: BinaryIO, names: list[str], column_types: dict[str, pa.DataType] | pa.Schema) -> pa.Table:
    """The CSV rows of `source` (no header) as a table with columns `names` of `column_types`.
    Raises pyarrow.ArrowInvalid for text a type cannot hold."""
    return pacsv.read_csv(
        source,
        read_options=pacsv.ReadOptions(column_names=names),
        convert_options=pacsv.ConvertOptions(
            column_types=column_types,
            true_values=["t"],
            false_values=["f"],
            strings_can_be_null=True,
            quoted_strings_can_be_null=False,  # PostgreSQL quotes an empty string, never NULL
        ),
    )


def write(table: pa.Table) -> bytes:
    """`table`'s rows as CSV for `COPY … FROM STDIN (FORMAT csv)` into columns of the same
    names and order: no header, every value quoted and NULL unquoted (so an empty string stays
    one), times as `YYYY-MM-DD HH:MM:SS.ffffffZ`, decimals as `canonical_text` gives them."""
    columns = [
        canonical_text(column) if pa.types.is_decimal(column.type) else column for column in table.columns
    ]
    out = io.BytesIO()
    options = pacsv.WriteOptions(include_header=False, quoting_style="all_valid")
    pacsv.write_csv(pa.table(columns, names=table.column_names), out, options)
    return out.getvalue()


def canonical_text(values: pa.Array | pa.ChunkedArray) -> pa.Array | pa.ChunkedArray:
    """Decimals as strings with no trailing fractional zeros (nulls stay null): the text of
    `decimals.canonical` of each value, positional or scientific as Arrow writes it."""
    text = pc.cast(values, pa.string())
    for pattern, replacement in (_TRAILING_ZEROS, _BARE_POINT, _ZERO):
        text = pc.replace_substring_regex(text, pattern=pattern, replacement=replacement)
    return text
