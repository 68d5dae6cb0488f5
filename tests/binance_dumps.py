"""Binance public-data kline dumps as data.binance.vision serves them, made up: monthly 1m
CSV files of a random walk, zipped or not, with or without a header, in epoch milliseconds
or microseconds (recent spot dumps)."""

from __future__ import annotations

import datetime as dt
import io
import random
import zipfile
from dataclasses import dataclass
from pathlib import Path

HEADER = (
    "open_time,open,high,low,close,volume,close_time,quote_volume,count,taker_buy_volume,"
    "taker_buy_quote_volume,ignore"
)
MINUTE_MS = 60_000


@dataclass(frozen=True)
class Dump:
    path: Path
    first_ms: int  # open time of its first candle
    candles: int


def _price(cents: int) -> str:
    return f"{cents // 100}.{cents % 100:02d}000000"


def kline_lines(first_ms: int, candles: int, rng: random.Random, micros: bool) -> list[str]:
    """`candles` 1m kline CSV rows from `first_ms` on, a random walk around 42,000."""
    out, cents = [], 4_200_000 + rng.randint(-100_000, 100_000)
    scale = 1000 if micros else 1
    for i in range(candles):
        open_ms = first_ms + i * MINUTE_MS
        close_c = max(100, cents + rng.randint(-2_000, 2_000))
        high_c, low_c = max(cents, close_c) + rng.randint(0, 900), min(cents, close_c) - rng.randint(0, 900)
        volume_m = rng.randint(1_000, 90_000_000)  # 1e-5 units
        volume = f"{volume_m // 100_000}.{volume_m % 100_000:05d}000"
        quote = f"{volume_m * close_c // 10_000_000}.{volume_m * close_c % 10_000_000:07d}"
        taker = f"{volume_m // 200_000}.{volume_m // 2 % 100_000:05d}000"
        out.append(
            f"{open_ms * scale},{_price(cents)},{_price(high_c)},{_price(low_c)},{_price(close_c)},{volume},"
            f"{(open_ms + MINUTE_MS) * scale - 1},{quote},{rng.randint(1, 3000)},{taker},0.0,0"
        )
        cents = close_c
    return out


def write_dump(
    directory: Path, symbol: str, month: dt.date, *, zipped: bool, header: bool, micros: bool, seed: int = 0
) -> Dump:
    """`SYMBOL-1m-YYYY-MM.csv[.zip]` with every minute of the month."""
    start = dt.datetime(month.year, month.month, 1, tzinfo=dt.UTC)
    following = dt.datetime(month.year + month.month // 12, month.month % 12 + 1, 1, tzinfo=dt.UTC)
    candles = int((following - start).total_seconds()) // 60
    first_ms = int(start.timestamp()) * 1000
    lines = kline_lines(first_ms, candles, random.Random(seed + month.toordinal()), micros)
    text = "\n".join([HEADER, *lines] if header else lines) + "\n"
    name = f"{symbol}-1m-{month:%Y-%m}.csv"
    path = directory / (name + ".zip" if zipped else name)
    if zipped:
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
            archive.writestr(name, text)
        path.write_bytes(buffer.getvalue())
    else:
        path.write_text(text)
    return Dump(path, first_ms, candles)


def year_of_dumps(directory: Path, symbol: str, year: int) -> list[Dump]:
    """Twelve monthly files: zipped but for March and August, a header in the first half of
    the year, microseconds from July on (as Binance's spot dumps since 2025)."""
    return [
        write_dump(
            directory, symbol, dt.date(year, m, 1), zipped=m not in (3, 8), header=m <= 6, micros=m >= 7
        )
        for m in range(1, 13)
    ]
