"""Excel export (the optional extra `tickvault[excel]`: XlsxWriter in constant-memory mode,
which writes each row out as it comes, so a sheet of a million rows takes the memory of one).

Cells: decimals and times are text in the forms tickvault.export.convert gives — exact, where
Excel's own numbers are 64-bit floats of 15 significant digits and its dates have no time
zone; `=VALUE(A2)` turns a cell into a number where the loss is acceptable. Integers are
numbers, flags booleans, strings strings (never read as formulas or links), null an empty cell.

A sheet holds at most SHEET_ROWS rows (Excel's limit), the header included: past that the
rows go on in a new sheet, `NAME 2`, `NAME 3`, … each starting with the header, so an export
of any size opens whole. A value longer than Excel's 32,767 characters per cell fails the
export with ConfigError (XlsxWriter would cut it).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Final

import pyarrow as pa

from tickvault.errors import ConfigError

SHEET_ROWS: Final = 1_048_576  # Excel's rows per sheet, the header row included
CELL_CHARS: Final = 32_767


def _library() -> Any:
    try:
        import xlsxwriter
    except ImportError:
        raise ConfigError("format xlsx needs the excel extra: pip install 'tickvault[excel]'") from None
    return xlsxwriter


class Workbook:
    """An .xlsx file at `path` whose sheets are named after `sheet`. `write` Arrow tables
    (decimals and times already text: convert.exact), then `close`."""

    def __init__(self, path: Path, sheet: str, sheet_rows: int | None = None) -> None:
        options = {"constant_memory": True, "strings_to_formulas": False, "strings_to_urls": False}
        self._book = _library().Workbook(str(path), options)
        self._name, self._sheet_rows = sheet[:25], sheet_rows or SHEET_ROWS
        self._sheets = 0
        self._sheet: Any = None
        self._row = 0

    def write(self, block: pa.Table) -> None:
        """Rows of `block` after those written, rolling over to a new sheet when one is full."""
        if self._sheet is None:
            self._new_sheet(block.column_names)
        for values in zip(*(c.to_pylist() for c in block.columns), strict=True):
            if self._row >= self._sheet_rows:
                self._new_sheet(block.column_names)
            if self._sheet.write_row(self._row, 0, values):
                self._refuse(block.column_names, values)
            self._row += 1

    def _new_sheet(self, names: list[str]) -> None:
        self._sheets += 1
        title = self._name if self._sheets == 1 else f"{self._name} {self._sheets}"
        self._sheet = self._book.add_worksheet(title)
        self._sheet.write_row(0, 0, names)
        self._row = 1

    def _refuse(self, names: list[str], values: tuple[Any, ...]) -> None:
        for name, value in zip(names, values, strict=True):
            if isinstance(value, str) and len(value) > CELL_CHARS // 2:
                raise ConfigError(
                    f"column {name} holds a value of {len(value)} characters; an Excel cell holds at "
                    f"most {CELL_CHARS}: export as jsonl or parquet"
                )
        raise ConfigError(f"Excel refused a row of sheet {self._sheets}")

    def close(self) -> None:
        if self._sheet is None:
            return
        self._book.close()
