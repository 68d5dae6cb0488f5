"""What the message kinds look like from outside: an example message of each, the storage
rule that settles several messages for one key, and the JSON Schemas published in schemas/
(`tickvault schema`). The record types themselves are in tickvault.records.
"""

from __future__ import annotations

from typing import Any, Final

from tickvault.records import RECORD_TYPES

EXAMPLES: Final[dict[str, dict[str, Any]]] = {
    "kline": {
        "exchange": "binance", "symbol": "BTCUSDT", "interval": "1m",
        "open_time": 1767225600000, "close_time": 1767225659999,
        "open": "87012.50", "high": "87100.00", "low": "86990.10", "close": "87055.25",
        "volume": "12.345", "quote_volume": "1074381.62", "trades": 842, "closed": True,
    },
    "order": {
        "order_id": "8836152", "client_order_id": "grid-7f3a", "exchange": "binance",
        "symbol": "BTCUSDT", "side": "buy", "type": "limit", "status": "partially_filled",
        "quantity": "0.050", "price": "87000.00", "filled_quantity": "0.020",
        "avg_fill_price": "87000.00", "bot_id": "grid-btc-1", "strategy": "grid",
        "created_at": "2026-01-01T00:00:01.250Z", "updated_at": "2026-01-01T00:00:03.500+00:00",
        "seq": 2,
    },
    "fill": {
        "fill_id": "551902", "order_id": "8836152", "exchange": "binance", "symbol": "BTCUSDT",
        "side": "buy", "quantity": "0.020", "price": "87000.00", "fee": "0.0000200",
        "fee_asset": "BTC", "liquidity": "maker", "bot_id": "grid-btc-1", "strategy": "grid",
        "ts": 1767225603500,
    },
    "bot_state": {
        "bot_id": "grid-btc-1", "ts": 1767225604000, "seq": 17,
        "state": {"position": "0.020", "grid_levels": [86500, 87000, 87500], "paused": False},
    },
    "balance": {
        "account": "grid-btc-1", "exchange": "binance", "asset": "USDT", "free": "10250.12500000",
        "locked": "1740.00", "ts": 1767225605000,
    },
    "signal": {
        "bot_id": "grid-btc-1", "strategy": "grid", "exchange": "binance", "symbol": "BTCUSDT",
        "ts": 1767225606000, "action": "buy", "strength": "0.75",
        "metadata": {"reason": "grid level 87000 crossed", "level": 87000},
    },
    "trade": {
        "exchange": "binance", "symbol": "BTCUSDT", "trade_id": "4460839211", "price": "87012.51",
        "quantity": "0.00150", "side": "sell", "quote_quantity": "130.518765", "ts": 1767225600123,
    },
}  # fmt: skip


# How the store settles several messages for one key (store/writers.py implements it; the
# README's "Rules per kind" says the same). A message's version is its place in publish order:
# its Redis entry id, or its Kafka record's timestamp then offset.
STORAGE_RULES: Final[dict[str, str]] = {
    "kline": (
        "Key (exchange, symbol, interval, open_time). The stored candle is the closed one published "
        "last, or, while no closed one exists, the open one published last: a closed candle is never "
        "replaced by an open one, and a redelivered or reclaimed older message changes nothing."
    ),
    "order": (
        "Key (exchange, order_id). The current row is the update that ranks highest by (terminal "
        "status, status is filled, updated_at, seq, status new<open<partially_filled<terminal, "
        "version): a terminal status is never replaced by a non-terminal one. filled_quantity and "
        "avg_fill_price come from the update with the most fill progress, so filled_quantity never "
        "decreases; client_order_id, bot_id, strategy and created_at keep the greatest value any "
        "update carried. Every distinct update is also kept in the order history."
    ),
    "fill": (
        "Key (exchange, symbol, fill_id, ts). The first-published message wins; redeliveries and "
        "later copies change nothing."
    ),
    "bot_state": (
        "Key bot_id. The stored snapshot is the one that ranks highest by (ts, seq, version); a "
        "missing seq counts as -1."
    ),
    "balance": (
        "Key (account, exchange, asset, ts). The message published last wins; a redelivered or "
        "reclaimed older message changes nothing."
    ),
    "signal": (
        "Key (bot_id, strategy, exchange, symbol, ts). The message published last wins; a "
        "redelivered or reclaimed older message changes nothing."
    ),
    "trade": (
        "Key (exchange, symbol, trade_id, ts). The first-published message wins; redeliveries and "
        "later copies change nothing."
    ),
}
ORDERING_NOTE: Final = (
    " The result is the same whatever order, batching or repetition the messages arrive in; "
    "ties between distinct messages of equal version are broken by their values."
)


def json_schemas() -> dict[str, dict[str, Any]]:
    """The JSON Schema of each message kind, as published in schemas/; its description is the
    kind's storage rule."""
    schemas = {}
    for kind, cls in RECORD_TYPES.items():
        schema = cls.model_json_schema(mode="validation")
        schema["description"] = STORAGE_RULES[kind] + ORDERING_NOTE
        schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
        schema["$id"] = f"https://tickvault.dev/schemas/{kind}.schema.json"
        schemas[kind] = schema
    return schemas
