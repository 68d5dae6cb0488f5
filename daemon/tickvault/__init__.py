"""tickvault: the storage daemon for trading systems. Public API: records and errors."""

from tickvault.errors import (
    ConfigError,
    RecordError,
    RowRejected,
    SourceError,
    SourceUnavailable,
    StoreError,
    StoreUnavailable,
    TickvaultError,
)
from tickvault.records import BotState, Fill, Kline, Order, Record

__all__ = [
    "BotState",
    "ConfigError",
    "Fill",
    "Kline",
    "Order",
    "Record",
    "RecordError",
    "RowRejected",
    "SourceError",
    "SourceUnavailable",
    "StoreError",
    "StoreUnavailable",
    "TickvaultError",
]
__version__ = "0.1.0"
