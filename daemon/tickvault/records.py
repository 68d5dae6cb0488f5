"""Record kinds — Kline, Order, Fill, BotState, Balance, Signal, Trade — with every
validation rule. No I/O.

Decimals are `decimal.Decimal` end to end: JSON numbers and strings are both accepted and
must be finite; floats from Python callers are refused because they are not exact.
Timestamps are integer epoch milliseconds or ISO-8601 strings with an offset, and are
always held as timezone-aware UTC datetimes. Unknown fields are ignored.
Their range and unit rule live in `tickvault.timestamps`; model validation reads the floor
for integers from the context, `{"min_epoch_ms": n}`.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import re
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any, ClassVar, Final, Literal, TypeAlias, get_args

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationInfo,
    WithJsonSchema,
    model_validator,
)

from tickvault.decimals import COLD_INTEGER_DIGITS, COLD_SCALE, COLD_TYPE, fits_cold, in_numeric_range
from tickvault.timestamps import (
    MAX_EPOCH_MS,
    MIN_EPOCH_MS,
    TIME_RANGE,
    parse_timestamp,
)

Interval: TypeAlias = Literal[
    "1s", "1m", "3m", "5m", "15m", "30m", "1h", "2h", "4h", "6h", "8h", "12h", "1d", "3d", "1w", "1M",
]  # fmt: skip
INTERVALS: Final = get_args(Interval)
TERMINAL_STATUSES: Final = frozenset({"filled", "canceled", "rejected", "expired"})
_DECIMAL_PATTERN: Final = r"^\s*[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?\s*$"
_DECIMAL_RE: Final = re.compile(_DECIMAL_PATTERN)
_NON_FINITE: Final = frozenset({"nan", "snan", "inf", "infinity"})


def _message_timestamp(value: Any, info: ValidationInfo) -> dt.datetime:
    context = info.context
    return parse_timestamp(value, context.get("min_epoch_ms", MIN_EPOCH_MS) if context else MIN_EPOCH_MS)


def _decimal(value: Any) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, int | str | Decimal):
        if isinstance(value, float):
            raise ValueError("float is not exact; pass a string or Decimal")
        raise ValueError("must be a decimal number or a string holding one")
    if isinstance(value, str) and not _DECIMAL_RE.fullmatch(value):
        if value.strip().lower().lstrip("+-") in _NON_FINITE:
            raise ValueError("must be finite (NaN and Infinity are refused)")
        raise ValueError("not a decimal number")
    try:
        number = value if isinstance(value, Decimal) else Decimal(value)
    except InvalidOperation:
        raise ValueError("not a decimal number") from None
    if not number.is_finite():
        raise ValueError("must be finite (NaN and Infinity are refused)")
    if not fits_cold(number):  # also keeps it within PostgreSQL numeric's far wider range
        raise ValueError(
            f"does not fit {COLD_TYPE}, the cold tier's type: at most {COLD_INTEGER_DIGITS} integer "
            f"and {COLD_SCALE} fractional digits"
        )
    return _at_most_cold_scale(number)


def _at_most_cold_scale(number: Decimal) -> Decimal:
    """The same value with at most COLD_SCALE fractional digits: the zeros past the 18th
    decimal (all there can be, once it fits the cold type) dropped, exactly. Stored with its
    scale as sent, `1.5` and 30 zeros, with a 20-digit integer part, would take more than the
    38 digits of decimal(38, 18) that reads and rolls parse PostgreSQL's text into."""
    sign, digits, exponent = number.as_tuple()
    if not isinstance(exponent, int) or exponent >= -COLD_SCALE:
        return number
    kept = digits[: len(digits) - (-COLD_SCALE - exponent)] or (0,)
    return Decimal((sign, kept, -COLD_SCALE))


def _non_negative(value: Decimal) -> Decimal:
    if value < 0:
        raise ValueError("must not be negative")
    return value


def _positive(value: Decimal) -> Decimal:
    if value <= 0:
        raise ValueError("must be greater than zero")
    return value


MAX_STATE_DEPTH: Final = 64
MAX_STATE_BYTES: Final = 1_048_576  # default of state.max_bytes: a state's JSON text, in bytes
_JSON_SCALARS: Final = (str, int, Decimal, type(None))


def _json_value(node: Any, path: str) -> None:
    """Refuse what is not a JSON value, or a number that is not finite, naming where."""
    if isinstance(node, float | Decimal):
        if not (math.isfinite(node) if isinstance(node, float) else node.is_finite()):
            raise ValueError(f"{path}: non-finite number {node} (NaN and Infinity are refused)")
    elif not isinstance(node, _JSON_SCALARS):
        raise ValueError(f"{path}: {type(node).__name__} is not a JSON value")


