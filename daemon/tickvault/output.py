"""What `query` and `gaps` print: blocks of rows written as they come, so millions of rows
take the memory of one block, not of all of them.

Formats: `table` (columns aligned within each block), `csv` (one header), `jsonl`, and
`parquet` (Arrow's own types: decimals stay decimal128(38, 18), times timestamp[us, UTC];
a file only). Decimals print in their canonical form (tickvault.decimals: exact, positional,
trailing zeros removed), as JSON numbers in JSON Lines; timestamps as ISO 8601 in UTC with
`Z`. To a file (`--output`), rows go to `FILE.partial`, renamed to FILE only once every row
is written: a failed or interrupted run never leaves a file that looks complete.
"""

from __future__ import annotations

import csv
import datetime as dt
import os
import sys
from collections.abc import Sequence
from decimal import Decimal
from pathlib import Path
from typing import IO, Any, Final

import pyarrow as pa
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeRemainingColumn

from tickvault import decimals
from tickvault.errors import ConfigError
from tickvault.records import dump_json

FORMATS: Final = ("table", "csv", "jsonl", "parquet")


def text(value: Any) -> str:
    """One value as a table or CSV cell."""
    if isinstance(value, Decimal):
        return decimals.text(value)
    if isinstance(value, dt.datetime):
        return value.isoformat().replace("+00:00", "Z")
    if isinstance(value, dict):
        return dump_json(value)
    return "" if value is None else str(value)


def _json_value(value: Any) -> Any:
    if isinstance(value, Decimal):
        return decimals.canonical(value)  # dump_json writes it positional, as a JSON number
    return text(value) if isinstance(value, dt.datetime) else value


def rows_of(table: pa.Table) -> list[dict[str, Any]]:
    """An Arrow result as dicts, decimals in canonical form (Arrow pads them to scale 18)."""
    decimal_columns = [f.name for f in table.schema if pa.types.is_decimal(f.type)]
    rows: list[dict[str, Any]] = table.to_pylist()
    for row in rows:
        for c in decimal_columns:
            if row[c] is not None:
                row[c] = decimals.canonical(row[c])
    return rows


def print_rows(columns: Sequence[str], rows: Sequence[dict[str, Any]], fmt: str) -> None:
    """Rows as an aligned table, CSV with a header, or JSON Lines (`fmt`), on stdout."""
    out = Output(fmt, None)
    out.write_rows(columns, rows)
    out.close()


class Output:
    """A destination (stdout, or `path` through `path.partial`) and a format. `write` a block
    of rows at a time; `close()` once all are written (renames the file into place), or
    `abort()` (removes the partial file). Raises ConfigError for parquet without a file or a
    file that cannot be created."""

    def __init__(self, fmt: str, path: str | None) -> None:
        if fmt == "parquet" and path is None:
            raise ConfigError("--format parquet needs --output FILE")
        self.fmt, self.path = fmt, path
        self._partial = None if path is None else Path(f"{path}.partial")
        self._stream: IO[str] | None = None
        self._parquet: Any = None
        self._header = False
        if self._partial is not None and fmt != "parquet":
            try:
                self._stream = self._partial.open("w", newline="", encoding="utf-8")
            except OSError as exc:
                raise ConfigError(f"cannot write {path}: {exc.strerror}") from None

    @property
    def _out(self) -> IO[str]:
        return self._stream if self._stream is not None else sys.stdout

    def write(self, table: pa.Table) -> None:
        """One block of rows (an Arrow table of the result's schema)."""
        if self.fmt == "parquet":
            self._write_parquet(table)
        elif table.num_rows:
            self.write_rows(table.column_names, rows_of(table))

    def write_rows(self, columns: Sequence[str], rows: Sequence[dict[str, Any]]) -> None:
        if not rows:
            return
        out = self._out
        if self.fmt == "jsonl":
            for r in rows:
                out.write(dump_json({c: _json_value(r[c]) for c in columns}) + "\n")
            return
        cells = [[text(r[c]) for c in columns] for r in rows]
        if self.fmt == "csv":
            writer = csv.writer(out, lineterminator="\n")
            if not self._header:
                writer.writerow(columns)
            writer.writerows(cells)
        else:
            widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
            if not self._header:
                out.write("  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)) + "\n")
            for row in cells:
                out.write("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)) + "\n")
        self._header = True

    def _write_parquet(self, table: pa.Table) -> None:
        import pyarrow.parquet as pq

        assert self._partial is not None
        if self._parquet is None:
            try:
                self._parquet = pq.ParquetWriter(str(self._partial), table.schema, compression="zstd")
            except OSError as exc:
                raise ConfigError(f"cannot write {self.path}: {exc}") from None
        self._parquet.write_table(table)

    def close(self, empty_schema: pa.Schema | None = None) -> None:
        """Finish: flush stdout, or complete the file and move it into place (a parquet file
        with no rows gets `empty_schema`, so it still says what its columns are)."""
        if self.fmt == "parquet" and self._parquet is None and empty_schema is not None:
            self._write_parquet(empty_schema.empty_table())
        if self._parquet is not None:
            self._parquet.close()
        if self._stream is not None:
            self._stream.close()
        if self._partial is not None and self.path is not None:
            if self._partial.exists():
                os.replace(self._partial, self.path)
        else:
            sys.stdout.flush()

    def abort(self) -> None:
        """Drop what was written to the file; stdout keeps what it printed."""
        for handle in (self._parquet, self._stream):
            if handle is not None:
                handle.close()
        if self._partial is not None:
            self._partial.unlink(missing_ok=True)


def progress_bar(disable: bool) -> Progress:
    """The rich progress bar of long commands (import, export), on stderr: a description,
    the bar, the share done, rows written and their rate (task fields `rows` and `rate`), the
    time left; off when `disable`, gone from the terminal once finished."""
    return Progress(
        TextColumn("{task.description}"), BarColumn(), TaskProgressColumn(),
        TextColumn("{task.fields[rows]} rows, {task.fields[rate]:.0f}/s"), TimeRemainingColumn(),
        console=Console(file=sys.stderr), disable=disable, transient=True,
    )  # fmt: skip
