"""The native codec's hot path: klines, fills and trades checked without pydantic. No I/O.

Validating every message with pydantic costs more than all the rest of the pipeline, so
the kinds that make up almost all traffic are checked here. This path only ever
accepts. It returns a `Row` when the message is valid under the models in `records.py`,
and that Row is exactly the one the model's record would give. Otherwise it returns None
and the message takes the pydantic path, which decides and words the error. None covers
other kinds, every error, and valid but unusual forms: a string that holds a backslash, a
control character or a lone surrogate (which COPY would need escaped), exponent notation, a
sign, leading zeros or spaces in a number, a negative fee, a trade_id sent as a JSON number
(which the model refuses).
The rules therefore stay in one place; tests/unit/test_fast_codec.py checks on valid and
invalid input that both paths give the same row or the same error.

How it stays cheap: msgspec decodes a message into a Struct and checks the types (and the
interval, trades and closed) in C. The row's COPY text is joined at once and one regular
expression over it checks every text and decimal field but the series ("exchange<TAB>symbol",
checked once and cached); only the timestamps (cached, klines of one minute share them;
epoch milliseconds turned into text by the second) and a kline's high/low range are checked
in Python. The time cache is shared by every floor (`min_epoch_ms`, see
`records.parse_timestamp`): an integer is compared with the floor before it is looked up.
A text field's pattern admits no backslash, so nothing needs COPY escaping; an optional field
sent as the text "\\N" (which would read as NULL) is refused before the check.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from decimal import Decimal
from typing import Annotated, Any, Final, TypeVar

import msgspec

from tickvault.records import (
    ASSET_PATTERN,
    BOT_ID_PATTERN,
    EXCHANGE_PATTERN,
    MAX_BIGINT,
    SYMBOL_PATTERN,
    TEXT_MAX_LENGTH,
    Interval,
)
from tickvault.rows import NULL, Row, field, new_row
from tickvault.timestamps import EPOCH, MAX_EPOCH_MS, MIN_EPOCH_MS, parse_timestamp

S = TypeVar("S", bound=msgspec.Struct)


class _Kline(msgspec.Struct, tag_field="kind", tag="kline"):
    exchange: str
    symbol: str
    interval: Interval
    open_time: Any  # epoch ms or ISO-8601 text: `_time`
    open: Any  # decimals: JSON strings, or numbers (exact, as Decimal); checked as row text
    high: Any
    low: Any
    close: Any
    volume: Any
    close_time: Any = None
    quote_volume: Any = None
    trades: Annotated[int, msgspec.Meta(ge=0, le=MAX_BIGINT)] | None = None
    closed: bool = True


class _Fill(msgspec.Struct, tag_field="kind", tag="fill"):
    fill_id: str
    order_id: str
    exchange: str
    symbol: str
    side: str
    quantity: Any
    price: Any
    ts: Any
    fee: Any = "0"
    fee_asset: str | None = None
    liquidity: str | None = None
    bot_id: str | None = None
    strategy: str | None = None


class _Trade(msgspec.Struct, tag_field="kind", tag="trade"):
    exchange: str
    symbol: str
    trade_id: str
    price: Any
    quantity: Any
    ts: Any
    side: str | None = None
    quote_quantity: Any = None


def _bare(pattern: str) -> str:
    return pattern.removeprefix("^").removesuffix("$")


def _or_null(pattern: str) -> str:
    return rf"(?:{pattern}|\\N)"


def _row_check(*fields: str) -> Callable[..., re.Match[str] | None]:
    return re.compile("\t".join(fields)).fullmatch


# a decimal the fast path takes as it is: non-negative, written plainly, within decimal(38, 18)
# (records.fits_cold; longer fractions that end in zeros may fit too: the model decides those)
PLAIN_DECIMAL: Final = r"(?:0|[1-9][0-9]{0,19})(?:\.[0-9]{1,18})?"
# no control character, backslash or lone surrogate: nothing COPY must escape, nothing the
# UTF-8 encoder refuses (a JSON escape may have written any of them)
_TEXT: Final = rf"[^\x00-\x1f\x7f\\\ud800-\udfff]{{1,{TEXT_MAX_LENGTH}}}"
_POSITIVE: Final = rf"(?=[0-9.]*[1-9]){PLAIN_DECIMAL}"  # and greater than zero
_ANY: Final = r"[^\t]+"  # a field the Struct's type or `_time` has already checked
# kline and trade rows start with their series, checked on its own (`_known`): the row check
# starts after it
_EXCHANGE: Final = re.compile(_bare(EXCHANGE_PATTERN)).fullmatch
_SYMBOL: Final = re.compile(_bare(SYMBOL_PATTERN)).fullmatch
_KLINE_ROW: Final = _row_check(
    _ANY, _ANY, _ANY,
    PLAIN_DECIMAL, PLAIN_DECIMAL, PLAIN_DECIMAL, PLAIN_DECIMAL, PLAIN_DECIMAL,
    _or_null(PLAIN_DECIMAL), _ANY, _ANY,
)  # fmt: skip
_FILL_ROW: Final = _row_check(
    _TEXT, _TEXT, _bare(EXCHANGE_PATTERN), _bare(SYMBOL_PATTERN), "(?:buy|sell)",
    _POSITIVE, PLAIN_DECIMAL, PLAIN_DECIMAL, _or_null(_bare(ASSET_PATTERN)),
    _or_null("(?:maker|taker)"), _or_null(_bare(BOT_ID_PATTERN)), _or_null(_TEXT), _ANY,
)  # fmt: skip
_TRADE_ROW: Final = _row_check(
    _TEXT, _POSITIVE, _POSITIVE,
    _or_null("(?:buy|sell)"), _or_null(PLAIN_DECIMAL), _ANY,
)  # fmt: skip
_KLINE_DECIMALS: Final = ("open", "high", "low", "close", "volume", "quote_volume")
_FILL_DECIMALS: Final = ("quantity", "price", "fee")
_TRADE_DECIMALS: Final = ("price", "quantity", "quote_quantity")

_DECODERS: Final = {
    "kline": msgspec.json.Decoder(_Kline, float_hook=Decimal).decode,
    "fill": msgspec.json.Decoder(_Fill, float_hook=Decimal).decode,
    "trade": msgspec.json.Decoder(_Trade, float_hook=Decimal).decode,
    None: msgspec.json.Decoder(_Kline | _Fill | _Trade, float_hook=Decimal).decode,  # "kind" required
}
_NO_TIME: Final = (None, NULL)
# a Kafka fetch hands over up to a partition's megabyte at a time (~7,000 trades, one per
# millisecond when trades are spread over partitions) before the next partition's records of
# the same milliseconds: the cache must span such a run
_TIMES_CACHED: Final = 16384
_times: dict[int | str, tuple[dt.datetime, str]] = {}
_seconds: dict[int, tuple[dt.datetime, str]] = {}  # epoch second → (its datetime, its text)
_UTC: Final = "+00:00"
# by millisecond of the second: its timedelta and the rest of the text (as isoformat writes it)
_MS_DELTAS: Final = tuple(dt.timedelta(milliseconds=ms) for ms in range(1000))
_MS_TEXTS: Final = (_UTC, *(f".{ms:03d}000{_UTC}" for ms in range(1, 1000)))
_SERIES_CACHED: Final = 65536
_series: set[str] = set()


def decode(payload: bytes, default_kind: str | None, min_epoch_ms: int = MIN_EPOCH_MS) -> Row | None:
    """The row of a valid kline, fill or trade; None when pydantic must decide. Integer timestamps
    below `min_epoch_ms` are left to pydantic, which refuses them."""
    decoder = _DECODERS.get(default_kind)
    if decoder is None:
        return None
    try:
        message = decoder(payload)
    except (msgspec.DecodeError, ValueError, RecursionError):
        return None
    if type(message) is _Trade:
        return _trade(message, min_epoch_ms)
    if type(message) is _Kline:
        return _kline(message, min_epoch_ms)
    return _fill(message, min_epoch_ms) if type(message) is _Fill else None


def _time(value: Any, min_epoch_ms: int) -> tuple[dt.datetime, str] | None:
    if type(value) is int:
        if value < min_epoch_ms:  # before the cache, which holds values of every floor
            return None
    elif type(value) is not str:
        return None
    cached = _times.get(value)
    if cached is not None:
        return cached
    if type(value) is int:
        if not 0 <= value <= MAX_EPOCH_MS:
            return None
        cached = _epoch_ms(value)
    else:
        try:
            ts = parse_timestamp(value)
        except ValueError:
            return None
        cached = (ts, field(ts))
    if len(_times) >= _TIMES_CACHED:
        _times.clear()
    _times[value] = cached
    return cached


def _epoch_ms(value: int) -> tuple[dt.datetime, str]:
    """Epoch milliseconds within TIME_RANGE as (UTC datetime, COPY text): the text of its
    second is cached (feeds send many milliseconds of one second), the same text as `field`."""
    seconds, ms = divmod(value, 1000)
    second = _seconds.get(seconds)
    if second is None:
        if len(_seconds) >= _TIMES_CACHED:
            _seconds.clear()
        moment = EPOCH + dt.timedelta(0, seconds)
        second = _seconds[seconds] = (moment, field(moment).removesuffix(_UTC))
    return second[0] + _MS_DELTAS[ms], second[1] + _MS_TEXTS[ms]


def _known(series: str, exchange: str, symbol: str) -> bool:
    """Whether "exchange<TAB>symbol" is a valid series; the valid ones are cached."""
    if series in _series:
        return True
    if _EXCHANGE(exchange) is None or _SYMBOL(symbol) is None:
        return False
    if len(_series) >= _SERIES_CACHED:
        _series.clear()
    _series.add(series)
    return True


def _numbers_as_text(message: S, names: tuple[str, ...]) -> S | None:
    """The message with its JSON-number decimals as their text; None when it has none."""
    changes = {}
    for name in names:
        value = getattr(message, name)
        if type(value) is int or type(value) is Decimal:
            changes[name] = str(value)
    return msgspec.structs.replace(message, **changes) if changes else None


def _kline(k: _Kline, min_epoch_ms: int) -> Row | None:
    opened = _time(k.open_time, min_epoch_ms)
    closes = _NO_TIME if k.close_time is None else _time(k.close_time, min_epoch_ms)
    if opened is None or closes is None:
        return None
    quote, trades = k.quote_volume, k.trades
    if quote == NULL:  # a "\\N" sent as a value would read as NULL
        return None
    try:
        return kline_row(
            k.exchange, k.symbol, k.interval, opened, closes, k.open, k.high, k.low, k.close, k.volume,
            NULL if quote is None else quote, NULL if trades is None else str(trades), k.closed,
        )  # fmt: skip
    except TypeError:  # a decimal sent as a JSON number, or a value of no decimal type
        as_text = _numbers_as_text(k, _KLINE_DECIMALS)
        return None if as_text is None else _kline(as_text, min_epoch_ms)


def kline_row(
    exchange: str, symbol: str, interval: str, opened: tuple[dt.datetime, str],
    closes: tuple[dt.datetime | None, str], open_: str, high: str, low: str, close: str, volume: str,
    quote_volume: str, trades: str, closed: bool,
) -> Row | None:  # fmt: skip
    """The row of a kline given as text: times as (UTC datetime, COPY text) pairs (`closes`
    may be `(None, NULL)`), decimals as their text, `quote_volume` and `trades` as text or
    NULL. The caller has checked what this does not: `interval` is one of INTERVALS, `trades`
    is NULL or the digits of an integer within a bigint; a `quote_volume` of "\\N" reads as
    NULL (the native codec refuses it as text before the call; Binance CSV imports take it).
    None when the model must decide (see the module's docstring). Raises TypeError when a
    value is not a str."""
    series = f"{exchange}\t{symbol}"  # the start of the row's text too; both are str (msgspec)
    text = "\t".join((
        series, interval, opened[1], closes[1], open_, high, low, close, volume, quote_volume, trades,
        "t" if closed else "f",
    ))  # fmt: skip
    if (
        not (series in _series or _known(series, exchange, symbol))
        or _KLINE_ROW(text, len(series) + 1) is None
    ):
        return None
    o, h, lo, c = Decimal(open_), Decimal(high), Decimal(low), Decimal(close)
    if not (lo <= o <= h and lo <= c <= h) or (closes[0] is not None and closes[0] < opened[0]):
        return None
    return new_row(("kline", text, opened[0], symbol, series))


def _fill(f: _Fill, min_epoch_ms: int) -> Row | None:
    ts = _time(f.ts, min_epoch_ms)
    if ts is None:
        return None
    asset, liquidity, bot_id, strategy = f.fee_asset, f.liquidity, f.bot_id, f.strategy
    if NULL in (asset, bot_id, strategy):  # a "\\N" sent as a value would read as NULL
        return None
    try:
        series = f"{f.exchange}\t{f.symbol}"
        text = "\t".join((
            f.fill_id, f.order_id, series, f.side.lower(), f.quantity, f.price, f.fee,
            NULL if asset is None else asset, NULL if liquidity is None else liquidity.lower(),
            NULL if bot_id is None else bot_id, NULL if strategy is None else strategy, ts[1],
        ))  # fmt: skip
    except TypeError:
        as_text = _numbers_as_text(f, _FILL_DECIMALS)
        return None if as_text is None else _fill(as_text, min_epoch_ms)
    if _FILL_ROW(text) is None:
        return None
    return new_row(("fill", text, ts[0], f.symbol, series))


def _trade(t: _Trade, min_epoch_ms: int) -> Row | None:
    ts = _time(t.ts, min_epoch_ms)
    if ts is None:
        return None
    side, quote = t.side, t.quote_quantity
    if quote == NULL:  # a "\\N" sent as a value would read as NULL (a side's is lowered: refused)
        return None
    try:
        series = f"{t.exchange}\t{t.symbol}"
        text = "\t".join((
            series, t.trade_id, t.price, t.quantity, NULL if side is None else side.lower(),
            NULL if quote is None else quote, ts[1],
        ))  # fmt: skip
    except TypeError:
        as_text = _numbers_as_text(t, _TRADE_DECIMALS)
        return None if as_text is None else _trade(as_text, min_epoch_ms)
    if not (series in _series or _known(series, t.exchange, t.symbol)):
        return None
    if _TRADE_ROW(text, len(series) + 1) is None:
        return None
    return new_row(("trade", text, ts[0], t.symbol, series))
