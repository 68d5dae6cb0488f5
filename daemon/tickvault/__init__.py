"""tickvault: the storage daemon for trading systems. Public API: Vault (async), connect /
SyncVault (blocking), records, errors."""

from tickvault.errors import (
    BlobTooLarge,
    ColdFileError,
    ConfigError,
    CorruptBlob,
    NotFound,
    RecordError,
    RepositoryError,
    RowRejected,
    SourceError,
    SourceUnavailable,
    StoreError,
    StoreUnavailable,
    TickvaultError,
    VersionConflict,
    VersionInUse,
)
from tickvault.publish import Publisher
from tickvault.records import Balance, BotState, Fill, Kline, Order, Record, Signal, Trade
from tickvault.sync import SyncVault, connect
from tickvault.vault import Vault

__all__ = [
    "Balance",
    "BlobTooLarge",
    "BotState",
    "ColdFileError",
    "ConfigError",
    "CorruptBlob",
    "Fill",
    "Kline",
    "NotFound",
    "Order",
    "Publisher",
    "Record",
    "RecordError",
    "RepositoryError",
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
    "VersionConflict",
    "VersionInUse",
    "connect",
]
__version__ = "0.1.0"
