"""tickvault: the storage daemon for trading systems. Public API: Vault (async), connect /
SyncVault (blocking), records, errors."""

from tickvault.errors import (
    ColdFileError,
    ConfigError,
    RecordError,
    RowRejected,
    SourceError,
    SourceUnavailable,
    StoreError,
    StoreUnavailable,
    TickvaultError,
)
from tickvault.publish import Publisher
from tickvault.records import Balance, BotState, Fill, Kline, Order, Record, Signal, Trade
from tickvault.sync import SyncVault, connect
from tickvault.vault import Vault

__all__ = [
    "Balance",
    "BotState",
    "ColdFileError",
    "ConfigError",
    "Fill",
    "Kline",
    "Order",
    "Publisher",
    "Record",
    "RecordError",
    "RowRejected",
    "Signal",
    "SourceError",
    "SourceUnavailable",
    "StoreError",
    "StoreUnavailable",
    "SyncVault",
    "TickvaultError",
    "Trade",
    "Vault",
    "connect",
]
__version__ = "0.1.0"
