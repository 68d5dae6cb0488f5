"""The result tables of time-series reads: their columns, Arrow types, keys and the rule that
picks one row when both tiers hold a key.

Types (the same in both tiers, so a result never depends on where a row lives): decimals
`decimal128(38, 18)` — the cold tier's type, which ingest guarantees every stored value fits —
timestamps `timestamp[us, tz=UTC]`, counts and sequence numbers `int64`, flags `bool`, all else
`string`. Columns come in the record's field order (tickvault.records).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import pyarrow as pa

from tickvault.decimals import COLD_PRECISION, COLD_SCALE
from tickvault.records import Balance, Fill, Kline, Order, Signal, Trade

DECIMAL: Final = pa.decimal128(COLD_PRECISION, COLD_SCALE)
TIME: Final = pa.timestamp("us", tz="UTC")
DECIMAL_COLUMNS: Final = frozenset(
    {"open", "high", "low", "close", "volume", "quote_volume", "quantity", "price", "stop_price",
     "filled_quantity", "avg_fill_price", "fee", "free", "locked", "strength", "quote_quantity"}
)  # fmt: skip
TIME_COLUMNS: Final = frozenset({"open_time", "close_time", "created_at", "updated_at", "ts"})
INT_COLUMNS: Final = frozenset({"trades", "seq", "version_ms", "version_seq"})
BOOL_COLUMNS: Final = frozenset({"closed"})
VERSION: Final = ("version_ms", "version_seq")


def arrow_type(column: str) -> pa.DataType:
    if column in DECIMAL_COLUMNS:
        return DECIMAL
    if column in TIME_COLUMNS:
        return TIME
    if column in INT_COLUMNS:
        return pa.int64()
    if column in BOOL_COLUMNS:
        return pa.bool_()
    return pa.string()


@dataclass(frozen=True)
class Spec:
    """One readable table. `rule` decides between a hot and a cold row of one key, as the
    roll's merge would: "kline" — a closed candle beats an open one, then the later-published
    version; "fill" — the first-published version (fills, trades); "latest" — the later-published version
    (balances, signals); "event" — the rows are equal, hot is taken. `cold`: whether the
    table is rolled to the cold tier."""

    table: str
    time_column: str
    key: tuple[str, ...]
    columns: tuple[str, ...]
    rule: str
    cold: bool

    def schema(self, columns: tuple[str, ...] | None = None) -> pa.Schema:
        return pa.schema([pa.field(c, arrow_type(c)) for c in columns or self.columns])


SPECS: Final[dict[str, Spec]] = {
    "klines": Spec(
        "klines", "open_time", ("exchange", "symbol", "interval", "open_time"), Kline.COLUMNS, "kline", True
    ),
    "fills": Spec("fills", "ts", ("exchange", "symbol", "fill_id", "ts"), Fill.COLUMNS, "fill", True),
    "order_events": Spec(
        "order_events",
        "updated_at",
        ("exchange", "order_id", "updated_at", "event_hash"),
        Order.COLUMNS,
        "event",
        True,
    ),
    "orders": Spec("orders", "updated_at", ("exchange", "order_id"), Order.COLUMNS, "event", False),
    "balances": Spec(
        "balances", "ts", ("account", "exchange", "asset", "ts"), Balance.COLUMNS, "latest", True
    ),
    "signals": Spec(
        "signals", "ts", ("bot_id", "strategy", "exchange", "symbol", "ts"), Signal.COLUMNS, "latest", True
    ),
    "trades": Spec("trades", "ts", ("exchange", "symbol", "trade_id", "ts"), Trade.COLUMNS, "fill", True),
}


def check_columns(spec: Spec, columns: Sequence[str] | str | None) -> tuple[str, ...]:
    """The columns a caller asked for, in their order (default: all; a string is split at
    commas). Raises ValueError naming an unknown column and the ones there are."""
    if columns is None:
        return spec.columns
    if isinstance(columns, str):
        columns = [c.strip() for c in columns.split(",") if c.strip()]
    unknown = [c for c in columns if c not in spec.columns]
    if unknown or not columns:
        raise ValueError(
            f"{'no column' if not unknown else 'unknown column ' + ', '.join(map(repr, unknown))} "
            f"for {spec.table}; columns: {', '.join(spec.columns)}"
        )
    return tuple(dict.fromkeys(columns))
