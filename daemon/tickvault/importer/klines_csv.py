"""Binance kline CSV read column-wise with pyarrow: whole blocks of lines parsed, checked
and turned into COPY text at once. No I/O beyond reading the file.

The rows this accepts are exactly those the per-line path (`binance.kline`, through
`codecs.fast.kline_row`) accepts, with the same row: open_time and close_time ASCII
digits read as epoch ms or µs per value (`timestamps.parse_epoch_ms_or_us`, at or above
`min_epoch_ms`), trades ASCII digits within a bigint, open..volume and quote_volume
(or `\\N`) written as `kline_row`'s pattern wants them, low <= open, close <= high (compared
as decimal128(38, 18), which holds every number that pattern admits exactly) and close_time
not before open_time. Every other row takes the per-line path, which words its reason; so
does a whole block pyarrow cannot split as that path splits it (a bare CR, a blank line,
rows of different widths, bytes that are not UTF-8, a byte order mark).
"""

from __future__ import annotations

import codecs
import datetime as dt
import functools
import operator
import re
from collections.abc import Callable, Iterator, Sequence
from itertools import accumulate, repeat
from pathlib import Path
from typing import Final, cast

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from tickvault.codecs.fast import PLAIN_DECIMAL
from tickvault.errors import RecordError
from tickvault.importer import binance
from tickvault.importer.chunk import Chunk
from tickvault.importer.files import blocks, size_of
from tickvault.records import EXCHANGE_PATTERN, SYMBOL_PATTERN
from tickvault.rows import Item, new_row
from tickvault.timestamps import EPOCH, MAX_EPOCH_MS, MAX_EPOCH_US

BLOCK_BYTES: Final = 8 << 20
_BLANK_LINE: Final = re.compile(rb"(?:^|\n)[ \t\x0b\x0c]*\n")
_DIGITS: Final = "^[0-9]{1,18}$"  # within int64; longer ones are no epoch (ms or µs) nor bigint here
_DECIMAL: Final = f"^{PLAIN_DECIMAL}$"
_QUOTE_VOLUME: Final = rf"^(?:{PLAIN_DECIMAL}|\\N)$"
_EXACT: Final = pa.decimal128(38, 18)
_EPOCH_DATE: Final = EPOCH.date()
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
        header = before == 0 and binance.is_header(block[: block.find(b"\n")].rstrip(b"\r"))
        fast = _fast(block, before, header, prefix, min_epoch_ms)
        numbers, items, raws, ends, total = fast if fast is not None else _slow(block, before)
        at, n = 0, len(numbers)
        while at < n:
            upto = min(n, at + chunk_rows - chunk.read)
            part = items[at:upto]
            if None not in part:  # Chunk.add, in bulk: the per-row cost is what bounds an import
                entries = list(map(str, numbers[at:upto]))
                chunk.items += cast(list[Item], part)
                chunk.entries += entries
                chunk.versions += ["0\t" + e for e in entries]
                chunk.read += upto - at
            else:
                for number, item, raw in zip(numbers[at:upto], part, raws[at:upto], strict=True):
                    try:
                        chunk.add(
                            item or binance.kline(raw, series, min_epoch_ms), f"0\t{number}", str(number)
                        )
                    except RecordError as exc:
                        chunk.reject(str(number), "kline", exc, raw)
            at = upto
            if chunk.read >= chunk_rows:
                chunk.done = base + ends[at - 1]
                yield chunk
                chunk = Chunk(path.name)
        base += total
    chunk.done = size_of(path)
    yield chunk


# a block's lines: their numbers, their rows (None: the line takes the per-line path), the
# lines, the bytes `files.lines` counts up to the end of each (from the block's start) and
# in the whole block
Lines = tuple[Sequence[int], list[Item | None], list[bytes], list[int], int]


def _prefix(series: binance.Series) -> str | None:
    if re.fullmatch(EXCHANGE_PATTERN, series.exchange) and re.fullmatch(SYMBOL_PATTERN, series.symbol):
        assert series.interval is not None  # series_of gives klines an interval
        return f"{series.exchange}\t{series.symbol}\t{series.interval}"
    return None  # every row goes to the model, which words why


def _slow(block: bytes, before: int) -> Lines:
    numbers: list[int] = []
    raws: list[bytes] = []
    ends: list[int] = []
    done = 0
    for i, raw in enumerate(block.split(b"\n")[:-1]):
        raw = raw.rstrip(b"\r\n")
        if not raw.strip():
            continue
        done += len(raw) + 1
        if before + i == 0 and binance.is_header(raw):
            continue
        numbers.append(before + i + 1)
        raws.append(raw)
        ends.append(done)
    return numbers, [None] * len(numbers), raws, ends, done


