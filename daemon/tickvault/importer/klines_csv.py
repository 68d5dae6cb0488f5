"""Binance kline CSV read column-wise with pyarrow: whole blocks of lines parsed, checked
and turned into COPY text at once. No I/O beyond reading the file.

The rows this accepts are exactly those the per-line path (`binance._kline`, through
`codecs.fast.kline_row`) accepts, with the same row: open_time and close_time ASCII
digits read as epoch ms or µs per value (`timestamps.parse_epoch_ms_or_us`, at or above
`min_epoch_ms`), trades ASCII digits within a bigint, open..volume and quote_volume
(or `\\N`) written as `kline_row`'s pattern wants them, low <= open, close <= high (compared
as decimal128(38, 18), which holds every number that pattern admits exactly) and close_time
not before open_time. Every other row takes the per-line path, which words its reason; so
does a whole block pyarrow cannot split as that path splits it (a bare CR, a blank line,
rows of different widths, bytes that are not UTF-8).
"""

from __future__ import annotations

import operator
import re
from collections.abc import Iterator
from itertools import accumulate, repeat
from pathlib import Path
from typing import Final

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from tickvault.codecs.fast import _NUMBER
from tickvault.errors import RecordError
from tickvault.importer import binance
from tickvault.importer.chunk import Chunk
from tickvault.importer.files import blocks, size_of
from tickvault.records import EXCHANGE_PATTERN, SYMBOL_PATTERN
from tickvault.rows import Item, new_row
from tickvault.timestamps import MAX_EPOCH_MS, MAX_EPOCH_US

BLOCK_BYTES: Final = 8 << 20
_BLANK_LINE: Final = re.compile(rb"(?:^|\n)[ \t\x0b\x0c]*\n")
_DIGITS: Final = "^[0-9]{1,18}$"  # within int64; longer ones are no epoch (ms or µs) nor bigint here
_DECIMAL: Final = f"^{_NUMBER}$"
_QUOTE_VOLUME: Final = rf"^(?:{_NUMBER}|\\N)$"
_EXACT: Final = pa.decimal128(38, 18)
_PARSE: Final = pacsv.ParseOptions(
    quote_char=False, escape_char=False, newlines_in_values=False, ignore_empty_lines=False
)


def chunks(path: Path, series: binance.Series, chunk_rows: int, min_epoch_ms: int) -> Iterator[Chunk]:
    """As `binance.chunks` for klines: the file's rows in chunks of at most `chunk_rows`,
    version "0<TAB>line number", the same rows and dead letters. Raises ImportFailed
    (files.blocks) when it cannot be read."""
    prefix = _prefix(series)
    chunk, base = Chunk(path.name), 0
    for before, block in blocks(path, BLOCK_BYTES):
        header = before == 0 and binance._is_header(block[: block.find(b"\n")].rstrip(b"\r"))
        rows = _fast(block, before, header, prefix, series, min_epoch_ms)
        for number, item, raw, end in (
            rows if rows is not None else _slow(block, before, series, min_epoch_ms)
        ):
            if item is None:
                try:
                    item = binance._kline(raw, series, min_epoch_ms)
                except RecordError as exc:
                    chunk.reject(str(number), "kline", exc, raw)
                    item = None
            if item is not None:
                chunk.items.append(item)
                chunk.versions.append(f"0\t{number}")
                chunk.entries.append(str(number))
                chunk.read += 1
            if chunk.read >= chunk_rows:
                chunk.done = base + end
                yield chunk
                chunk = Chunk(path.name)
        base += _counted(block, rows is not None)
    chunk.done = size_of(path)
    yield chunk


# (line number, its row or None when the line takes the per-line path, the line, bytes read by its end)
Parsed = tuple[int, Item | None, bytes, int]


def _prefix(series: binance.Series) -> str | None:
    if re.fullmatch(EXCHANGE_PATTERN, series.exchange) and re.fullmatch(SYMBOL_PATTERN, series.symbol):
        assert series.interval is not None  # series_of gives klines an interval
        return f"{series.exchange}\t{series.symbol}\t{series.interval}"
    return None  # every row goes to the model, which words why


def _counted(block: bytes, fast: bool) -> int:
    """The bytes `lines` counts for the block (each non-blank line without its end, plus one)."""
    if fast:
        return len(block) - block.count(b"\r")
    return sum(len(raw.rstrip(b"\r")) + 1 for raw in block.split(b"\n")[:-1] if raw.strip())


def _slow(block: bytes, before: int, series: binance.Series, min_epoch_ms: int) -> Iterator[Parsed]:
    done = 0
    for i, raw in enumerate(block.split(b"\n")[:-1]):
        raw = raw.rstrip(b"\r\n")
        if not raw.strip():
            continue
        done += len(raw) + 1
        if before + i == 0 and binance._is_header(raw):
            continue
        yield before + i + 1, None, raw, done