def _shallow(value: dict[str, Any]) -> dict[str, Any]:
    """Refuse JSON nested deeper than MAX_STATE_DEPTH, keys that are not strings, values that
    are not JSON and non-finite numbers (checked without recursion)."""
    stack: list[tuple[Any, int, str]] = [(value, 1, "state")]
    while stack:
        node, depth, path = stack.pop()
        if depth > MAX_STATE_DEPTH:
            raise ValueError(f"nested deeper than {MAX_STATE_DEPTH} levels")
        if isinstance(node, dict):
            for key, child in node.items():
                if not isinstance(key, str):
                    raise ValueError(f"{path}: key {key!r} is not a string")
                stack.append((child, depth + 1, f"{path}.{key}"))
        elif isinstance(node, list | tuple):
            stack.extend((child, depth + 1, f"{path}[{i}]") for i, child in enumerate(node))
        else:
            _json_value(node, path)
    return value


def _lower(value: Any) -> Any:
    return value.lower() if isinstance(value, str) else value


_TIME_SCHEMA: Final[dict[str, Any]] = {
    "anyOf": [
        {
            "type": "integer",
            "minimum": 0,
            "maximum": MAX_EPOCH_MS,
            "description": f"epoch milliseconds; below {MIN_EPOCH_MS} (1973-03-03T09:46:40Z) refused "
            "as likely epoch seconds unless the daemon's source.min_epoch_ms is lowered",
        },
        {"type": "string", "format": "date-time", "description": f"ISO-8601 with a UTC offset, {TIME_RANGE}"},
    ]
}


def _decimal_schema(minimum: int | None = None) -> WithJsonSchema:
    number: dict[str, Any] = {"type": "number"}
    if minimum is not None:
        number["minimum" if minimum == 0 else "exclusiveMinimum"] = 0
    return WithJsonSchema(
        {"anyOf": [number, {"type": "string", "pattern": _DECIMAL_PATTERN}], "description": "exact decimal"}
    )


UtcDatetime: TypeAlias = Annotated[
    dt.datetime, BeforeValidator(_message_timestamp), WithJsonSchema(_TIME_SCHEMA)
]
AnyDecimal: TypeAlias = Annotated[Decimal, BeforeValidator(_decimal), _decimal_schema()]
NonNegDecimal: TypeAlias = Annotated[
    Decimal, BeforeValidator(_decimal), AfterValidator(_non_negative), _decimal_schema(0)
]
PosDecimal: TypeAlias = Annotated[
    Decimal, BeforeValidator(_decimal), AfterValidator(_positive), _decimal_schema(1)
]
EXCHANGE_PATTERN: Final = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,31}$"
SYMBOL_PATTERN: Final = r"^[A-Za-z0-9][A-Za-z0-9._:/@+-]{0,63}$"
BOT_ID_PATTERN: Final = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$"
TEXT_PATTERN: Final = r"^[^\x00-\x1f\x7f]+$"
TEXT_MAX_LENGTH: Final = 128
ASSET_PATTERN: Final = r"^[A-Za-z0-9._-]{1,32}$"
MAX_BIGINT: Final = 2**63 - 1

Exchange: TypeAlias = Annotated[str, Field(pattern=EXCHANGE_PATTERN)]
Symbol: TypeAlias = Annotated[str, Field(pattern=SYMBOL_PATTERN)]
BotId: TypeAlias = Annotated[str, Field(pattern=BOT_ID_PATTERN)]
Text: TypeAlias = Annotated[str, Field(min_length=1, max_length=TEXT_MAX_LENGTH, pattern=TEXT_PATTERN)]
Seq: TypeAlias = Annotated[int, Field(ge=0, le=MAX_BIGINT)]
Side: TypeAlias = Annotated[Literal["buy", "sell"], BeforeValidator(_lower)]


