"""The model registry methods of `Vault` (a mixin): save, look up, load, list and alias.

A model version is (name, version) → one blob (tickvault.repository.blobs, area `models`)
plus framework, metadata and metrics, in the `models` table. Versions are immutable: saving
a stored version again with the same blob, framework, metadata and metrics changes nothing
and returns it; with anything different raises VersionConflict. Aliases (`live`, `shadow`,
any valid name) point at one version each and move with `set_model_alias`. "Latest" is the
version saved last. Verification, deletion, cleanup and packages: tickvault.repository.upkeep.

The repository stores and returns bytes or files, never Python objects: unpickling (pickle,
joblib, torch.load without weights_only) runs code chosen by whoever wrote the file, so
deserialising stays the caller's decision, made with its own framework's safe loader.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import asyncpg

from tickvault.errors import ConfigError, NotFound, VersionConflict
from tickvault.reads.args import bound, limit_of
from tickvault.repository.base import RepositoryBase, json_column
from tickvault.repository.blobs import Blob, chunks
from tickvault.repository.values import canonical_json, canonical_metrics, check_name

ModelSource = bytes | str | os.PathLike[str]
MAX_LISTED: Final = 10  # versions or aliases named in a NotFound message

_SELECT: Final = """SELECT m.name, m.version, m.framework, m.sha256, m.size_bytes, m.file_name,
    m.metadata::text AS metadata, m.metrics::text AS metrics, m.created_at,
    coalesce(array_agg(a.alias ORDER BY a.alias) FILTER (WHERE a.alias IS NOT NULL), '{{}}') AS aliases
    FROM {schema}.models m LEFT JOIN {schema}.model_aliases a ON a.name = m.name AND a.version = m.version
    WHERE {where} GROUP BY m.name, m.version ORDER BY m.seq DESC LIMIT {limit}"""


@dataclass(frozen=True)
class ModelVersion:
    """One stored model version. `sha256` (hex) and `size_bytes` are its blob's;
    `file_name` the saved file's name (None when saved from bytes); `metadata` a JSON object
    and `metrics` name → number (numbers int or Decimal); `created_at` UTC; `aliases` the
    aliases pointing at it, sorted."""

    name: str
    version: str
    framework: str
    sha256: str
    size_bytes: int
    file_name: str | None
    metadata: dict[str, Any]
    metrics: dict[str, Any]
    created_at: dt.datetime
    aliases: tuple[str, ...]

    @property
    def blob(self) -> Blob:
        return Blob(self.sha256, self.size_bytes)

    def label(self) -> str:
        return f"model {self.name} version {self.version}"


def model_version(row: asyncpg.Record) -> ModelVersion:
    return ModelVersion(
        row["name"], row["version"], row["framework"], row["sha256"], row["size_bytes"], row["file_name"],
        json_column(row["metadata"]), json_column(row["metrics"]), row["created_at"], tuple(row["aliases"]),
    )  # fmt: skip


def _hash(source: bytes | Path) -> Blob:
    digest, size = hashlib.sha256(), 0
    for chunk in chunks(source):
        digest.update(chunk)
        size += len(chunk)
    return Blob(digest.hexdigest(), size)


class Models(RepositoryBase):
    """`Vault`'s model registry: save, look up, load, list, alias."""

    async def _model_rows(self, where: str, *args: Any, limit: int | None = None) -> list[ModelVersion]:
        most = "ALL" if limit is None else str(limit_of(limit))
        sql = _SELECT.format(schema=self._schema, where=where, limit=most)
        return [model_version(row) for row in await self._store.fetch(sql, *args)]

    async def save_model(
        self,
        name: str,
        version: str,
        model: ModelSource,
        *,
        framework: str,
        metadata: dict[str, Any] | None = None,
        metrics: dict[str, Any] | None = None,
    ) -> ModelVersion:
        """Store `model` (bytes, or the path of a file, read in chunks) as `version` of
        `name`. `framework` names the format (e.g. onnx, xgboost, pytorch, sklearn);
        `metadata` is a JSON object, `metrics` an object of numbers. The blob is complete
        under archive.root before the registry row is inserted (one transaction), so a crash
        leaves no row and at most an unreferenced blob, which `cleanup_models` removes.
        Saving a stored version again with equal content returns it unchanged.

        Raises ConfigError for an invalid name, version or framework (see
        tickvault.repository.values.NAME_PATTERN) or bad JSON, BlobTooLarge past
        repository.max_blob_bytes, VersionConflict when the version is stored with other
        content, NotFound for a missing file, RepositoryError when the blob store fails."""
        check_name(name, "model name")
        check_name(version, "model version")
        check_name(framework, "framework")
        meta = self._sized(canonical_json({} if metadata is None else metadata, "metadata"), "metadata")
        scores = self._sized(canonical_metrics({} if metrics is None else metrics), "metrics")
        source = model if isinstance(model, bytes) else Path(model)
        file_name = None if isinstance(source, bytes) else source.name
        wanted = (framework, meta, scores)
        existing = await self._model_rows("m.name = $1 AND m.version = $2", name, version)
        if existing:
            blob = await self._thread(_hash, source) if isinstance(source, Path) else _hash(source)
            return self._same_model(existing[0], blob, wanted)
        blobs = self._blobs("models")

        async def save(conn: asyncpg.Connection) -> Blob:
            stored = await self._thread(blobs.put, source)
            await conn.execute(
                f"INSERT INTO {self._schema}.models (name, version, framework, sha256, size_bytes, "  # noqa: S608 - identifiers are ours
                "file_name, metadata, metrics) VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb, $8::jsonb) "
                "ON CONFLICT (name, version) DO NOTHING",
                name, version, framework, stored.sha256, stored.size_bytes, file_name, meta, scores,
            )  # fmt: skip
            return stored

        blob = await self._locked(False, save)
        found = await self._model_rows("m.name = $1 AND m.version = $2", name, version)
        return self._same_model(found[0], blob, wanted)  # a concurrent save of it may have won

    @staticmethod
    def _same_model(stored: ModelVersion, blob: Blob, wanted: tuple[str, str, str]) -> ModelVersion:
        framework, meta, scores = wanted
        differs = [
            what
            for what, same in (
                ("content", stored.blob == blob),
                ("framework", stored.framework == framework),
                ("metadata", canonical_json(stored.metadata, "metadata") == meta),
                ("metrics", canonical_metrics(stored.metrics) == scores),
            )
            if not same
        ]
        if differs:
            raise VersionConflict(
                f"{stored.label()} is already stored with other {', '.join(differs)} "
                f"(sha256 {stored.sha256}); versions are immutable: save a new version"
            )
        return stored

    async def model(self, name: str, version: str | None = None, *, alias: str | None = None) -> ModelVersion:
        """One model version: `version`, the one `alias` points at, or (neither) the latest.
        Raises ConfigError for an invalid name or both version and alias, NotFound naming
        what is stored when there is no such model, version or alias."""
        check_name(name, "model name")
        if version is not None and alias is not None:
            raise ConfigError("give a model version or an alias, not both")
        if alias is not None:
            check_name(alias, "alias")
            rows = await self._model_rows(
                f"(m.name, m.version) = (SELECT name, version FROM {self._schema}.model_aliases "  # noqa: S608 - identifiers are ours
                "WHERE name = $1 AND alias = $2)",
                name, alias,
            )  # fmt: skip
        elif version is not None:
            check_name(version, "model version")
            rows = await self._model_rows("m.name = $1 AND m.version = $2", name, version)
        else:
            rows = await self._model_rows(
                f"m.seq = (SELECT max(seq) FROM {self._schema}.models WHERE name = $1)",  # noqa: S608 - identifiers are ours
                name,
            )
        if not rows:
            raise await self._model_not_found(name, version, alias)
        return rows[0]

    async def _model_not_found(self, name: str, version: str | None, alias: str | None) -> NotFound:
        schema = self._schema
        versions = await self._store.fetch(
            f"SELECT version FROM {schema}.models WHERE name = $1 ORDER BY seq DESC LIMIT $2",  # noqa: S608 - identifiers are ours
            name, MAX_LISTED + 1,
        )  # fmt: skip
        if not versions:
            return NotFound(f"no model named {name}")
        if alias is not None:
            aliases = await self._store.fetch(
                f"SELECT alias FROM {schema}.model_aliases WHERE name = $1 ORDER BY alias LIMIT $2",  # noqa: S608 - identifiers are ours
                name, MAX_LISTED + 1,
            )  # fmt: skip
            return NotFound(f"no alias {alias} of model {name}; aliases: {_listed([r[0] for r in aliases])}")
        return NotFound(
            f"no version {version} of model {name}; latest versions: {_listed([r[0] for r in versions])}"
        )

    async def load_model(self, name: str, version: str | None = None, *, alias: str | None = None) -> bytes:
        """The bytes of a model version (chosen as `model` chooses), after checking them
        against the registered sha256: a corrupt or missing blob raises CorruptBlob and
        returns nothing. Deserialising is the caller's choice (never unpickle untrusted
        bytes). Raises as `model`, and RepositoryError when the blob store fails."""
        found = await self.model(name, version, alias=alias)
        return await self._thread(self._blobs("models").read, found.blob, found.label())

    async def download_model(
        self, name: str, path: str | os.PathLike[str], version: str | None = None, *, alias: str | None = None
    ) -> ModelVersion:
        """Write a model version's blob to the local file `path` (through `path.partial`,
        renamed only once every byte matched the sha256) and return the version. Raises as
        `load_model`; a corrupt blob leaves no file."""
        found = await self.model(name, version, alias=alias)
        await self._thread(self._blobs("models").copy_to, found.blob, Path(path), found.label())
        return found

    async def models(
        self,
        name: str | None = None,
        *,
        framework: str | None = None,
        alias: str | None = None,
        since: dt.datetime | int | str | None = None,
        limit: int | None = None,
    ) -> list[ModelVersion]:
        """Stored model versions, newest first: of `name`, of `framework`, those `alias`
        points at, saved at or after `since` (aware datetime, epoch ms or ISO-8601); at most
        `limit`. Raises ConfigError for a bad name, time or limit."""
        for value, what in ((name, "model name"), (framework, "framework"), (alias, "alias")):
            if value is not None:
                check_name(value, what)
        where = (
            "($1::text IS NULL OR m.name = $1) AND ($2::text IS NULL OR m.framework = $2) "  # noqa: S608 - identifiers are ours
            "AND ($3::timestamptz IS NULL OR m.created_at >= $3) AND ($4::text IS NULL OR EXISTS "
            f"(SELECT 1 FROM {self._schema}.model_aliases x WHERE x.name = m.name "
            "AND x.version = m.version AND x.alias = $4))"
        )
        return await self._model_rows(where, name, framework, bound(since, "since"), alias, limit=limit)

    async def set_model_alias(self, name: str, alias: str, version: str) -> ModelVersion:
        """Point `alias` of model `name` at `version` (creating or moving it); returns the
        version. Raises ConfigError for invalid names, NotFound for an unknown version."""
        check_name(alias, "alias")
        target = await self.model(name, version)
        await self._store.fetch(
            f"INSERT INTO {self._schema}.model_aliases (name, alias, version) VALUES ($1, $2, $3) "  # noqa: S608 - identifiers are ours
            "ON CONFLICT (name, alias) DO UPDATE SET version = EXCLUDED.version, updated_at = now()",
            name, alias, version,
        )  # fmt: skip
        return await self.model(target.name, target.version)

    async def remove_model_alias(self, name: str, alias: str) -> None:
        """Remove `alias` of model `name`. Raises NotFound when it does not exist."""
        check_name(name, "model name")
        check_name(alias, "alias")
        rows = await self._store.fetch(
            f"DELETE FROM {self._schema}.model_aliases WHERE name = $1 AND alias = $2 RETURNING 1",  # noqa: S608 - identifiers are ours
            name, alias,
        )  # fmt: skip
        if not rows:
            raise await self._model_not_found(name, None, alias)


def _listed(values: list[str]) -> str:
    if not values:
        return "none"
    shown = ", ".join(values[:MAX_LISTED])
    return shown + (", …" if len(values) > MAX_LISTED else "")
