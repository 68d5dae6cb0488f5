"""What the repository mixins of `Vault` share: the blob stores, the blob lock, JSON columns.

The blob lock. A blob is shared by every row that names its checksum, and a save that finds
its blob already stored writes nothing. So removing a blob (delete, cleanup) must not
interleave with a save: saves hold a shared PostgreSQL advisory lock from before their blob
is written until their row is committed, and removals hold it exclusively while they decide
what no row names and delete it. The lock is per schema, a session lock on one pooled
connection (asyncpg's reset on release frees it even if the unlock fails).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any, Final, TypeVar

import asyncpg

from tickvault.errors import BlobTooLarge
from tickvault.repository.blobs import BlobStore, filesystem
from tickvault.repository.values import parse_json
from tickvault.settings import Settings
from tickvault.store import Store
from tickvault.store.db import DRIVER_ERRORS

T = TypeVar("T")
LOCK_PREFIX: Final = "tickvault.repository:"
MAX_CONFIG_BYTES: Final = 1_048_576  # repository.max_config_bytes' default


class RepositoryBase:
    """Vault's store, schema and settings, and the blob stores built from the settings."""

    _store: Store
    _schema: str
    _settings: Settings | None
    _blob_stores: dict[str, BlobStore]

    def _blobs(self, area: str) -> BlobStore:
        """The blob store of `area` ("models" or "backtests") under `<archive.root>/<schema>`:
        per schema, as the cold tables are, so a cleanup in one schema never takes another's
        blobs for unreferenced ones."""
        if self._settings is None:
            raise RuntimeError("this vault was opened without settings; repositories need Vault.connect")
        if area not in self._blob_stores:
            fs, root = filesystem(self._settings)
            self._blob_stores[area] = BlobStore(
                fs, f"{root}/{self._schema}", area, self._settings.repository.max_blob_bytes
            )
        return self._blob_stores[area]

    async def _locked(self, exclusive: bool, work: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
        """`work(conn)` on a pooled connection holding the blob lock (shared or exclusive)."""
        key = LOCK_PREFIX + self._schema
        kind = "" if exclusive else "_shared"

        async def locked(conn: asyncpg.Connection) -> T:
            await conn.execute(f"SELECT pg_advisory_lock{kind}(hashtext($1))", key)
            try:
                return await work(conn)
            finally:
                with contextlib.suppress(*DRIVER_ERRORS):
                    await conn.execute(f"SELECT pg_advisory_unlock{kind}(hashtext($1))", key)

        result: T = await self._store.run(locked)
        return result

    def _sized(self, text: str, what: str) -> str:
        """`text` (canonical JSON) if within repository.max_config_bytes; else BlobTooLarge."""
        limit = self._settings.repository.max_config_bytes if self._settings else MAX_CONFIG_BYTES
        size = len(text.encode("utf-8"))
        if size > limit:
            raise BlobTooLarge(
                f"{what} of {size} bytes exceeds the {limit}-byte limit (repository.max_config_bytes); "
                "nothing stored"
            )
        return text

    async def _sweep(self, area: str, named: set[str], dry_run: bool) -> tuple[int, int]:
        """Remove the blobs of `area` whose sha256 is not in `named`, and its temporary files
        (dry run: remove nothing); their counts. Only under the exclusive blob lock."""
        blobs = self._blobs(area)
        stored, temps = await self._thread(blobs.stored)
        unreferenced = [sha for sha in stored if sha not in named]
        if not dry_run:
            for sha in unreferenced:
                await self._thread(blobs.delete, sha)
            for temp in temps:
                await self._thread(blobs.remove_temp, temp)
        return len(unreferenced), len(temps)

    @staticmethod
    async def _thread(fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.to_thread(fn, *args)


def json_column(value: Any) -> Any:
    """A jsonb column as asyncpg returns it (text) back to Python, numbers exact."""
    return parse_json(value) if isinstance(value, str) else value
