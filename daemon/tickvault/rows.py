"""Validated records in the form the store writes them: PostgreSQL COPY text. No I/O.

A `Row` is one record's `COLUMNS` as COPY text fields (tab-separated, escaped, `\\N` for
NULL) plus the value of its partition column, of the field that picks its writer, and its
market series (what tickvault_newest_event_timestamp_seconds is kept per).
Klines, fills and bot state travel from the codec to the store as rows, so the hot path
builds one string per message and PostgreSQL parses the numbers and timestamps. Orders
stay `Order` records: a batch's updates of one order are folded by comparing their fields
before they are written.

Decimals are written in plain notation (`format(d, "f")`), which keeps their exact value and
scale; timestamps as ISO 8601 with their UTC offset.
"""

from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal
from functools import partial
from typing import Any, Final, NamedTuple, TypeAlias

from tickvault.records import Order, Record

NULL: Final = "\\N"
_SPECIAL: Final = re.compile(r"[\\\t\n\r]")
_ESCAPES: Final = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


class Row(NamedTuple):
    KIND: str
    text: str  # the record's COLUMNS as COPY text fields, without a line end
    time: dt.datetime  # its TIME_COLUMN, which time-partitioned tables are split by
    writer_key: str  # its WRITER_KEY's value
    series: str  # "exchange<TAB>symbol" of a record that has both, else "" (`Record.series`)


# Row(...) runs a Python-level __new__; this builds the same tuple in C, for the hot path
new_row: Final = partial(tuple.__new__, Row)
Item: TypeAlias = Row | Order  # what a codec hands the pipeline for one valid message


def escape(text: str) -> str:
    """A string as a COPY text field."""
    return text.translate(_ESCAPES) if _SPECIAL.search(text) else text


def field(value: Any) -> str:
    """One Python value (as a record holds it) as a COPY text field."""
    if value is None:
        return NULL
    if value is True or value is False:
        return "t" if value else "f"
    if isinstance(value, str):
        return escape(value)
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, dt.datetime):
        return value.isoformat(sep=" ")
    if isinstance(value, int):
        return str(value)
    raise TypeError(f"no COPY text form for {type(value).__name__}")


def line(values: tuple[Any, ...]) -> str:
    return "\t".join([field(v) for v in values])


def to_item(record: Record) -> Item:
    """A record validated by its model, in the form the pipeline batches."""
    if isinstance(record, Order):
        return record
    return Row(record.KIND, line(record.row()), record.time, record.writer_key, record.series)