def _fast(
    block: bytes, before: int, header: bool, prefix: str | None, series: binance.Series, min_epoch_ms: int
) -> list[Parsed] | None:
    """The block's rows, those this module vouches for with their row; None when the block
    must be read line by line."""
    if b"\r" in block:
        if block.count(b"\r") != block.count(b"\r\n"):
            return None
        block = block.replace(b"\r\n", b"\n")
    if _BLANK_LINE.search(block):
        return None
    skipped = block.find(b"\n") + 1 if header else 0
    body = block[skipped:]
    if not body:
        return []
    width = body[: body.find(b"\n")].count(b",") + 1
    names = [f"c{i}" for i in range(width)]
    try:
        table = pacsv.read_csv(
            pa.py_buffer(body),
            read_options=pacsv.ReadOptions(column_names=names, use_threads=False, block_size=len(body) + 1),
            parse_options=_PARSE,
            convert_options=pacsv.ConvertOptions(
                column_types=dict.fromkeys(names, pa.string()), strings_can_be_null=False
            ),
        )
    except pa.ArrowInvalid:  # rows of different widths, or not UTF-8
        return None
    n = table.num_rows
    raws = body.split(b"\n")[:-1]
    if n != len(raws):
        return None
    first = before + (2 if header else 1)
    numbers = range(first, first + n)
    ends = accumulate(map(operator.add, map(len, raws), repeat(1)), initial=skipped)
    next(ends)
    items: list[Item | None] = [None] * n
    if width >= 9 and prefix is not None:
        items = _rows(table, prefix, series.symbol, min_epoch_ms)
    return list(zip(numbers, items, raws, ends, strict=True))


def _rows(table: pa.Table, prefix: str, symbol: str, min_epoch_ms: int) -> list[Item | None]:
    c = [table.column(i).combine_chunks() for i in range(9)]
    opened, open_ok = _epoch_us(c[0], min_epoch_ms)
    closes, close_ok = _epoch_us(c[6], min_epoch_ms)
    ok = pc.and_(open_ok, close_ok)
    ok = pc.and_(ok, pc.match_substring_regex(c[8], _DIGITS))
    for i in (1, 2, 3, 4, 5):
        ok = pc.and_(ok, pc.match_substring_regex(c[i], _DECIMAL))
    ok = pc.and_(ok, pc.match_substring_regex(c[7], _QUOTE_VOLUME))
    ok = pc.and_(ok, pc.greater_equal(closes, opened))
    o, h, lo, cl = (pc.cast(pc.if_else(ok, c[i], "0"), _EXACT) for i in (1, 2, 3, 4))
    for a, b in ((lo, o), (o, h), (lo, cl), (cl, h)):
        ok = pc.and_(ok, pc.less_equal(a, b))
    text = pc.binary_join_element_wise(
        prefix, _iso(opened), _iso(closes), c[1], c[2], c[3], c[4], c[5], c[7], c[8], "t", "\t"
    )
    times = pc.cast(opened, pa.timestamp("us", tz="UTC")).to_pylist()
    return [
        new_row(("kline", t, at, symbol)) if good else None
        for good, t, at in zip(ok.to_pylist(), text.to_pylist(), times, strict=True)
    ]


def _epoch_us(column: pa.Array, min_epoch_ms: int) -> tuple[pa.Array, pa.Array]:
    """Epoch µs of digits read as `parse_epoch_ms_or_us` reads them, and where that succeeds."""
    digits = pc.match_substring_regex(column, _DIGITS)
    value = pc.cast(pc.if_else(digits, column, "0"), pa.int64())
    ms = pc.and_(pc.greater_equal(value, min_epoch_ms), pc.less_equal(value, MAX_EPOCH_MS))
    us = pc.and_(pc.greater(value, MAX_EPOCH_MS), pc.less_equal(value, MAX_EPOCH_US))
    good = pc.and_(digits, pc.or_(ms, us))
    return pc.if_else(good, pc.if_else(ms, pc.multiply(value, 1000), value), 0), good


def _iso(us: pa.Array) -> pa.Array:
    """Epoch µs as `datetime.isoformat(" ")` writes a UTC time: the fraction only when non-zero."""
    seconds = pc.strftime(
        pc.cast(pc.divide(us, 1_000_000), pa.timestamp("s", tz="UTC")), format="%Y-%m-%d %H:%M:%S"
    )
    micros = pc.subtract(us, pc.multiply(pc.divide(us, 1_000_000), 1_000_000))
    fraction = pc.binary_join_element_wise(".", pc.utf8_lpad(pc.cast(micros, pa.string()), 6, "0"), "")
    fraction = pc.if_else(pc.equal(micros, 0), "", fraction)
    return pc.binary_join_element_wise(seconds, fraction, "+00:00", "")