class _Record(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore", frozen=True)
    KIND: ClassVar[str]
    TABLE: ClassVar[str]
    TIME_COLUMN: ClassVar[str]
    COLUMNS: ClassVar[tuple[str, ...]]
    # the field whose value picks one of a kind's writers: part of the table's key, so every
    # update of one row goes through one writer, in order
    WRITER_KEY: ClassVar[str]

    def row(self) -> tuple[Any, ...]:
        """The record's values in `COLUMNS` order, as the store writes them."""
        values = self.__dict__
        return tuple([values[c] for c in self.COLUMNS])

    @property
    def time(self) -> dt.datetime:
        """The value of the column its table is partitioned by."""
        value: dt.datetime = self.__dict__[self.TIME_COLUMN]
        return value

    @property
    def writer_key(self) -> str:
        value: str = self.__dict__[self.WRITER_KEY]
        return value

    @property
    def series(self) -> str:
        """ "exchange<TAB>symbol" for a record that has both fields, else "": the market series
        whose newest event time the daemon reports (tickvault_newest_event_timestamp_seconds)."""
        values = self.__dict__
        symbol = values.get("symbol")
        return "" if symbol is None or "exchange" not in values else f"{values['exchange']}\t{symbol}"


class Kline(_Record):
    KIND = "kline"
    TABLE = "klines"
    TIME_COLUMN = "open_time"
    WRITER_KEY = "symbol"
    COLUMNS = (
        "exchange", "symbol", "interval", "open_time", "close_time", "open", "high", "low",
        "close", "volume", "quote_volume", "trades", "closed",
    )  # fmt: skip

    kind: Literal["kline"] = "kline"
    exchange: Exchange
    symbol: Symbol
    interval: Interval
    open_time: UtcDatetime
    close_time: UtcDatetime | None = None
    open: NonNegDecimal
    high: NonNegDecimal
    low: NonNegDecimal
    close: NonNegDecimal
    volume: NonNegDecimal
    quote_volume: NonNegDecimal | None = None
    trades: Annotated[int, Field(ge=0, le=MAX_BIGINT)] | None = None
    closed: bool = True

    @model_validator(mode="after")
    def _check_range(self) -> Kline:
        if self.high < self.low:
            raise ValueError("high < low")
        if not (self.low <= self.open <= self.high and self.low <= self.close <= self.high):
            raise ValueError("open and close must lie between low and high")
        if self.close_time is not None and self.close_time < self.open_time:
            raise ValueError("close_time is before open_time")
        return self


class Order(_Record):
    KIND = "order"
    TABLE = "orders"
    TIME_COLUMN = "updated_at"
    WRITER_KEY = "order_id"
    COLUMNS = (
        "order_id", "client_order_id", "exchange", "symbol", "side", "type", "status",
        "quantity", "price", "stop_price", "filled_quantity", "avg_fill_price", "bot_id",
        "strategy", "created_at", "updated_at", "seq",
    )  # fmt: skip

    kind: Literal["order"] = "order"
    order_id: Text
    client_order_id: Text | None = None
    exchange: Exchange
    symbol: Symbol
    side: Side
    type: Annotated[Literal["market", "limit", "stop", "stop_limit"], BeforeValidator(_lower)]
    status: Annotated[
        Literal["new", "open", "partially_filled", "filled", "canceled", "rejected", "expired"],
        BeforeValidator(_lower),
    ]
    quantity: PosDecimal
    price: PosDecimal | None = None
    stop_price: PosDecimal | None = None
    filled_quantity: NonNegDecimal = Decimal(0)
    avg_fill_price: NonNegDecimal | None = None
    bot_id: BotId | None = None
    strategy: Text | None = None
    created_at: UtcDatetime | None = None
    updated_at: UtcDatetime
    seq: Seq | None = None

    @model_validator(mode="after")
    def _check_consistency(self) -> Order:
        if self.filled_quantity > self.quantity:
            raise ValueError("filled_quantity exceeds quantity")
        if self.type in ("limit", "stop_limit") and self.price is None:
            raise ValueError(f"a {self.type} order needs a price")
        if self.type in ("stop", "stop_limit") and self.stop_price is None:
            raise ValueError(f"a {self.type} order needs a stop_price")
        return self


class Fill(_Record):
    KIND = "fill"
    TABLE = "fills"
    TIME_COLUMN = "ts"
    WRITER_KEY = "symbol"
    COLUMNS = (
        "fill_id", "order_id", "exchange", "symbol", "side", "quantity", "price", "fee",
        "fee_asset", "liquidity", "bot_id", "strategy", "ts",
    )  # fmt: skip

    kind: Literal["fill"] = "fill"
    fill_id: Text
    order_id: Text
    exchange: Exchange
    symbol: Symbol
    side: Side
    quantity: PosDecimal
    price: NonNegDecimal
    fee: AnyDecimal = Decimal(0)
    fee_asset: Annotated[str, Field(pattern=ASSET_PATTERN)] | None = None
    liquidity: Annotated[Literal["maker", "taker"], BeforeValidator(_lower)] | None = None
    bot_id: BotId | None = None
    strategy: Text | None = None
    ts: UtcDatetime


class BotState(_Record):
    KIND = "bot_state"
    TABLE = "bot_state"
    TIME_COLUMN = "ts"
    WRITER_KEY = "bot_id"
    COLUMNS = ("bot_id", "ts", "seq", "state")

    kind: Literal["bot_state"] = "bot_state"
    bot_id: BotId
    ts: UtcDatetime
    seq: Seq | None = None
    state: Annotated[dict[str, Any], AfterValidator(_shallow)]

    @model_validator(mode="after")
    def _check_size(self, info: ValidationInfo) -> BotState:
        """The state's JSON text within the context's `max_state_bytes` (state.max_bytes)."""
        limit = (info.context or {}).get("max_state_bytes", MAX_STATE_BYTES)
        size = len(dump_json(self.state).encode())
        if size > limit:
            raise ValueError(f"state of {size} bytes exceeds the {limit}-byte limit (state.max_bytes)")
        return self

    def row(self) -> tuple[Any, ...]:
        return (self.bot_id, self.ts, self.seq, dump_json(self.state))


class Balance(_Record):
    """One asset's balance of an account (or a bot) on an exchange at `ts`: the points of an
    equity curve."""

    KIND = "balance"
    TABLE = "balances"
    TIME_COLUMN = "ts"
    WRITER_KEY = "account"
    COLUMNS = ("account", "exchange", "asset", "free", "locked", "ts")

    kind: Literal["balance"] = "balance"
    account: BotId
    exchange: Exchange
    asset: Annotated[str, Field(pattern=ASSET_PATTERN)]
    free: NonNegDecimal
    locked: NonNegDecimal = Decimal(0)
    ts: UtcDatetime


class Signal(_Record):
    """A strategy's trading signal for a symbol at `ts`."""

    KIND = "signal"
    TABLE = "signals"
    TIME_COLUMN = "ts"
    WRITER_KEY = "bot_id"
    COLUMNS = ("bot_id", "strategy", "exchange", "symbol", "ts", "action", "strength", "metadata")

    kind: Literal["signal"] = "signal"
    bot_id: BotId
    strategy: Text
    exchange: Exchange
    symbol: Symbol
    ts: UtcDatetime
    action: Annotated[Literal["buy", "sell", "hold", "close"], BeforeValidator(_lower)]
    strength: AnyDecimal | None = None
    metadata: Annotated[dict[str, Any], AfterValidator(_shallow)] | None = None

    def row(self) -> tuple[Any, ...]:
        values = super().row()
        return (*values[:-1], None if self.metadata is None else dump_json(self.metadata))


class Trade(_Record):
    """One public market trade (tick data) of a symbol on an exchange; `side` is the taker's
    side when the feed tells it."""

    KIND = "trade"
    TABLE = "trades"
    TIME_COLUMN = "ts"
    WRITER_KEY = "symbol"
    COLUMNS = ("exchange", "symbol", "trade_id", "price", "quantity", "side", "quote_quantity", "ts")

    kind: Literal["trade"] = "trade"
    exchange: Exchange
    symbol: Symbol
    trade_id: Text
    price: PosDecimal
    quantity: PosDecimal
    side: Side | None = None
    quote_quantity: NonNegDecimal | None = None
    ts: UtcDatetime


def dump_json(value: Any) -> str:
    """Serialise decoded JSON back to text, writing Decimals as exact JSON numbers.

    Numbers are positional (`10000`, `0.00000001`, never `1E+4`) and keep the scale they
    hold, so the store keeps what was sent; read paths pass canonical values
    (tickvault.decimals). A number beyond PostgreSQL numeric's range, which jsonb refuses
    anyway, keeps its short exponent form rather than expanding into megabytes of zeros.
    """
    if isinstance(value, Decimal):
        return format(value, "f") if in_numeric_range(value) else str(value)
    if isinstance(value, dict):
        return "{" + ",".join(json.dumps(str(k)) + ":" + dump_json(v) for k, v in value.items()) + "}"
    if isinstance(value, list | tuple):
        return "[" + ",".join(dump_json(v) for v in value) + "]"
    return json.dumps(value)


Record: TypeAlias = Kline | Order | Fill | BotState | Balance | Signal | Trade
RECORD_TYPES: Final[dict[str, type[Record]]] = {
    cls.KIND: cls for cls in (Kline, Order, Fill, BotState, Balance, Signal, Trade)
}
KINDS: Final = tuple(RECORD_TYPES)
