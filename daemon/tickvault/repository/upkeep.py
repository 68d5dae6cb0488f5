"""The model upkeep methods of `Vault` (a mixin): verify, delete, clean up and package.

Deleting. A version an alias points at is refused (VersionInUse naming the aliases) unless
`force=True`, which removes those aliases with it; so `live` never points at nothing. Its blob
is deleted when no other version has the same content.

Cleanup (`cleanup_models`). Per model name, a version is deleted when it is not among the
newest `keep_last` and (when given) was saved before now - `older_than`; a version an alias
points at is always kept. Then blobs no version names (left by a crash between the blob and
its row, or by a failed delete) and temporary files of interrupted writes are removed. With
neither `keep_last` nor `older_than` only that sweep runs. Removals hold the blob lock
(tickvault.repository.base) exclusively, so no save is between its blob and its row.

Packages (`package_model`): a tar.gz of one directory `<name>-<version>/` holding the model
file (its saved file name, or `model.bin`) and `manifest.json` (format, name, version,
framework, file, sha256, size_bytes, metadata, metrics, created_at, aliases), written through
`path.partial` and renamed once complete. The blob is checked before it is packed.
"""

from __future__ import annotations

import datetime as dt
import io
import os
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import asyncpg

from tickvault.errors import ConfigError, VersionInUse
from tickvault.records import dump_json
from tickvault.repository.models import Models, ModelVersion
from tickvault.repository.values import NAME_PATTERN, check_name
from tickvault.settings import parse_duration_s

PACKAGE_FORMAT: Final = "tickvault-model-package/1"


@dataclass(frozen=True)
class ModelCheck:
    """The outcome of verifying one model version: `problem` None when its blob is intact,
    else what is wrong (missing, or its sha256 and size against the registered ones)."""

    name: str
    version: str
    sha256: str
    problem: str | None

    @property
    def ok(self) -> bool:
        return self.problem is None


@dataclass(frozen=True)
class Cleanup:
    """What a cleanup removed (or, dry run, would remove): the (name, version) pairs, the
    unreferenced blobs and the temporary files of interrupted writes."""

    versions: tuple[tuple[str, str], ...]
    blobs: int
    temp_files: int


def _older_than(value: dt.timedelta | str | None) -> dt.timedelta | None:
    if value is None or isinstance(value, dt.timedelta):
        return value
    try:
        return dt.timedelta(seconds=parse_duration_s(value))
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


