"""The Binance codec: raw events of Binance's spot websocket streams. No I/O.

Each message is one event as Binance sends it, or the combined-stream wrapper
`{"stream": "btcusdt@kline_1m", "data": {…}}`, or the WebSocket API's user-data wrapper
`{"subscriptionId": 0, "event": {…}}`. The event type `e` picks the mapping:
- `kline` → a kline. Binance sends the open candle again on every update (`x` false) and
  the final one once (`x` true); the store keeps the closed one over any open one.
- `trade`, `aggTrade` → a public trade (side: the taker's, sell when the buyer is the maker).
- `executionReport` (user data) → the order's state and, when it reports an execution
  (`x` = TRADE), the fill as well: one message, two records.
Every other event type is a dead letter (`unknown_event`). Decimals come from Binance's
strings exactly; times are its epoch milliseconds. The exchange is `binance`. The README
("Binance codec") lists the mapping field by field and what is dropped.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal, localcontext
from typing import Any, Final

from tickvault.codecs.mapping import Unmappable, record, required
from tickvault.codecs.native import parse_json
from tickvault.decimals import COLD_SCALE
from tickvault.errors import RecordError
from tickvault.rows import Item
from tickvault.timestamps import MIN_EPOCH_MS

Event = dict[str, Any]
EXCHANGE: Final = "binance"
_COLD_STEP: Final = Decimal(1).scaleb(-COLD_SCALE)
# Binance order types → tickvault's (take-profit orders trigger on a stop price too)
_ORDER_TYPES: Final = {
    "LIMIT": "limit", "LIMIT_MAKER": "limit", "MARKET": "market", "STOP_LOSS": "stop",
    "STOP_LOSS_LIMIT": "stop_limit", "TAKE_PROFIT": "stop", "TAKE_PROFIT_LIMIT": "stop_limit",
}  # fmt: skip
_BY_FILLS: Final = "?by fills"  # open or partially filled, as the cumulative quantity says
_STATUSES: Final = {
    "NEW": "new", "PENDING_NEW": "new", "PARTIALLY_FILLED": "partially_filled", "FILLED": "filled",
    "CANCELED": "canceled", "PENDING_CANCEL": _BY_FILLS, "REJECTED": "rejected",
    "EXPIRED": "expired", "EXPIRED_IN_MATCH": "expired",
}  # fmt: skip


def _integer(event: Event, name: str) -> int:
    value = required(event, name)
    if type(value) is not int:
        raise Unmappable(f"{name}: {value!r} is not an integer")
    return value


def _flag(event: Event, name: str) -> bool:
    value = required(event, name)
    if type(value) is not bool:
        raise Unmappable(f"{name}: {value!r} is not true or false")
    return value


def _decimal(event: Event, name: str) -> Decimal:
    value = required(event, name)
    try:
        number = Decimal(value) if type(value) is str else None
    except ArithmeticError:
        number = None
    if number is None or not number.is_finite():
        raise Unmappable(f"{name}: {value!r} is not a decimal string")
    return number


def _kline(event: Event) -> list[tuple[str, dict[str, Any]]]:
    k = required(event, "k")
    if not isinstance(k, dict):
        raise Unmappable("k: not an object")
    fields = {
        "exchange": EXCHANGE, "symbol": required(k, "s"), "interval": required(k, "i"),
        "open_time": required(k, "t"), "close_time": required(k, "T"), "open": required(k, "o"),
        "high": required(k, "h"), "low": required(k, "l"), "close": required(k, "c"),
        "volume": required(k, "v"), "quote_volume": k.get("q"), "trades": k.get("n"),
        "closed": _flag(k, "x"),
    }  # fmt: skip
    return [("kline", fields)]


def _trade(event: Event, id_field: str) -> list[tuple[str, dict[str, Any]]]:
    fields = {
        "exchange": EXCHANGE, "symbol": required(event, "s"), "trade_id": str(_integer(event, id_field)),
        "price": required(event, "p"), "quantity": required(event, "q"),
        "side": "sell" if _flag(event, "m") else "buy", "ts": required(event, "T"),
    }  # fmt: skip
    return [("trade", fields)]


def _execution_report(event: Event) -> list[tuple[str, dict[str, Any]]]:
    order = _order(event)
    if required(event, "x") != "TRADE":
        return [("order", order)]
    fill = {
        "fill_id": str(_integer(event, "t")), "order_id": order["order_id"], "exchange": EXCHANGE,
        "symbol": order["symbol"], "side": order["side"], "quantity": required(event, "l"),
        "price": required(event, "L"), "fee": required(event, "n"), "fee_asset": event.get("N"),
        "liquidity": "maker" if _flag(event, "m") else "taker", "ts": required(event, "T"),
    }  # fmt: skip
    return [("order", order), ("fill", fill)]


def _lookup(names: dict[str, str], value: Any) -> str | None:
    """names[value] for a string value; None for any other (a JSON array or object is not
    even hashable)."""
    return names.get(value) if isinstance(value, str) else None


def _order(event: Event) -> dict[str, Any]:
    order_type = _lookup(_ORDER_TYPES, required(event, "o"))
    if order_type is None:
        raise Unmappable(f"o: {event['o']!r} is not an order type tickvault stores")
    filled, quote = _decimal(event, "z"), _decimal(event, "Z")
    status = _lookup(_STATUSES, required(event, "X"))
    if status is None:
        raise Unmappable(f"X: {event['X']!r} is not an order status tickvault knows")
    if status == _BY_FILLS:
        status = "partially_filled" if filled > 0 else "open"
    # a cancel carries the canceled order's client id in C, and the cancel request's in c
    client_id = (event.get("C") or event.get("c")) if status == "canceled" else event.get("c")
    price = _decimal(event, "p")
    stop_price = _decimal(event, "P") if "P" in event else Decimal(0)
    return {
        "order_id": str(_integer(event, "i")), "client_order_id": client_id or None,
        "exchange": EXCHANGE, "symbol": required(event, "s"), "side": required(event, "S"),
        "type": order_type, "status": status, "quantity": required(event, "q"),
        "price": price if price > 0 else None,
        "stop_price": stop_price if stop_price > 0 else None,
        "filled_quantity": filled, "avg_fill_price": _average(quote, filled),
        "created_at": event.get("O"), "updated_at": required(event, "T"),
    }  # fmt: skip


def _average(quote: Decimal, filled: Decimal) -> Decimal | None:
    """Cumulative quote / cumulative quantity, rounded half-even to the cold tier's scale."""
    if filled <= 0:
        return None
    with localcontext(prec=80):
        average = quote / filled
        exponent = average.as_tuple().exponent  # an int: the average is finite
        fits = isinstance(exponent, int) and exponent >= -COLD_SCALE
        return average if fits else average.quantize(_COLD_STEP)


