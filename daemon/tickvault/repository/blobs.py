"""Content-addressed blobs under the archive root, local or S3, through pyarrow.fs (the
filesystem the cold tier's Parquet files go through too).

Layout, per schema (as the cold tables: `<archive.root>/<schema>/…`) and area (`models`,
`backtests`):

    <archive.root>/<schema>/<area>/sha256/<first 2 hex>/<64 hex>   a complete blob, by sha256
    <archive.root>/<schema>/<area>/tmp/<random hex>               a blob being written

Writing (`put`): the bytes stream to a temporary name while their sha256 and size are
counted, past `max_bytes` the write stops (BlobTooLarge) and the temporary object goes;
then the temporary is renamed to its checksum's name (local: rename(2), atomic; S3: one
CopyObject, so the object appears only complete, then the temporary is deleted). A blob
already there under that name is not written again. A crash leaves at most a temporary
file, or a complete blob that no registry row names; `sweep` removes both.

Reading (`read`, `copy_to`, `check`): the sha256 is recomputed over every byte read and a
mismatch raises CorruptBlob before anything is returned (`copy_to` writes to
`DEST.partial` and renames it only when the checksum matched).

Everything here is synchronous (pyarrow.fs is): the repositories call it in worker threads.
OSError from the filesystem (unreachable S3, a full disk, permissions) is raised as
RepositoryError naming the operation, never the credentials; `copy_to`'s local destination
that cannot be written, as ConfigError naming it.
"""

from __future__ import annotations

import hashlib
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Final

import pyarrow.fs as pafs

from tickvault.errors import BlobTooLarge, ConfigError, CorruptBlob, NotFound, RepositoryError
from tickvault.settings import Settings

CHUNK_BYTES: Final = 8 * 1024 * 1024
S3_TIMEOUT_S: Final = 30.0


@dataclass(frozen=True)
class Blob:
    """A stored blob: its sha256 (64 lowercase hex) and size in bytes."""

    sha256: str
    size_bytes: int


@contextmanager
def _io(what: str) -> Iterator[None]:
    try:
        yield
    except OSError as exc:  # pyarrow's messages name the path and the S3 error, no secrets
        raise RepositoryError(f"blob store: cannot {what}: {exc}") from None


def filesystem(settings: Settings) -> tuple[pafs.FileSystem, str]:
    """The filesystem of `archive.root` and the root's path in it ("/abs/dir" or "bucket/prefix")."""
    archive = settings.archive
    root = archive.root
    if root.startswith("s3://"):
        secret = archive.s3_secret_access_key
        fs = pafs.S3FileSystem(
            access_key=archive.s3_access_key_id.get_secret_value() if archive.s3_access_key_id else None,
            secret_key=secret.get_secret_value() if secret else None,
            region=archive.s3_region,
            endpoint_override=archive.s3_endpoint,
            connect_timeout=S3_TIMEOUT_S,
            request_timeout=S3_TIMEOUT_S,
        )
        return fs, root.removeprefix("s3://").rstrip("/")
    path = root.removeprefix("file://")
    return pafs.LocalFileSystem(), os.path.abspath(path)


