"""PostgreSQL's `COPY … TO STDOUT (FORMAT csv)` output as Arrow, parsed by pyarrow.

PostgreSQL writes booleans as `t`/`f`, NULL as an empty unquoted field and an empty string
as `""`; numerics as their exact positional text (parsed straight into Arrow decimals, never
through float).
"""

from __future__ import annotations

from typing import BinaryIO

import pyarrow as pa
import pyarrow.csv as pacsv


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
