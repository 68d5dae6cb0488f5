"""The column-wise kline CSV reader gives what reading each line with `binance.kline` gives:
the same rows, versions, entries, dead letters (reason and line number) and progress."""

from __future__ import annotations

import datetime as dt
import random
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from tickvault.errors import RecordError
from tickvault.importer import binance, klines_csv
from tickvault.importer.chunk import Chunk
from tickvault.importer.files import lines, size_of
from tickvault.timestamps import EPOCH, MAX_EPOCH_US

SERIES = binance.Series("klines", "binance", "BTCUSDT", "1m")
HEADER = "open_time,open,high,low,close,volume,close_time,quote_volume,count,tbv,tbqv,ignore"
GOOD = "1704067200000,42283.58,42298.62,42261.02,42298.61,35.927240,1704067259999,1519065.56,1327,1,1,0"
LINES = [
    HEADER,
    GOOD,
    "1704067260000000,1.5,2,1,1.50,0.0,1704067319999999,\\N,0,1,1,0",  # µs; quote_volume NULL
    "1704067260123456,1,1,1,1,0,1704067319999000,0.000000000000000001,7,1,1,0",  # a µs fraction
    "1704067200000,42283.58,42298.62,42299.02,42298.61,1,1704067259999,1,1,1,1,0",  # low > open
    "1704067200,1,1,1,1,1,1704067259999,1,1,1,1,0",  # seconds
    "1704067200000,-1,1,1,1,1,1704067259999,1,1,1,1,0",
    "1704067200000,1e3,1e3,1e3,1e3,1,1704067259999,1,1,1,1,0",
    "1704067200000,1,1,1,1,1,1704067159999,1,1,1,1,0",  # closes before it opens
    "1704067200000,1,1,1,1,1,1704067259999,1,99999999999999999999,1,1,0",
    "1704067200000, 1,1,1,1,1,1704067259999,1,1,1,1,0",
    "1704067200000,042283.58,42298.62,1,42298.61,1,1704067259999,1,1,1,1,0",
    "1704067200000,1.0000000000000000000000,1,1,1,1,1704067259999,1,1,1,1,0",  # the model decides
    "253402300799999999,1,1,1,1,1,253402300799999999,1,1,1,1,0",  # the last µs
    "253402300799999,1,1,1,1,1,253402300799999,1,1,1,1,0",  # the last ms
    "99999999999999999999,1,1,1,1,1,1704067259999,1,1,1,1,0",
    "1704067200000,0,0,0,0,0,1704067259999,,0,1,1,0",
    "1704067200000,x,2,1,1,0,1704067259999,1,0,1,1,0",
]
FILES = {
    "lf": "\n".join(LINES) + "\n",
    "no_last_end": "\n".join(LINES[1:]),
    "crlf": "\r\n".join(LINES) + "\r\n",
    "blank_lines": "\n".join([*LINES[:3], "", "  ", *LINES[3:]]) + "\n",
    "mixed_widths": "\n".join([*LINES, "1704067200000,1,1,1"]) + "\n",
    "bare_cr": "\n".join(LINES[:4]) + "\r\r\n" + "\n".join(LINES[4:]) + "\n",
    "quotes": "\n".join([*LINES[:4], '1704067200000,"1",1,1,1,1,1704067259999,1,1,1,1,0']) + "\n",
    "nine_columns": "\n".join(line.rsplit(",", 3)[0] for line in LINES) + "\n",
    "eight_columns": "\n".join(line.rsplit(",", 4)[0] for line in LINES) + "\n",
    "many": "\n".join(LINES * 40) + "\n",
    "byte_order_marks": "\n".join(["\ufeff" + GOOD, *(["\ufeff" + GOOD, *LINES[1:]] * 5)]) + "\n",
}


def per_line(path: Path, series: binance.Series, chunk_rows: int, min_epoch_ms: int) -> Iterator[Chunk]:
    """The reader as it was before klines were read column-wise."""
    chunk, done = Chunk(path.name), 0
    for number, raw in lines(path):
        done += len(raw) + 1
        if number == 1 and binance.is_header(raw):
            continue
        try:
            chunk.add(binance.kline(raw, series, min_epoch_ms), f"0\t{number}", str(number))
        except RecordError as exc:
            chunk.reject(str(number), "kline", exc, raw)
        if chunk.read >= chunk_rows:
            chunk.done = done
            yield chunk
            chunk = Chunk(path.name)
    chunk.done = size_of(path)
    yield chunk


def fields(chunks: Iterator[Chunk]) -> list[tuple[Any, ...]]:
    return [(c.items, c.versions, c.entries, c.bad, c.read, c.done) for c in chunks]


@pytest.mark.parametrize("name", [*FILES, "not_utf8"])
@pytest.mark.parametrize("zipped", [False, True])
def test_column_wise_reader_gives_what_each_line_gives(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, zipped: bool
) -> None:
    data = FILES[name].encode() if name in FILES else FILES["lf"].encode() + b"1704067200000,1,1,1,1,1,\xff\n"
    path = tmp_path / "BTCUSDT-1m-2024-01.csv"
    path.write_bytes(data)
    if zipped:  # two members, numbered on
        path = tmp_path / "BTCUSDT-1m-2024-01.zip"
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("a.csv", data)
            archive.writestr("b.csv", data)
    for series in (SERIES, binance.Series("klines", "not an exchange", "BTCUSDT", "1m")):
        for chunk_rows, min_epoch_ms, block_bytes in ((7, 100_000_000_000, 300), (10_000, 0, 8 << 20)):
            monkeypatch.setattr(klines_csv, "BLOCK_BYTES", block_bytes)
            column_wise = fields(binance.chunks(path, series, chunk_rows, min_epoch_ms))
            assert column_wise == fields(per_line(path, series, chunk_rows, min_epoch_ms))
            if series is SERIES and name != "eight_columns":  # good rows and bad ones both seen
                assert any(c[0] for c in column_wise) and any(c[3] for c in column_wise)


def test_column_wise_rows_are_the_fast_paths_rows(tmp_path: Path) -> None:
    path = tmp_path / "BTCUSDT-1m-2024-01.csv"
    path.write_text("\n".join(LINES[1:4]) + "\n")
    rows = [item for chunk in klines_csv.chunks(path, SERIES, 100, 0) for item in chunk.items]
    assert rows == [binance.kline(line.encode(), SERIES, 0) for line in LINES[1:4]]
    assert rows[2].text.split("\t")[3] == "2024-01-01 00:01:00.123456+00:00"


def test_time_text_is_isoformat_across_the_whole_range() -> None:
    """`_iso` builds the text from tables (time of day, each distinct date and fraction); it
    must be `datetime.isoformat(" ")` of the same UTC time everywhere, fractions included."""
    rng = random.Random(16)
    edges = [0, 1, 999_999, 1_000_000, 86_399_999_999, 86_400_000_000, MAX_EPOCH_US]
    values = edges + [rng.randint(0, MAX_EPOCH_US) for _ in range(5000)]
    values += [1_704_067_200_000_000 + 60_000_000 * i + 59_999_000 for i in range(1000)]  # 1m closes
    expected = [(EPOCH + dt.timedelta(microseconds=v)).isoformat(" ") for v in values]
    assert klines_csv._iso(pa.array(values, pa.int64())).to_pylist() == expected