class BlobStore:
    """The blobs of one area (`<root>/<area>`); `max_bytes` bounds a blob's size."""

    def __init__(self, fs: pafs.FileSystem, root: str, area: str, max_bytes: int) -> None:
        self._fs = fs
        self.base = f"{root}/{area}"
        self._max_bytes = max_bytes
        self._local = isinstance(fs, pafs.LocalFileSystem)

    def path(self, sha256: str) -> str:
        """Where the blob of `sha256` lives, in the filesystem's terms."""
        return f"{self.base}/sha256/{sha256[:2]}/{sha256}"

    def put(self, source: bytes | Path) -> Blob:
        """Store `source` (bytes, or a file read in chunks) and return its checksum and size.
        Raises BlobTooLarge past max_bytes, NotFound for a missing file, RepositoryError."""
        if isinstance(source, bytes) and len(source) > self._max_bytes:
            raise self._too_large(len(source))
        temp = f"{self.base}/tmp/{uuid.uuid4().hex}"
        if self._local:  # S3 has no directories to make
            with _io("create the blob directory"):
                self._fs.create_dir(f"{self.base}/tmp", recursive=True)
        try:
            blob = self._write(source, temp)
            self._place(temp, blob)
        except BaseException:
            self._remove(temp)
            raise
        return blob

    def _write(self, source: bytes | Path, temp: str) -> Blob:
        digest, size = hashlib.sha256(), 0
        with _io("write a blob"), self._fs.open_output_stream(temp) as out:
            for chunk in chunks(source):
                size += len(chunk)
                if size > self._max_bytes:
                    raise self._too_large(size, at_least=True)
                digest.update(chunk)
                out.write(chunk)
        if self._local:  # on disk before its name says it is complete
            with _io("flush a blob"):
                _fsync(temp)
        return Blob(digest.hexdigest(), size)

    def _place(self, temp: str, blob: Blob) -> None:
        final = self.path(blob.sha256)
        with _io("store a blob"):
            if self._fs.get_file_info(final).type == pafs.FileType.File:
                self._remove(temp)  # the same content is there already
                return
            if self._local:
                self._fs.create_dir(final.rsplit("/", 1)[0], recursive=True)
            self._fs.move(temp, final)
            if self._local:  # the new name survives a power loss before the row commits
                _fsync(final.rsplit("/", 1)[0])

    def _remove(self, path: str) -> None:
        try:
            self._fs.delete_file(path)
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise RepositoryError(f"blob store: cannot delete {path}: {exc}") from None

    def _too_large(self, size: int, at_least: bool = False) -> BlobTooLarge:
        more = "more than " if at_least else ""
        limit = f"the {self._max_bytes}-byte limit (repository.max_blob_bytes)"
        return BlobTooLarge(
            f"blob of {more}{size - 1 if at_least else size} bytes exceeds {limit}; nothing stored"
        )

    @contextmanager
    def _reading(self, blob: Blob, what: str) -> Iterator[Iterator[bytes]]:
        """The blob's chunks; after the last one, CorruptBlob unless size and sha256 match."""
        path = self.path(blob.sha256)
        try:
            stream = self._fs.open_input_stream(path)
        except FileNotFoundError:
            raise CorruptBlob(f"{what}: blob {blob.sha256} is missing from {self.base}") from None
        except OSError as exc:
            raise RepositoryError(f"blob store: cannot read {path}: {exc}") from None

        def pieces() -> Iterator[bytes]:
            digest, size = hashlib.sha256(), 0
            with _io(f"read {path}"):
                while chunk := stream.read(CHUNK_BYTES):
                    digest.update(chunk)
                    size += len(chunk)
                    yield chunk
            found = digest.hexdigest()
            if found != blob.sha256 or size != blob.size_bytes:
                raise CorruptBlob(
                    f"{what}: blob {path} is corrupt: sha256 {found} ({size} bytes), "
                    f"registered {blob.sha256} ({blob.size_bytes} bytes)"
                )

        with stream:
            yield pieces()

    def read(self, blob: Blob, what: str) -> bytes:
        """The blob's bytes, checked. Raises CorruptBlob (`what` names the object)."""
        with self._reading(blob, what) as chunks:
            return b"".join(chunks)

    def copy_to(self, blob: Blob, dest: Path, what: str) -> None:
        """Write the blob to the local file `dest`, through `dest.partial`, renamed only
        when the whole blob was read and matched its checksum. Raises ConfigError when
        `dest` cannot be written (no such directory, permissions, a full disk), CorruptBlob,
        RepositoryError for the store's side."""
        partial = dest.with_name(dest.name + ".partial")
        try:
            with self._reading(blob, what) as chunks, partial.open("wb") as out:
                for chunk in chunks:
                    out.write(chunk)
            os.replace(partial, dest)
        except BaseException as exc:
            with suppress(FileNotFoundError, NotADirectoryError):  # never created
                partial.unlink()
            if isinstance(exc, OSError):  # the store's errors are RepositoryError by now
                raise ConfigError(f"cannot write {dest}: {exc.strerror or exc}") from None
            raise

    def check(self, blob: Blob, what: str) -> str | None:
        """None when the blob is intact; else the problem (CorruptBlob's message)."""
        try:
            with self._reading(blob, what) as chunks:
                for _ in chunks:
                    pass
        except CorruptBlob as exc:
            return str(exc)
        return None

    def delete(self, sha256: str) -> None:
        self._remove(self.path(sha256))

    def stored(self) -> tuple[list[str], list[str]]:
        """The sha256 of every complete blob, and the paths of the temporary files."""
        selector = pafs.FileSelector(self.base, recursive=True, allow_not_found=True)
        with _io(f"list {self.base}"):
            infos = self._fs.get_file_info(selector)
        blobs, temps = [], []
        for info in infos:
            if info.type != pafs.FileType.File:
                continue
            relative = info.path.removeprefix(self.base + "/")
            if relative.startswith("tmp/"):
                temps.append(info.path)
            elif relative.startswith("sha256/"):
                blobs.append(relative.rsplit("/", 1)[-1])
        return blobs, temps

    def remove_temp(self, path: str) -> None:
        self._remove(path)


def chunks(source: bytes | Path) -> Iterator[bytes]:
    if isinstance(source, bytes):
        for start in range(0, len(source), CHUNK_BYTES):
            yield source[start : start + CHUNK_BYTES]
        return
    try:
        handle: IO[bytes] = source.open("rb")
    except FileNotFoundError:
        raise NotFound(f"no file {source}") from None
    except OSError as exc:
        raise RepositoryError(f"cannot read {source}: {exc.strerror}") from None
    with handle:
        while chunk := handle.read(CHUNK_BYTES):
            yield chunk


def _fsync(path: str) -> None:
    """Flush a local file's data, or a directory's entries, to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
