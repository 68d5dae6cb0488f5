"""The cryptofeed codec: what cryptofeed's Kafka and Redis Streams backends publish. No I/O.

cryptofeed's backends write `dtype.to_dict(numeric_type, none_to)` plus `receipt_timestamp`:
- Kafka (`CandlesKafka`, `TradeKafka`, `FillsKafka`, `OrderInfoKafka`): one JSON object per
  record, on topics named `<key>-<EXCHANGE>-<SYMBOL>` (`candles-BINANCE-BTC-USDT`). Decimals
  are JSON numbers with the default `numeric_type=float`, strings with `numeric_type=str`;
  None is null.
- Redis Streams (`CandlesStream`, `TradeStream`, `FillsStream`, `OrderInfoStream`): a flat
  field map per entry, every value a string: numbers as Python writes them (`repr`),
  None as `"None"`, a candle's `closed` as `"True"`/`"False"`. The Redis source hands the
  fields to this codec as one JSON object (codecs.FIELD_MAP_CODECS).
Both forms decode alike: a decimal is taken from the number's text (a JSON number is parsed
as Decimal, never as float), `"None"` is None, and times are epoch seconds (float) turned
into instants exactly, to the microsecond.

The topic's kind picks the mapping (kline ← candles, trade ← trades, fill ← fills,
order ← order_info); on a `mixed` topic the fields tell: `start` and `interval` a candle,
`order_id` a fill, `status` or `remaining` an order, `amount` and `price` a trade. The README
("cryptofeed codec") lists the mapping field by field and what is dropped.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal, localcontext
from typing import Any, Final

from tickvault.codecs.mapping import Unmappable, epoch_seconds, record, required
from tickvault.codecs.native import parse_json
from tickvault.decimals import COLD_PRECISION, COLD_TYPE, fits_cold
from tickvault.errors import RecordError
from tickvault.rows import Item
from tickvault.timestamps import MIN_EPOCH_MS

Fields = dict[str, Any]
_NONE: Final = "None"  # cryptofeed's Redis backends write None as this string (none_to)
_FLAGS: Final = {True: True, False: False, "True": True, "False": False}
# cryptofeed's order types (cryptofeed.defines) → tickvault's; time-in-force "types" are limits
_ORDER_TYPES: Final = {
    "limit": "limit", "market": "market", "stop-limit": "stop_limit", "stop-market": "stop",
    "trigger-limit": "stop_limit", "trigger-market": "stop", "margin-limit": "limit",
    "margin-market": "market", "maker-or-cancel": "limit", "fill-or-kill": "limit",
    "immediate-or-cancel": "limit", "good-til-canceled": "limit",
}  # fmt: skip
_BY_FILLS: Final = "?by fills"  # open, partially filled or filled, as amount and remaining say
_CLOSED: Final = "?closed"  # filled when nothing remains, else canceled
# cryptofeed's order statuses (cryptofeed.defines, and the raw execution types its Binance
# feed passes on as statuses) → tickvault's
_STATUSES: Final = {
    "submitting": "new", "pending": "new", "new": "new", "open": _BY_FILLS, "unfilled": _BY_FILLS,
    "partial": "partially_filled", "partially_filled": "partially_filled", "trade": _BY_FILLS,
    "filled": "filled", "cancelled": "canceled", "canceled": "canceled", "cancelling": _BY_FILLS,
    "expired": "expired", "failed": "rejected", "rejected": "rejected", "suspended": _BY_FILLS,
    "replaced": _BY_FILLS, "closed": _CLOSED, "trade_prevention": "expired",
}  # fmt: skip


def _optional(value: Any) -> Any:
    return None if value == _NONE else value


def _text(data: Fields, name: str) -> Any:
    return _optional(required(data, name))


def _flag(value: Any, name: str) -> bool:
    flag = _FLAGS.get(value) if isinstance(value, bool | str) else None
    if flag is None:
        raise Unmappable(f"{name}: {value!r} is not true or false")
    return flag


def _count(value: Any, name: str) -> int | None:
    value = _optional(value)
    if value is None or (type(value) is int and value >= 0):
        return value
    if isinstance(value, str) and value.isascii() and value.isdigit():
        return int(value)
    raise Unmappable(f"{name}: {value!r} is not a count")


def _decimal(value: Any) -> Any:
    """A decimal field as the models take it: Decimal or int (JSON), or its text (Redis)."""
    return _optional(value)


def _time(data: Fields, name: str) -> Any:
    return epoch_seconds(required(data, name), name)


def _kline(data: Fields) -> Fields:
    return {
        "exchange": _text(data, "exchange"), "symbol": _text(data, "symbol"),
        "interval": _text(data, "interval"),
        "open_time": _time(data, "start"), "close_time": _time(data, "stop"),
        "open": _decimal(data.get("open")), "high": _decimal(data.get("high")),
        "low": _decimal(data.get("low")), "close": _decimal(data.get("close")),
        "volume": _decimal(data.get("volume")), "trades": _count(data.get("trades"), "trades"),
        "closed": _flag(required(data, "closed"), "closed"),
    }  # fmt: skip


def _trade(data: Fields) -> Fields:
    return {
        "exchange": _text(data, "exchange"), "symbol": _text(data, "symbol"),
        "trade_id": _optional(data.get("id")), "price": _decimal(data.get("price")),
        "quantity": _decimal(data.get("amount")), "side": _optional(data.get("side")),
        "ts": _time(data, "timestamp"),
    }  # fmt: skip


def _fill(data: Fields) -> Fields:
    fields = {
        "fill_id": _optional(data.get("id")), "order_id": _optional(data.get("order_id")),
        "exchange": _text(data, "exchange"), "symbol": _text(data, "symbol"),
        "side": _optional(data.get("side")), "quantity": _decimal(data.get("amount")),
        "price": _decimal(data.get("price")), "liquidity": _optional(data.get("liquidity")),
        "bot_id": _optional(data.get("account")), "ts": _time(data, "timestamp"),
    }  # fmt: skip
    fee = _decimal(data.get("fee"))
    if fee is not None:
        fields["fee"] = fee
    return fields


def _order(data: Fields) -> Fields:
    kind = _text(data, "type")
    order_type = _ORDER_TYPES.get(kind) if isinstance(kind, str) else None
    if order_type is None:
        raise Unmappable(f"type: {kind!r} is not an order type tickvault stores")
    if order_type in ("stop", "stop_limit"):
        raise Unmappable(f"type: {kind!r} orders need a stop price, which order_info does not carry")
    quantity, remaining = _decimal(data.get("amount")), _decimal(data.get("remaining"))
    filled = _filled(quantity, remaining)
    price = _decimal(data.get("price"))
    return {
        "order_id": _optional(data.get("id")), "client_order_id": _optional(data.get("client_order_id")),
        "exchange": _text(data, "exchange"), "symbol": _text(data, "symbol"),
        "side": _optional(data.get("side")), "type": order_type,
        "status": _status(_text(data, "status"), filled, remaining),
        "quantity": quantity, "price": None if _is_zero(price) and order_type == "market" else price,
        "filled_quantity": filled, "bot_id": _optional(data.get("account")),
        "updated_at": _time(data, "timestamp"),
    }  # fmt: skip


def _as_decimal(value: Any, name: str) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, int | str | Decimal):
        raise Unmappable(f"{name}: {value!r} is not a decimal number")
    try:
        number = Decimal(value)
    except ArithmeticError:
        raise Unmappable(f"{name}: {value!r} is not a decimal number") from None
    if not number.is_finite():
        raise Unmappable(f"{name}: must be finite")
    return number


def _is_zero(value: Any) -> bool:
    return value is not None and _as_decimal(value, "price") == 0


def _filled(quantity: Any, remaining: Any) -> Decimal:
    """amount - remaining (0 when remaining is not known), exact. Both must fit the cold
    tier's decimal(38, 18), as every stored decimal does; their difference then takes at most
    COLD_PRECISION + 1 digits, so it is computed with that many rather than the default
    context's 28, which rounded it."""
    if remaining is None or quantity is None:
        return Decimal(0)
    amount, left = _as_decimal(quantity, "amount"), _as_decimal(remaining, "remaining")
    for name, value in (("amount", amount), ("remaining", left)):
        if not fits_cold(value):
            raise Unmappable(f"{name}: {value} does not fit {COLD_TYPE}, the cold tier's type")
    with localcontext(prec=COLD_PRECISION + 1):
        return amount - left


