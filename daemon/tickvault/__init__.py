"""tickvault: the storage daemon for trading systems. Public API: Vault (async), connect /
SyncVault (blocking), records, errors."""

import importlib
from typing import TYPE_CHECKING, Any, Final

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
from tickvault.records import Balance, BotState, Fill, Kline, Order, Record, Signal, Trade

if TYPE_CHECKING:
    from tickvault.publish import Publisher
    from tickvault.sync import SyncVault, connect
    from tickvault.vault import Vault

# imported on first use (PEP 562): the daemon and the CLI's commands that do not read need
# none of pyarrow, pyiceberg or the Kafka client, which take seconds to import
_LAZY: Final = {
    "Publisher": "tickvault.publish",
    "SyncVault": "tickvault.sync",
    "connect": "tickvault.sync",
    "Vault": "tickvault.vault",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'tickvault' has no attribute {name!r}")


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
