"""Errors raised by tickvault.

    TickvaultError
    ├── ConfigError          settings are invalid or incomplete (never retried)
    ├── RecordError          a message is not a valid record; `reason` says why, `category`
    │                        is a short label for metrics (invalid_json, invalid, ...)
    ├── StoreError           PostgreSQL failed
    │   ├── StoreUnavailable     connection lost or server not accepting work (retriable);
    │   │                        `cause` is connection, timeout, serialization, deadlock or other
    │   └── RowRejected          the database refused a row's values (not retriable)
    ├── SourceError          the message source failed
    │   └── SourceUnavailable    connection lost (retriable)
    ├── CacheUnavailable     the Redis bot-state cache failed or is resting after a failure;
    │                        callers fall back to PostgreSQL (retriable)
    ├── ColdFileError        a cold-tier data file is missing or damaged
    └── RepositoryError      a model, strategy config or backtest could not be stored or read
        │                    (the blob store failed: retriable)
        ├── NotFound             no such name, version, alias, run or artifact
        ├── VersionConflict      a version saved again with other content (versions are immutable)
        ├── VersionInUse         deleting a model version an alias points to
        ├── BlobTooLarge         a blob past repository.max_blob_bytes (or a config past
        │                        repository.max_config_bytes)
        └── CorruptBlob          a stored blob or document whose sha256 is not the registered one

`retriable` is True on the errors that a later attempt of the same operation may cure.
Driver exceptions (asyncpg, redis) are translated into these at the module that talks to
the driver; nothing above that layer imports a driver.
"""

from __future__ import annotations


class TickvaultError(Exception):
    retriable = False


class ConfigError(TickvaultError):
    pass


class RecordError(TickvaultError):
    def __init__(self, reason: str, category: str = "invalid") -> None:
        super().__init__(reason)
        self.reason = reason
        self.category = category


class StoreError(TickvaultError):
    pass


class StoreUnavailable(StoreError):
    retriable = True

    def __init__(self, message: str, cause: str = "other") -> None:
        super().__init__(message)
        self.cause = cause  # a label of tickvault_store_retries_total


class RowRejected(StoreError):
    pass


class SourceError(TickvaultError):
    pass


class SourceUnavailable(SourceError):
    retriable = True


class CacheUnavailable(TickvaultError):
    retriable = True


class ColdFileError(TickvaultError):
    """A data file of the cold tier is missing, has another size or row count than its table's
    metadata records, or does not parse as Parquet. The message names the file."""


class RepositoryError(TickvaultError):
    """The model, config or backtest repository failed (tickvault.repository). Raised as
    itself when the blob store (archive.root, local or S3) cannot be read or written."""

    retriable = True


class NotFound(RepositoryError):
    """No model, version, alias, config, run or artifact by that name; the message names it."""

    retriable = False


class VersionConflict(RepositoryError):
    """A version is saved again with other content: stored versions never change."""

    retriable = False


class VersionInUse(RepositoryError):
    """A model version an alias points to cannot be deleted without `force`."""

    retriable = False


class BlobTooLarge(RepositoryError):
    """A blob or document is larger than the configured limit; nothing was stored."""

    retriable = False


class CorruptBlob(RepositoryError):
    """A stored blob or document's sha256 differs from the registered one, or it is missing;
    its content is never returned. The message names the object and both checksums."""

    retriable = False