def _status(value: Any, filled: Decimal, remaining: Any) -> str:
    status = _STATUSES.get(value.lower()) if isinstance(value, str) else None
    if status is None:
        raise Unmappable(f"status: {value!r} is not an order status tickvault knows")
    done = remaining is not None and _as_decimal(remaining, "remaining") == 0
    if status == _CLOSED:
        return "filled" if done else "canceled"
    if status == _BY_FILLS:
        return "filled" if done and filled > 0 else "partially_filled" if filled > 0 else "open"
    return status


# data type → (tickvault kind, mapping)
_MAPPINGS: Final[dict[str, tuple[str, Callable[[Fields], Fields]]]] = {
    "candles": ("kline", _kline),
    "trades": ("trade", _trade),
    "fills": ("fill", _fill),
    "order_info": ("order", _order),
}
_DATA_TYPES: Final = {kind: data_type for data_type, (kind, _) in _MAPPINGS.items()}


def _data_type(data: Fields, default_kind: str | None) -> str:
    if default_kind is not None:
        data_type = _DATA_TYPES.get(default_kind)
        if data_type is None:
            raise RecordError(
                f"cryptofeed: no mapping onto kind {default_kind!r} (topics of the cryptofeed codec are "
                f"kline, trade, fill, order or mixed)",
                "unknown_kind",
            )
        return data_type
    if "start" in data and "interval" in data:
        return "candles"
    if "order_id" in data:
        return "fills"
    if "status" in data or "remaining" in data:
        return "order_info"
    if "amount" in data and "price" in data:
        return "trades"
    raise RecordError(
        "cryptofeed: not candles, trades, fills or order_info (no start/interval, order_id, "
        "status/remaining or amount/price field)",
        "unknown_kind",
    )


def decode(payload: bytes, default_kind: str | None, min_epoch_ms: int = MIN_EPOCH_MS) -> Item:
    """The record one cryptofeed message holds. RecordError (dead letter) when the payload is
    not a JSON object, its data type has no mapping, or a field is missing or invalid."""
    data = parse_json(payload)
    if not isinstance(data, dict):
        raise RecordError(f"message is a JSON {type(data).__name__}, not an object", "not_object")
    data_type = _data_type(data, default_kind)
    kind, mapping = _MAPPINGS[data_type]
    what = f"cryptofeed {data_type}"
    try:
        fields = mapping(data)
    except Unmappable as exc:
        raise RecordError(f"{what}: {exc}", "invalid") from None
    return record(fields, kind, min_epoch_ms, what)


def codec(min_epoch_ms: int = MIN_EPOCH_MS, max_state_bytes: int = 0) -> Callable[[bytes, str | None], Item]:
    """The pipeline's decoder with its floor of integer timestamps bound (no bot states here:
    `max_state_bytes` is accepted for the common signature and unused)."""

    def decode_item(payload: bytes, default_kind: str | None) -> Item:
        return decode(payload, default_kind, min_epoch_ms)

    return decode_item