class ModelUpkeep(Models):
    """`Vault`'s model verification, deletion, cleanup and packaging."""

    async def verify_models(self, name: str | None = None, version: str | None = None) -> list[ModelCheck]:
        """Recompute the sha256 of every stored version (of `name`; of one `version`) and
        compare it, and the size, with the registry. Returns one ModelCheck per version,
        newest first; never raises for a damaged blob. Raises NotFound for an unknown
        name or version, RepositoryError when the blob store cannot be read."""
        if version is not None and name is None:
            raise ConfigError("verifying one version needs the model name")
        if name is None:
            found = await self.models()
        elif version is None:
            found = await self.models(name) or [await self.model(name)]  # none: NotFound
        else:
            found = [await self.model(name, version)]
        blobs = self._blobs("models")
        checks = []
        for item in found:
            problem = await self._thread(blobs.check, item.blob, item.label())
            checks.append(ModelCheck(item.name, item.version, item.sha256, problem))
        return checks

    async def delete_model(self, name: str, version: str, *, force: bool = False) -> ModelVersion:
        """Delete one version, and its blob when no other version has the same content;
        returns what was deleted. Raises NotFound for an unknown version, VersionInUse when
        an alias points at it and not `force` (with `force`, those aliases go too)."""
        target = await self.model(name, version)
        schema = self._schema

        async def delete(conn: asyncpg.Connection) -> None:
            async with conn.transaction():
                aliases = await conn.fetch(
                    f"SELECT alias FROM {schema}.model_aliases WHERE name = $1 AND version = $2 "  # noqa: S608 - identifiers are ours
                    "ORDER BY alias FOR UPDATE",
                    name, version,
                )  # fmt: skip
                if aliases and not force:
                    named = ", ".join(r[0] for r in aliases)
                    raise VersionInUse(
                        f"{target.label()} is aliased as {named}: move the alias or delete with force"
                    )
                await conn.execute(
                    f"DELETE FROM {schema}.model_aliases WHERE name = $1 AND version = $2",  # noqa: S608 - identifiers are ours
                    name,
                    version,
                )
                await conn.execute(
                    f"DELETE FROM {schema}.models WHERE name = $1 AND version = $2",  # noqa: S608 - identifiers are ours
                    name,
                    version,
                )
                shared = await conn.fetchval(
                    f"SELECT count(*) FROM {schema}.models WHERE sha256 = $1",  # noqa: S608 - identifiers are ours
                    target.sha256,
                )
            if not shared:
                await self._thread(self._blobs("models").delete, target.sha256)

        await self._locked(True, delete)
        return target

    async def cleanup_models(
        self,
        name: str | None = None,
        *,
        keep_last: int | None = None,
        older_than: dt.timedelta | str | None = None,
        dry_run: bool = False,
    ) -> Cleanup:
        """Delete old versions (of `name`, or of every model) and sweep unreferenced blobs
        and temporary files, as the module docstring says: a version goes when it is not
        among the newest `keep_last` (>= 0) and was saved before now - `older_than` (a
        timedelta or a duration such as `30d`); aliased versions always stay. `dry_run`
        removes nothing and returns what would go. Raises ConfigError for bad arguments."""
        if name is not None:
            check_name(name, "model name")
        if keep_last is not None and (isinstance(keep_last, bool) or keep_last < 0):
            raise ConfigError(f"keep_last must be an integer >= 0, got {keep_last!r}")
        age = _older_than(older_than)
        before = None if age is None else dt.datetime.now(dt.UTC) - age
        schema = self._schema

        async def clean(conn: asyncpg.Connection) -> Cleanup:
            async with conn.transaction():
                doomed = await conn.fetch(
                    f"""WITH ranked AS (SELECT name, version, created_at,
                        row_number() OVER (PARTITION BY name ORDER BY seq DESC) AS rank
                        FROM {schema}.models WHERE $1::text IS NULL OR name = $1)
                    SELECT name, version FROM ranked r
                    WHERE ($2::bigint IS NOT NULL OR $3::timestamptz IS NOT NULL)
                    AND ($2::bigint IS NULL OR rank > $2) AND ($3::timestamptz IS NULL OR created_at < $3)
                    AND NOT EXISTS (SELECT 1 FROM {schema}.model_aliases a
                        WHERE a.name = r.name AND a.version = r.version)
                    ORDER BY name, rank""",  # noqa: S608 - identifiers are ours
                    name, keep_last, before,
                )  # fmt: skip
                pairs = [(r["name"], r["version"]) for r in doomed]
                if pairs and not dry_run:
                    await conn.execute(
                        f"DELETE FROM {schema}.models WHERE (name, version) IN "  # noqa: S608 - identifiers are ours
                        "(SELECT * FROM unnest($1::text[], $2::text[]))",
                        [p[0] for p in pairs], [p[1] for p in pairs],
                    )  # fmt: skip
                # the blobs that stay named: by every version left (dry run: that would be left)
                kept = await conn.fetch(
                    f"SELECT DISTINCT sha256 FROM {schema}.models WHERE (name, version) NOT IN "  # noqa: S608 - identifiers are ours
                    "(SELECT * FROM unnest($1::text[], $2::text[]))",
                    [p[0] for p in pairs], [p[1] for p in pairs],
                )  # fmt: skip
            blobs, temps = await self._sweep("models", {r[0] for r in kept}, dry_run)
            return Cleanup(tuple(pairs), blobs, temps)

        return await self._locked(True, clean)

    async def package_model(
        self, name: str, path: str | os.PathLike[str], version: str | None = None, *, alias: str | None = None
    ) -> ModelVersion:
        """Write a tar.gz of a model version (chosen as `model` chooses) and its manifest to
        `path`, as the module docstring lays out; returns the version. Raises as
        `load_model`: a corrupt blob is never packed (CorruptBlob, no file left)."""
        found = await self.model(name, version, alias=alias)
        dest = Path(path)
        blobs = self._blobs("models")

        def pack() -> None:
            member = (
                found.file_name
                if found.file_name and NAME_PATTERN.fullmatch(found.file_name)
                else "model.bin"
            )
            top = f"{found.name}-{found.version}"
            partial = dest.with_name(dest.name + ".partial")
            with tempfile.TemporaryDirectory(dir=dest.parent, prefix=".tickvault-package-") as scratch:
                model_file = Path(scratch) / member
                blobs.copy_to(found.blob, model_file, found.label())
                manifest = (dump_json(_manifest(found, member)) + "\n").encode()
                try:
                    with tarfile.open(partial, "w:gz", compresslevel=6) as tar:
                        info = tarfile.TarInfo(f"{top}/manifest.json")
                        info.size, info.mtime = len(manifest), int(found.created_at.timestamp())
                        tar.addfile(info, io.BytesIO(manifest))
                        tar.add(model_file, arcname=f"{top}/{member}", recursive=False)
                    os.replace(partial, dest)
                except BaseException:
                    partial.unlink(missing_ok=True)
                    raise

        try:
            await self._thread(pack)
        except OSError as exc:
            raise ConfigError(f"cannot write {dest}: {exc.strerror or exc}") from None
        return found


def _manifest(found: ModelVersion, member: str) -> dict[str, Any]:
    return {
        "format": PACKAGE_FORMAT, "name": found.name, "version": found.version, "framework": found.framework,
        "file": member, "sha256": found.sha256, "size_bytes": found.size_bytes,
        "metadata": found.metadata, "metrics": found.metrics,
        "created_at": found.created_at.isoformat().replace("+00:00", "Z"), "aliases": list(found.aliases),
    }  # fmt: skip