_EVENTS: Final[dict[str, Callable[[Event], list[tuple[str, dict[str, Any]]]]]] = {
    "kline": _kline,
    "trade": lambda event: _trade(event, "t"),
    "aggTrade": lambda event: _trade(event, "a"),
    "executionReport": _execution_report,
}


def _event(message: Any) -> Event:
    """The event inside a combined-stream or WebSocket API wrapper, or the message itself."""
    if not isinstance(message, dict):
        raise RecordError(f"message is a JSON {type(message).__name__}, not an object", "not_object")
    if "e" not in message:
        inner = message.get("data") if "stream" in message else message.get("event")
        if isinstance(inner, dict):
            return inner
    return message


def decode(payload: bytes, min_epoch_ms: int = MIN_EPOCH_MS) -> Item | list[Item]:
    """The record(s) one Binance event holds: one Item, or [order, fill] for an
    executionReport with an execution. RecordError (dead letter) when the payload is not a
    JSON object, the event type is not one of those above, or a field is missing or invalid."""
    event = _event(parse_json(payload))
    name = event.get("e")
    mapping = _EVENTS.get(name) if isinstance(name, str) else None
    if mapping is None:
        raise RecordError(
            f"binance: event type {name!r} is not stored (kline, trade, aggTrade or executionReport)",
            "unknown_event",
        )
    what = f"binance {name}"
    try:
        mapped = mapping(event)
    except Unmappable as exc:
        raise RecordError(f"{what}: {exc}", "invalid") from None
    items = [record(fields, kind, min_epoch_ms, what) for kind, fields in mapped]
    return items[0] if len(items) == 1 else items


def codec(
    min_epoch_ms: int = MIN_EPOCH_MS, max_state_bytes: int = 0
) -> Callable[[bytes, str | None], Item | list[Item]]:
    """The pipeline's decoder with its floor of integer timestamps bound. The topic's kind is
    not used: the event type decides (`max_state_bytes` is unused too)."""

    def decode_item(payload: bytes, default_kind: str | None) -> Item | list[Item]:
        return decode(payload, min_epoch_ms)

    return decode_item
