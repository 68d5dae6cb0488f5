"""The native codec's hot path: klines and fills checked without pydantic. No I/O.

Validating every message with pydantic costs more than all the rest of the pipeline, so
the two kinds that make up almost all traffic are checked here by hand. This path only
ever accepts. It returns a `Row` when the message is valid under the models in
`records.py`, and that Row is exactly the one the model's record would give. Otherwise it
returns None and the message takes the pydantic path, which decides and words the error.
None covers other kinds, every error, and valid but unusual forms: exponent notation, a
sign, leading zeros or spaces in a number, a negative fee, a non-string id. The rules
therefore stay in one place; tests/unit/test_fast_codec.py checks on valid and invalid
input that both paths give the same row or the same error.
"""

from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal
from typing import Any, Final

import msgspec

from tickvault.records import (
    ASSET_PATTERN,
    BOT_ID_PATTERN,
    EXCHANGE_PATTERN,
    INTERVALS,
    MAX_BIGINT,
    SYMBOL_PATTERN,
    TEXT_MAX_LENGTH,
    TEXT_PATTERN,
    parse_timestamp,
)
from tickvault.rows import NULL, Row, escape, field, new_row

# JSON numbers with a fraction or exponent become exact Decimals, as in the pydantic path.
_parse: Final = msgspec.json.Decoder(float_hook=Decimal).decode
# a non-negative decimal written plainly, which `rows.field` writes back unchanged
_PLAIN: Final = re.compile(r"(?:0|[1-9][0-9]{0,39})(?:\.[0-9]{1,40})?").fullmatch
_NONZERO: Final = re.compile(r"[1-9]").search
_EXCHANGE: Final = re.compile(EXCHANGE_PATTERN).fullmatch
_SYMBOL: Final = re.compile(SYMBOL_PATTERN).fullmatch
_BOT_ID: Final = re.compile(BOT_ID_PATTERN).fullmatch
_TEXT: Final = re.compile(TEXT_PATTERN).fullmatch
_ASSET: Final = re.compile(ASSET_PATTERN).fullmatch
_INTERVALS: Final = frozenset(INTERVALS)
_TIMES_CACHED: Final = 4096
_times: dict[int | str, tuple[dt.datetime, str]] = {}  # klines of one minute share their times


def decode(payload: bytes, default_kind: str | None) -> Row | None:
    """The row of a valid kline or fill; None when pydantic must decide."""
    try:
        obj = _parse(payload)
    except (msgspec.DecodeError, ValueError, RecursionError):
        return None
    if type(obj) is not dict:
        return None
    kind = obj.get("kind", default_kind)
    if kind == "kline":
        return _kline(obj)
    if kind == "fill":
        return _fill(obj)
    return None


def _plain(value: Any) -> str | None:
    """The text of a non-negative decimal in plain notation, else None."""
    kind = type(value)
    if kind is str:
        return value if _PLAIN(value) else None
    if kind is int or kind is Decimal:  # a JSON number; bool is not int here
        text = str(value)
        return text if _PLAIN(text) else None
    return None


def _time(value: Any) -> tuple[dt.datetime, str] | None:
    if type(value) is not int and type(value) is not str:
        return None
    cached = _times.get(value)
    if cached is not None:
        return cached
    try:
        ts = parse_timestamp(value)
    except ValueError:
        return None
    if len(_times) >= _TIMES_CACHED:
        _times.clear()
    _times[value] = cached = (ts, field(ts))
    return cached


def _venue(exchange: Any, symbol: Any) -> tuple[str, str] | None:
    """(exchange, symbol) when both are valid: the key both klines and fills start with."""
    if type(exchange) is not str or type(symbol) is not str:
        return None
    if _EXCHANGE(exchange) is None or _SYMBOL(symbol) is None:
        return None
    return exchange, symbol


def _text(value: Any) -> str | None:
    if type(value) is str and len(value) <= TEXT_MAX_LENGTH and _TEXT(value):
        return escape(value)
    return None


def _kline(obj: dict[str, Any]) -> Row | None:
    get = obj.get
    venue, interval = _venue(get("exchange"), get("symbol")), get("interval")
    if venue is None or type(interval) is not str or interval not in _INTERVALS:
        return None
    opened = _time(get("open_time"))
    close_time = get("close_time")
    closes = None if close_time is None else _time(close_time)
    open_, high, low, close = (
        _plain(get("open")),
        _plain(get("high")),
        _plain(get("low")),
        _plain(get("close")),
    )
    volume, quote_volume = _plain(get("volume")), get("quote_volume")
    quote = NULL if quote_volume is None else _plain(quote_volume)
    trades, closed = get("trades"), get("closed", True)
    if (
        opened is None or (close_time is not None and (closes is None or closes[0] < opened[0]))
        or open_ is None or high is None or low is None or close is None or volume is None or quote is None
        or not (trades is None or (type(trades) is int and 0 <= trades <= MAX_BIGINT))
        or type(closed) is not bool
    ):  # fmt: skip
        return None
    o, h, lo, c = Decimal(open_), Decimal(high), Decimal(low), Decimal(close)
    if not (lo <= h and lo <= o <= h and lo <= c <= h):
        return None
    fields = (
        *venue, interval, opened[1], NULL if closes is None else closes[1], open_, high, low,
        close, volume, quote, NULL if trades is None else str(trades), "t" if closed else "f",
    )  # fmt: skip
    return new_row(("kline", "\t".join(fields), opened[0]))


def _fill(obj: dict[str, Any]) -> Row | None:
    get = obj.get
    venue, side = _venue(get("exchange"), get("symbol")), get("side")
    fill_id, order_id = _text(get("fill_id")), _text(get("order_id"))
    quantity, price, fee = _plain(get("quantity")), _plain(get("price")), _plain(get("fee", 0))
    asset, liquidity = get("fee_asset"), get("liquidity")
    bot_id, strategy = get("bot_id"), get("strategy")
    strategy_text = NULL if strategy is None else _text(strategy)
    ts = _time(get("ts"))
    if type(side) is str:
        side = side.lower()
    if type(liquidity) is str:
        liquidity = liquidity.lower()
    if (
        fill_id is None or order_id is None or ts is None or strategy_text is None
        or venue is None
        or (side != "buy" and side != "sell")
        or quantity is None or not _NONZERO(quantity) or price is None or fee is None
        or not (asset is None or (type(asset) is str and _ASSET(asset)))
        or not (liquidity is None or liquidity == "maker" or liquidity == "taker")
        or not (bot_id is None or (type(bot_id) is str and _BOT_ID(bot_id)))
    ):  # fmt: skip
        return None
    fields = (
        fill_id, order_id, *venue, side, quantity, price, fee,
        NULL if asset is None else asset, NULL if liquidity is None else liquidity,
        NULL if bot_id is None else bot_id, strategy_text, ts[1],
    )  # fmt: skip
    return new_row(("fill", "\t".join(fields), ts[0]))
