"""Export files, written block by block and atomically: rows go to `FILE.partial`, renamed to
FILE only once every row is written (`close`); `abort` removes the partial file. A failed,
cancelled or killed export never leaves a file that looks complete.

Formats (`FORMATS`; `format_of` tells one from a file name's suffix):
- `csv`: one header line, then a line per row; every value as tickvault.export.convert
  writes it (decimals exact and positional, times ISO-8601 UTC with `Z`), null as an empty
  field — the lines `tickvault query --format csv` prints.
- `jsonl`: one JSON object per row; decimals and times as JSON strings of that text (a JSON
  reader then never turns a decimal into a float), integers and flags as JSON numbers and
  booleans, null as null.
- `parquet`: Arrow's types as reads return them (decimal128(38, 18), timestamp[us, UTC]), zstd.
- `xlsx`: tickvault.export.xlsx (the optional `excel` extra).
"""

from __future__ import annotations

import csv
import os
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import IO, Any, Final

import msgspec
import pyarrow as pa

from tickvault.errors import ConfigError
from tickvault.export import convert

FORMATS: Final = ("csv", "jsonl", "parquet", "xlsx")
SLICE_ROWS: Final = 10_000  # rows turned into Python objects at once (csv, jsonl, xlsx)
SUFFIXES: Final = {
    ".csv": "csv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".parquet": "parquet",
    ".xlsx": "xlsx",
}


def format_of(path: str | Path, fmt: str | None) -> str:
    """`fmt` checked, or the format its suffix names; ConfigError when neither tells one."""
    if fmt is not None:
        if fmt not in FORMATS:
            raise ConfigError(f"format {fmt!r} is not one of {', '.join(FORMATS)}")
        return fmt
    found = SUFFIXES.get(Path(path).suffix.lower())
    if found is None:
        raise ConfigError(
            f"cannot tell the format of {path} from its suffix; give one of {', '.join(FORMATS)}"
        )
    return found


class FileWriter:
    """One export file of `fmt` at `path` (through `path.partial`). `write` one block (an
    Arrow table) at a time, all of one schema; then `close(schema)` — which also writes the
    header of an empty export — or `abort()`. Closing or aborting twice is harmless.
    Raises ConfigError when the file cannot be created or the format's library is missing."""

    def __init__(self, path: str | Path, fmt: str, sheet: str = "rows") -> None:
        self.path, self.fmt = Path(path), format_of(path, fmt)
        self.partial = Path(f"{path}.partial")
        self.rows = 0
        self._done = self._headed = False
        self._stream: IO[str] | None = None
        self._csv: Any = None
        self._encoder = msgspec.json.Encoder()
        self._parquet: Any = None
        self._xlsx: Any = None
        try:
            if self.fmt == "xlsx":
                from tickvault.export.xlsx import Workbook

                self._xlsx = Workbook(self.partial, sheet)
            elif self.fmt != "parquet":
                self._stream = self.partial.open("w", newline="", encoding="utf-8")
                self._csv = csv.writer(self._stream, lineterminator="\n")
        except OSError as exc:
            raise ConfigError(f"cannot write {path}: {exc.strerror or exc}") from None

    def write(self, block: pa.Table) -> None:
        """Append the rows of `block` (nothing happens for an empty one but the header).
        Raises ConfigError when the file cannot be written (a full disk, permissions)."""
        with self._writing():
            self._write(block)

    @contextmanager
    def _writing(self) -> Iterator[None]:
        try:
            yield
        except OSError as exc:  # a full disk, permissions, a directory in the way of the rename
            raise ConfigError(f"cannot write {self.path}: {exc.strerror or exc}") from None

    def _write(self, block: pa.Table) -> None:
        if self.fmt == "parquet":
            self._write_parquet(block)
        else:
            if self.fmt == "csv":
                self._header(block.column_names)
            # text formats go through Python objects: a slice at a time keeps them few
            for start in range(0, block.num_rows, SLICE_ROWS):
                self._write_text(block.slice(start, SLICE_ROWS))
            if self.fmt == "xlsx" and block.num_rows == 0:
                self._xlsx.write(block)  # the header of an empty export
        self.rows += block.num_rows

    def _write_text(self, rows: pa.Table) -> None:
        if self.fmt == "xlsx":
            self._xlsx.write(convert.exact(rows))
        elif self.fmt == "csv":
            text = convert.text(rows)
            self._csv.writerows(zip(*(c.to_pylist() for c in text.columns), strict=True))
        else:
            assert self._stream is not None
            self._stream.write(self._encoder.encode_lines(convert.exact(rows).to_pylist()).decode())

    def _header(self, names: list[str]) -> None:
        if not self._headed:
            self._csv.writerow(names)
            self._headed = True

    def _write_parquet(self, block: pa.Table) -> None:
        import pyarrow.parquet as pq

        if self._parquet is None:
            try:
                self._parquet = pq.ParquetWriter(str(self.partial), block.schema, compression="zstd")
            except OSError as exc:
                raise ConfigError(f"cannot write {self.path}: {exc.strerror or exc}") from None
        self._parquet.write_table(block)

    def close(self, schema: pa.Schema) -> None:
        """Finish the file and move it into place; an export of no rows still gets the
        columns of `schema` (a CSV header, a Parquet schema, an Excel header row).
        Raises ConfigError when the file cannot be finished or moved into place."""
        if self._done:
            return
        if self.rows == 0 and self.fmt != "jsonl":
            self.write(schema.empty_table())
        with self._writing():
            self._release()
            os.replace(self.partial, self.path)
        self._done = True

    def abort(self) -> None:
        """Drop the partial file."""
        if self._done:
            return
        self._done = True
        try:
            self._release()
        except OSError:
            pass  # the file goes anyway; the error that made us abort is the one to tell
        finally:
            with suppress(FileNotFoundError, NotADirectoryError):  # never created
                self.partial.unlink()

    def _release(self) -> None:
        parquet, stream, xlsx = self._parquet, self._stream, self._xlsx
        self._parquet = self._stream = self._xlsx = None
        if parquet is not None:
            parquet.close()
        if stream is not None:
            stream.close()
        if xlsx is not None:
            xlsx.close()


def write_all(blocks: Any, path: str | Path, fmt: str | None, schema: pa.Schema | None = None) -> int:
    """Write an iterable of Arrow tables or record batches to `path`; the row count."""
    writer = FileWriter(path, format_of(path, fmt))
    try:
        for block in blocks:
            table = block if isinstance(block, pa.Table) else pa.Table.from_batches([block])
            schema = table.schema
            writer.write(table)
        if schema is None:
            raise ConfigError("nothing to export: no schema and no rows")
        writer.close(schema)
    except BaseException:
        writer.abort()
        raise
    return writer.rows
