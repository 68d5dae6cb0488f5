"""Upkeep of a cold table after a roll round: expire old snapshots, sweep unreferenced files.

1. Expire: a snapshot is expired once it has not been the current one for
   `archive.snapshot_retention` (the snapshot that replaced it is older than that), so a
   reader that opened it while it was current has had the retention to finish. The current
   snapshot is always kept.
2. Sweep: a file under the table's location (data/ and metadata/) is deleted when no retained
   snapshot references it — data files through each retained snapshot's manifests, the
   manifest lists and the manifests themselves, the current and the logged metadata.json
   files — AND its modification time is older than the same retention, so a write in
   progress (whose files no snapshot references yet) is never touched. This removes what
   expired snapshots leave and what a killed write leaves (pyiceberg has no tool for either).

Files are listed and deleted through pyarrow's filesystem of the table's file IO: local roots
and S3 alike. Synchronous (pyiceberg is): the roller calls it in a worker thread.
"""

from __future__ import annotations

import datetime as dt
import itertools
from dataclasses import dataclass

from pyarrow import fs as pafs
from pyiceberg.io.pyarrow import PyArrowFileIO
from pyiceberg.table import Table


@dataclass(frozen=True)
class Swept:
    expired_snapshots: int
    kept_snapshots: int
    deleted_files: int
    kept_files: int


def expire_and_sweep(cold: Table, retention_s: int, now: dt.datetime) -> Swept:
    """Expire the snapshots replaced before now - `retention_s`, then delete the files no kept
    snapshot references and older than that. Raises OSError / pyiceberg errors as they come
    (the caller logs and counts them)."""
    before = now - dt.timedelta(seconds=retention_s)
    expire = expirable(cold, before)
    if expire:
        cold.maintenance.expire_snapshots().by_ids(expire).commit()
        cold.refresh()
    deleted, kept = sweep(cold, before)
    return Swept(len(expire), len(cold.metadata.snapshots), deleted, kept)


def expirable(cold: Table, before: dt.datetime) -> list[int]:
    """Ids of the snapshots that were replaced, as the current one, before `before`: each
    snapshot but the current, whose successor in time was committed before `before`."""
    current = cold.current_snapshot()
    ordered = sorted(cold.metadata.snapshots, key=lambda s: (s.timestamp_ms, s.sequence_number or 0))
    before_ms = int(before.timestamp() * 1000)
    out = []
    for snapshot, successor in itertools.pairwise(ordered):
        if current is not None and snapshot.snapshot_id == current.snapshot_id:
            continue
        if successor.timestamp_ms < before_ms:
            out.append(snapshot.snapshot_id)
    return out


def referenced(cold: Table) -> set[str]:
    """Every file the table's metadata references, as filesystem paths (no scheme)."""
    io = cold.io
    uris = {cold.metadata_location, *(entry.metadata_file for entry in cold.metadata.metadata_log)}
    for snapshot in cold.metadata.snapshots:
        uris.add(snapshot.manifest_list)
        for manifest in snapshot.manifests(io):
            uris.add(manifest.manifest_path)
            entries = manifest.fetch_manifest_entry(io, discard_deleted=True)
            uris.update(entry.data_file.file_path for entry in entries)
    return {_path(uri) for uri in uris}


def sweep(cold: Table, before: dt.datetime) -> tuple[int, int]:
    """(deleted, kept) files under the table's location: deleted when unreferenced and
    modified before `before`."""
    keep = referenced(cold)
    scheme, netloc, root = PyArrowFileIO.parse_location(cold.location(), cold.io.properties)
    filesystem = _file_io(cold).fs_by_scheme(scheme, netloc)
    deleted = kept = 0
    for sub in ("data", "metadata"):
        selector = pafs.FileSelector(f"{root.rstrip('/')}/{sub}", recursive=True, allow_not_found=True)
        for info in filesystem.get_file_info(selector):
            if info.type != pafs.FileType.File:
                continue
            # no modification time known (some object stores): keep, never guess it is old
            if info.path in keep or info.mtime is None or info.mtime >= before:
                kept += 1
                continue
            filesystem.delete_file(info.path)
            deleted += 1
    return deleted, kept


def _file_io(cold: Table) -> PyArrowFileIO:
    io = cold.io
    return io if isinstance(io, PyArrowFileIO) else PyArrowFileIO(io.properties)


def _path(uri: str) -> str:
    """A location as pyarrow's filesystem lists it: `/abs/path` locally, `bucket/key` on S3."""
    return PyArrowFileIO.parse_location(uri)[2]
