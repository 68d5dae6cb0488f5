"""tickvault: the storage daemon for trading systems. Public API: Vault, records, errors."""

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
from tickvault.vault import Vault

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
    "Vault",
]
__version__ = "0.1.0"
