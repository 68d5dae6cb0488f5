"""Binance's public data dumps (data.binance.vision) as klines and public trades. No I/O
beyond reading the file.

Files are named `SYMBOL-INTERVAL-DATE` (klines, e.g. `BTCUSDT-1m-2024-01.zip`, monthly
interval `1mo`), `SYMBOL-trades-DATE` or `SYMBOL-aggTrades-DATE`, with DATE `YYYY-MM` or
`YYYY-MM-DD`, as `.csv` or a `.zip` holding one. The symbol and interval come from the name
unless `--symbol`/`--interval` are given; the exchange is `--exchange` (default binance).
Columns, with or without a header row (a first line whose first field is not a number):
- klines: open_time, open, high, low, close, volume, close_time, quote_volume, count,
  taker_buy_volume, taker_buy_quote_volume, ignore (the last four optional);
- trades: id, price, qty, quote_qty, time, is_buyer_maker[, is_best_match];
- aggTrades: agg_trade_id, price, quantity, first_trade_id, last_trade_id, transact_time,
  is_buyer_maker[, is_best_match].
Times are epoch milliseconds or microseconds (recent spot dumps), told apart per value
(`timestamps.parse_epoch_ms_or_us`). A trade's side is the taker's: `sell` when the buyer
was the maker. Kline files are read column-wise (`klines_csv`); a kline line that reader
cannot vouch for takes `kline`: the native codec's fast path (`codecs.fast.kline_row`), and
what that does not accept is decided, and its reason worded, by the Kline model.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from tickvault.codecs.fast import kline_row
from tickvault.codecs.native import to_record
from tickvault.errors import ConfigError, RecordError
from tickvault.importer.chunk import Chunk
from tickvault.importer.files import lines, size_of
from tickvault.records import INTERVALS, MAX_BIGINT
from tickvault.rows import Item, to_item
from tickvault.timestamps import parse_epoch_ms_or_us

_NAME: Final = re.compile(
    r"^(?P<symbol>[A-Za-z0-9]+)-(?P<what>[0-9]+[smhdw]|1mo|trades|aggTrades)"
    r"-[0-9]{4}-[0-9]{2}(?:-[0-9]{2})?(?:\.csv)?(?:\.zip)?$"
)
KLINE_COLUMNS: Final = "open_time,open,high,low,close,volume,close_time,quote_volume,count"
TRADE_KINDS: Final = {"trades": "trades", "aggTrades": "aggtrades"}
_BIGINT_DIGITS: Final = len(str(MAX_BIGINT))


@dataclass(frozen=True)
class Series:
    """What a file holds: "klines", "trades" or "aggtrades", for exchange and symbol (and
    the interval of klines)."""

    what: str
    exchange: str
    symbol: str
    interval: str | None = None


def parse_name(name: str) -> tuple[str, str] | None:
    """`BTCUSDT-1m-2024-01.zip` → ("BTCUSDT", "1m"); `…-trades-…` → (symbol, "trades"),
    `…-aggTrades-…` → (symbol, "aggtrades"); None when the name is not Binance's."""
    match = _NAME.match(name)
    if match is None:
        return None
    what = match["what"]
    what = TRADE_KINDS.get(what, "1M" if what == "1mo" else what)
    return match["symbol"], what


def series_of(path: Path, fmt: str, exchange: str, symbol: str | None, interval: str | None) -> Series:
    """The series of a file from the options and its name. `fmt` is "binance" (told by the
    name) or binance-klines/-trades/-aggtrades. Raises ConfigError when neither gives the
    symbol, the interval of klines, or what the file holds, or the interval is not one of
    INTERVALS; and for trades when this build has no `trade` kind."""
    named = parse_name(path.name)
    what = fmt.removeprefix("binance-") if fmt != "binance" else None
    if what is None:
        if named is None:
            raise ConfigError(
                f"{path}: not named as Binance's dumps are; "
                "give --format binance-klines (or binance-trades, binance-aggtrades)"
            )
        what = named[1] if named[1] in TRADE_KINDS.values() else "klines"
    if what == "klines" and interval is None:
        interval = named[1] if named and named[1] not in TRADE_KINDS.values() else None
        if interval is None:
            raise ConfigError(f"{path}: cannot tell the interval from the name; give --interval")
    if interval is not None and interval not in INTERVALS:
        raise ConfigError(f"{path}: interval {interval!r} is not one of {' '.join(INTERVALS)}")
    symbol = symbol or (named[0] if named else None)
    if symbol is None:
        raise ConfigError(f"{path}: cannot tell the symbol from the name; give --symbol")
    return Series(what, exchange, symbol, interval if what == "klines" else None)