def _fast(block: bytes, before: int, header: bool, prefix: str | None, min_epoch_ms: int) -> Lines | None:
    """The block's lines, with the rows this module vouches for; None when the block must be
    read line by line."""
    if b"\r" in block:
        if block.count(b"\r") != block.count(b"\r\n"):
            return None
        block = block.replace(b"\r\n", b"\n")
    spaces = any(c in block for c in (b" ", b"\t", b"\x0b", b"\x0c"))
    if block.startswith(b"\n") or b"\n\n" in block or (spaces and _BLANK_LINE.search(block)):
        return None
    skipped = block.find(b"\n") + 1 if header else 0
    body = block[skipped:]
    if not body:
        return range(0), [], [], [], skipped
    if body.startswith(codecs.BOM_UTF8):  # pyarrow would drop it; the per-line path does not
        return None
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
    ends = list(accumulate(map(operator.add, map(len, raws), repeat(1)), initial=skipped))[1:]
    items: list[Item | None] = [None] * n
    if width >= 9 and prefix is not None:
        items = _rows(table, prefix, min_epoch_ms)
    return range(first, first + n), items, raws, ends, len(block)


def _rows(table: pa.Table, prefix: str, min_epoch_ms: int) -> list[Item | None]:
    exchange, symbol = prefix.split("\t")[:2]
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
    # as parse_epoch_ms_or_us makes them (pyarrow's own conversion to aware datetimes is slower)
    times = map(dt.timedelta, repeat(0), repeat(0), opened.to_pylist())
    rows: list[Item | None] = list(
        map(
            new_row,
            zip(
                repeat("kline"),
                text.to_pylist(),
                map(EPOCH.__add__, times),
                repeat(symbol),
                repeat(f"{exchange}\t{symbol}"),
            ),
        )
    )
    if pc.all(ok).as_py() is not True:
        rows = [row if good else None for row, good in zip(rows, ok.to_pylist(), strict=True)]
    return rows


def _epoch_us(column: pa.Array, min_epoch_ms: int) -> tuple[pa.Array, pa.Array]:
    """Epoch µs of digits read as `parse_epoch_ms_or_us` reads them, and where that succeeds."""
    digits = pc.match_substring_regex(column, _DIGITS)
    value = pc.cast(pc.if_else(digits, column, "0"), pa.int64())
    ms = pc.and_(pc.greater_equal(value, min_epoch_ms), pc.less_equal(value, MAX_EPOCH_MS))
    us = pc.and_(pc.greater(value, MAX_EPOCH_MS), pc.less_equal(value, MAX_EPOCH_US))
    good = pc.and_(digits, pc.or_(ms, us))
    return pc.if_else(good, pc.if_else(ms, pc.multiply(value, 1000), value), 0), good


def _iso(us: pa.Array) -> pa.Array:
    """Epoch µs (not negative) as `datetime.isoformat(" ")` writes a UTC time: the fraction only
    when non-zero. Dates and fractions are few (a month of 1m klines: 31 dates, 2 fractions):
    each distinct one is written once and taken by index; the time of day from a table of all
    86,400 (pyarrow's strftime takes a microsecond per value)."""
    seconds = pc.divide(us, 1_000_000)
    days = pc.divide(seconds, 86_400)
    date = _each_distinct(days, lambda day: (_EPOCH_DATE + dt.timedelta(days=day)).isoformat())
    clock = pc.take(_clock(), pc.subtract(seconds, pc.multiply(days, 86_400)))
    micros = pc.subtract(us, pc.multiply(seconds, 1_000_000))
    fraction = _each_distinct(micros, lambda m: f".{m:06d}" if m else "")
    return pc.binary_join_element_wise(date, " ", clock, fraction, "+00:00", "")


def _each_distinct(values: pa.Array, text: Callable[[int], str]) -> pa.Array:
    """`text` of each value, called once per distinct value."""
    distinct = pc.unique(values)
    texts = pa.array([text(v) for v in distinct.to_pylist()], pa.string())
    return pc.take(texts, pc.index_in(values, value_set=distinct))


@functools.cache
def _clock() -> pa.Array:
    """ "HH:MM:SS" of every second of a day, by the second of the day."""
    return pa.array([f"{s // 3600:02d}:{s // 60 % 60:02d}:{s % 60:02d}" for s in range(86_400)], pa.string())
