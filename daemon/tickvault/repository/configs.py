"""The strategy config methods of `Vault` (a mixin): versioned JSON documents.

A config version is (name, version ≥ 1) → one JSON object, kept in `strategy_configs` as
its canonical text (tickvault.repository.values: sorted keys, exact canonical numbers) with
that text's sha256. Versions are immutable: a given version saved again with an equal
document is returned unchanged, with another document raises VersionConflict. Without a
version the next one is taken (1, then the latest + 1), unless the document equals the
latest, which is then returned: saving the same config twice makes no new version.
Versions of one name are numbered under a transaction lock, so concurrent saves never take
the same number. Every load recomputes the sha256 and raises CorruptBlob on a mismatch.

Diffs (`diff_strategy_configs`) list the changes from one version to another, each with
its path as a JSON Pointer (RFC 6901: `/risk/stop_loss`, `/levels/2`; `~` and `/` in keys
escaped as `~0` and `~1`): a key or list element `added`, `removed`, or `changed` (old and
new values; a value changing type, e.g. object to number, is one change at its path).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any, Final, Literal

import asyncpg

from tickvault.errors import ConfigError, CorruptBlob, NotFound, VersionConflict
from tickvault.reads.args import limit_of
from tickvault.repository.base import RepositoryBase
from tickvault.repository.values import canonical_json, check_name, check_version, parse_json, sha256_text

LOCK_PREFIX: Final = "tickvault.config:"
_COLUMNS: Final = "name, version, document, sha256, created_at"


@dataclass(frozen=True)
class StrategyConfig:
    """One stored config version: `document` a JSON object (numbers int or Decimal),
    `sha256` of its canonical text, `created_at` UTC."""

    name: str
    version: int
    document: dict[str, Any]
    sha256: str
    created_at: dt.datetime


@dataclass(frozen=True)
class Change:
    """One difference between two documents: `path` a JSON Pointer, `kind` added, removed
    or changed, `old` and `new` the values (None where there is none)."""

    path: str
    kind: Literal["added", "removed", "changed"]
    old: Any
    new: Any


def _config(row: asyncpg.Record) -> StrategyConfig:
    text = row["document"]
    found = sha256_text(text)
    if found != row["sha256"]:
        raise CorruptBlob(
            f"config {row['name']} version {row['version']} is corrupt: "
            f"sha256 {found}, registered {row['sha256']}"
        )
    return StrategyConfig(row["name"], row["version"], parse_json(text), row["sha256"], row["created_at"])


def _pointer(path: str, key: str | int) -> str:
    return f"{path}/{str(key).replace('~', '~0').replace('/', '~1')}"


def diff(old: Any, new: Any, path: str = "") -> list[Change]:
    """The changes from `old` to `new` (JSON values), in key order, as JSON Pointers."""
    if isinstance(old, dict) and isinstance(new, dict):
        changes: list[Change] = []
        for key in sorted(old.keys() | new.keys()):
            where = _pointer(path, key)
            if key not in new:
                changes.append(Change(where, "removed", old[key], None))
            elif key not in old:
                changes.append(Change(where, "added", None, new[key]))
            else:
                changes += diff(old[key], new[key], where)
        return changes
    if isinstance(old, list) and isinstance(new, list):
        changes = []
        for i in range(max(len(old), len(new))):
            where = _pointer(path, i)
            if i >= len(new):
                changes.append(Change(where, "removed", old[i], None))
            elif i >= len(old):
                changes.append(Change(where, "added", None, new[i]))
            else:
                changes += diff(old[i], new[i], where)
        return changes
    same = old == new and type(old) is type(new)
    return [] if same else [Change(path, "changed", old, new)]


class Configs(RepositoryBase):
    """`Vault`'s strategy config methods."""

    async def save_strategy_config(
        self, name: str, document: dict[str, Any], version: int | None = None
    ) -> StrategyConfig:
        """Store `document` (a JSON object: str keys; str, int, bool, None, finite float or
        Decimal, lists, objects) as `version` of config `name`, or as the next version
        (see the module docstring); returns the stored version. Raises ConfigError for an
        invalid name, version or document, BlobTooLarge when its canonical text exceeds
        repository.max_config_bytes, VersionConflict when `version` holds another document."""
        check_name(name, "config name")
        if version is not None:
            check_version(version)
        text = self._sized(canonical_json(document, "config"), "config")
        sha = sha256_text(text)
        table = f"{self._schema}.strategy_configs"

        async def save(conn: asyncpg.Connection) -> asyncpg.Record:
            async with conn.transaction():
                await conn.execute(
                    "SELECT pg_advisory_xact_lock(hashtext($1))", f"{LOCK_PREFIX}{self._schema}.{name}"
                )
                if version is None:
                    latest = await conn.fetchrow(
                        f"SELECT {_COLUMNS} FROM {table} WHERE name = $1 ORDER BY version DESC LIMIT 1",  # noqa: S608 - identifiers are ours
                        name,
                    )
                    if latest is not None and latest["sha256"] == sha:
                        return latest
                    number = 1 if latest is None else latest["version"] + 1
                else:
                    number = version
                    stored = await conn.fetchrow(
                        f"SELECT {_COLUMNS} FROM {table} WHERE name = $1 AND version = $2",  # noqa: S608 - identifiers are ours
                        name,
                        number,
                    )
                    if stored is not None:
                        if stored["sha256"] != sha:
                            raise VersionConflict(
                                f"config {name} version {number} is already stored with another document "
                                f"(sha256 {stored['sha256']}); versions are immutable: save a new version"
                            )
                        return stored
                row: asyncpg.Record = await conn.fetchrow(
                    f"INSERT INTO {table} (name, version, document, sha256) "  # noqa: S608 - identifiers are ours
                    f"VALUES ($1, $2, $3, $4) RETURNING {_COLUMNS}",
                    name, number, text, sha,
                )  # fmt: skip
                return row

        return _config(await self._store.run(save))

    async def load_strategy_config(self, name: str, version: int | None = None) -> StrategyConfig:
        """Config `name` at `version`, or its latest version. Raises ConfigError for an
        invalid name or version, NotFound naming the stored versions, CorruptBlob when the
        stored text no longer matches its sha256."""
        check_name(name, "config name")
        if version is not None:
            check_version(version)
        rows = await self._store.fetch(
            f"SELECT {_COLUMNS} FROM {self._schema}.strategy_configs WHERE name = $1 "  # noqa: S608 - identifiers are ours
            "AND ($2::integer IS NULL OR version = $2) ORDER BY version DESC LIMIT 1",
            name, version,
        )  # fmt: skip
        if not rows:
            raise await self._config_not_found(name, version)
        return _config(rows[0])

    async def _config_not_found(self, name: str, version: int | None) -> NotFound:
        versions = await self._store.fetch(
            f"SELECT version FROM {self._schema}.strategy_configs WHERE name = $1 ORDER BY version",  # noqa: S608 - identifiers are ours
            name,
        )
        if not versions:
            return NotFound(f"no config named {name}")
        numbers = [r[0] for r in versions]
        span = f"{numbers[0]}" if len(numbers) == 1 else f"{numbers[0]} to {numbers[-1]}"
        return NotFound(f"no version {version} of config {name}; stored versions: {span}")

    async def strategy_configs(
        self, name: str | None = None, *, limit: int | None = None
    ) -> list[StrategyConfig]:
        """Stored config versions (of `name`), newest first (by name, then version
        descending); at most `limit`. Each is checked as `load_strategy_config` checks it."""
        if name is not None:
            check_name(name, "config name")
        rows = await self._store.fetch(
            f"SELECT {_COLUMNS} FROM {self._schema}.strategy_configs WHERE $1::text IS NULL OR name = $1 "  # noqa: S608 - identifiers are ours
            "ORDER BY name, version DESC LIMIT $2",
            name, None if limit is None else limit_of(limit),
        )  # fmt: skip
        return [_config(row) for row in rows]

    async def diff_strategy_configs(self, name: str, old_version: int, new_version: int) -> list[Change]:
        """The changes from `old_version` to `new_version` of config `name` (see the module
        docstring); empty when equal. Raises as `load_strategy_config`."""
        if old_version is None or new_version is None:
            raise ConfigError("a diff needs two config versions")
        old = await self.load_strategy_config(name, old_version)
        new = await self.load_strategy_config(name, new_version)
        return diff(old.document, new.document)