def chunks(path: Path, series: Series, chunk_rows: int, min_epoch_ms: int) -> Iterator[Chunk]:
    """The file's rows in chunks of at most `chunk_rows`, version "0<TAB>line number".
    Klines are read column-wise (`klines_csv`, the same rows and dead letters). Raises
    ImportFailed (files.lines) when it cannot be read."""
    if series.what == "klines":
        from tickvault.importer import klines_csv  # it reads rows it cannot vouch for with kline

        yield from klines_csv.chunks(path, series, chunk_rows, min_epoch_ms)
        return
    parse = kline if series.what == "klines" else _trade
    kind = "kline" if series.what == "klines" else "trade"
    chunk, done = Chunk(path.name), 0
    for number, raw in lines(path):
        done += len(raw) + 1
        if number == 1 and is_header(raw):
            continue
        try:
            item = parse(raw, series, min_epoch_ms)
        except RecordError as exc:
            chunk.reject(str(number), kind, exc, raw)
        else:  # Chunk.add, inlined: the per-row cost is what bounds an import
            chunk.items.append(item)
            chunk.versions.append(f"0\t{number}")
            chunk.entries.append(str(number))
            chunk.read += 1
        if chunk.read >= chunk_rows:
            chunk.done = done
            yield chunk
            chunk = Chunk(path.name)
    chunk.done = size_of(path)
    yield chunk


def is_header(raw: bytes) -> bool:
    """Whether the first line of a file is a header: its first field is not a number."""
    first = raw.split(b",", 1)[0].strip()
    return not first.isdigit()


def _text(raw: bytes) -> list[str]:
    try:
        return raw.decode().split(",")
    except UnicodeDecodeError as exc:
        raise RecordError(f"line is not valid UTF-8 ({exc.reason} at byte {exc.start})", "not_utf8") from None


def _epoch(text: str, min_epoch_ms: int) -> tuple[dt.datetime, str] | None:
    if not (text.isascii() and text.isdigit()):
        return None
    try:
        ts = parse_epoch_ms_or_us(int(text), min_epoch_ms)
    except ValueError:
        return None
    return ts, ts.isoformat(" ")  # as rows.field writes it


def kline(raw: bytes, series: Series, min_epoch_ms: int) -> Item:
    """A kline CSV line as its row. Raises RecordError saying why it is not a valid kline."""
    f = _text(raw)
    if len(f) >= 9:
        opened, closes, trades = _epoch(f[0], min_epoch_ms), _epoch(f[6], min_epoch_ms), f[8]
        if opened and closes and trades.isascii() and trades.isdigit() and len(trades) < _BIGINT_DIGITS:
            interval = series.interval
            assert interval is not None  # series_of gives klines an interval
            row = kline_row(
                series.exchange, series.symbol, interval, opened, closes, f[1], f[2], f[3], f[4], f[5],
                f[7], trades, True,
            )  # fmt: skip
            if row is not None:
                return row
    return _kline_by_model(f, series, min_epoch_ms)


def _kline_by_model(f: list[str], series: Series, min_epoch_ms: int) -> Item:
    """The model's verdict on a row the fast path did not take: its row, or RecordError."""
    if len(f) < 9:
        raise RecordError(f"invalid kline: {len(f)} columns, expected {KLINE_COLUMNS}[,…]", "invalid")
    obj: dict[str, Any] = {
        "exchange": series.exchange, "symbol": series.symbol, "interval": series.interval,
        "open_time": _time(f[0], "open_time", "kline", min_epoch_ms), "open": f[1], "high": f[2],
        "low": f[3], "close": f[4], "volume": f[5],
        "close_time": _time(f[6], "close_time", "kline", min_epoch_ms), "quote_volume": f[7],
        "trades": int(f[8]) if f[8].isascii() and f[8].isdigit() else f[8], "closed": True,
    }  # fmt: skip
    return to_item(to_record(obj, "kline", min_epoch_ms))


def _time(text: str, name: str, kind: str, min_epoch_ms: int) -> dt.datetime:
    if not (text.isascii() and text.isdigit()):
        raise RecordError(f"invalid {kind}: {name}: not an integer epoch timestamp", "invalid")
    try:
        return parse_epoch_ms_or_us(int(text), min_epoch_ms)
    except ValueError as exc:
        raise RecordError(f"invalid {kind}: {name}: {exc}", "invalid") from None


def trade_message(f: list[str], series: Series, min_epoch_ms: int) -> dict[str, Any]:
    """A trades or aggTrades CSV row as a native `trade` message (ts as a UTC datetime).
    Raises RecordError for a row of too few columns or a bad time."""
    agg = series.what == "aggtrades"
    wanted, at, maker = (7, 5, 6) if agg else (6, 4, 5)
    if len(f) < wanted:
        raise RecordError(f"invalid trade: {len(f)} columns, expected at least {wanted}", "invalid")
    return {
        "exchange": series.exchange, "symbol": series.symbol, "trade_id": f[0], "price": f[1],
        "quantity": f[2], "side": "sell" if f[maker].strip().lower() == "true" else "buy",
        "quote_quantity": None if agg else f[3], "ts": _time(f[at], "ts", "trade", min_epoch_ms),
    }  # fmt: skip


def _trade(raw: bytes, series: Series, min_epoch_ms: int) -> Item:
    return to_item(to_record(trade_message(_text(raw), series, min_epoch_ms), "trade", min_epoch_ms))
