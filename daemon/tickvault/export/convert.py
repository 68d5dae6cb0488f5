"""Arrow columns → the text an export writes, a whole column at a time (Arrow compute), in
the forms `tickvault query` prints (tickvault.output):

- decimals in their canonical positional form (tickvault.decimals): exact, trailing
  fractional zeros removed, never an exponent — `87012.5`, `10000`, `0.00000001`;
- timestamps ISO-8601 in UTC with `Z`, microseconds only when there are any —
  `2026-01-01T00:00:00Z`, `2026-01-01T00:00:00.123000Z` (as `datetime.isoformat`);
- flags `True`/`False` in CSV (as `query --format csv`); nulls stay null.

Arrow writes decimal128 with an exponent below 1E-6 (`1E-18`); those few values are written
by tickvault.decimals instead, so every value comes out in the one canonical form.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

from tickvault import decimals


def decimal_text(column: pa.ChunkedArray | pa.Array) -> pa.Array:
    """A decimal column as canonical positional strings (nulls stay null)."""
    values = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    text = pc.cast(values, pa.string())  # `87012.500000000000000000`, or `1E-18`: fixed below
    trimmed = pc.utf8_rtrim(pc.utf8_rtrim(text, characters="0"), characters=".")
    # only a fraction's zeros: `100` of a scale-0 column keeps its own
    text = pc.if_else(pc.match_substring(text, "."), trimmed, text)
    exponent = pc.fill_null(pc.match_substring(text, "E"), False)
    if not pc.any(exponent).as_py():
        return text
    where = pc.indices_nonzero(exponent).to_pylist()
    fixed = [decimals.text(values[i].as_py()) for i in where]
    out = text.to_pylist()
    for i, value in zip(where, fixed, strict=True):
        out[i] = value
    return pa.array(out, pa.string())


def time_text(column: pa.ChunkedArray | pa.Array) -> pa.Array:
    """A timestamp[us, UTC] column as ISO-8601 strings ending in `Z`."""
    values = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    # as a naive time (the same UTC value): no time zone lookups, `2026-01-01 00:00:00.000000`
    text = pc.cast(values.cast(pa.timestamp("us")), pa.string())
    text = pc.replace_substring(text, " ", "T", max_replacements=1)
    whole = pc.ends_with(text, ".000000")
    text = pc.if_else(whole, pc.utf8_slice_codeunits(text, 0, 19), text)
    return pc.binary_join_element_wise(text, pa.scalar("Z"), "")


def flag_text(column: pa.ChunkedArray | pa.Array) -> pa.Array:
    """A bool column as `True`/`False`."""
    return pc.if_else(column, pa.scalar("True"), pa.scalar("False"))


def exact(table: pa.Table) -> pa.Table:
    """Decimals and timestamps as their text; every other column as it is (JSON Lines and
    Excel keep numbers, flags and strings typed)."""
    columns = []
    for field, column in zip(table.schema, table.columns, strict=True):
        if pa.types.is_decimal(field.type):
            column = decimal_text(column)
        elif pa.types.is_timestamp(field.type):
            column = time_text(column)
        columns.append(column)
    return pa.table(columns, names=table.column_names)


def text(table: pa.Table) -> pa.Table:
    """Every column as text (CSV): `exact`, flags as `True`/`False`, numbers as digits."""
    table = exact(table)
    columns = []
    for field, column in zip(table.schema, table.columns, strict=True):
        if pa.types.is_boolean(field.type):
            column = flag_text(column)
        elif not pa.types.is_string(field.type):
            column = pc.cast(column, pa.string())
        columns.append(column)
    return pa.table(columns, names=table.column_names)
