"""Parquet data files in the cold tier's own layout (tickvault.archive.table): the files of
the Iceberg tables klines, fills, order_events, balances and signals, read back as records.

Which table a file belongs to is told by its columns. Each row is validated by its kind's
model (a cold row passed those rules once; a file from elsewhere must pass them too);
decimals arrive as decimal(38, 18) and are written in their canonical form
(tickvault.decimals), as every read path prints them. A row keeps the version it was stored
with (`version_ms`, `version_seq`); order events have none and get "0<TAB>row number".

Pointing at a table's `data/` directory also reads files of older snapshots not yet swept
(`archive.snapshot_retention`): their rows are written under the same rules, so the row of
highest rank wins, as when the roller merges cold rows back (archive.hot.reload).
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any, Final

import pyarrow as pa
import pyarrow.parquet as pq

from tickvault.codecs.native import to_record
from tickvault.decimals import canonical
from tickvault.errors import RecordError
from tickvault.importer.chunk import Chunk
from tickvault.importer.files import ImportFailed
from tickvault.records import dump_json
from tickvault.rows import to_item

# a column only one cold table has → the record kind of its rows
_MARKERS: Final = (
    ("interval", "kline"), ("fill_id", "fill"), ("event_hash", "order"), ("asset", "balance"),
    ("action", "signal"),
)  # fmt: skip
_DROPPED: Final = frozenset({"version_ms", "version_seq", "event_hash", "ingested_at"})
_JSON_COLUMNS: Final = frozenset({"metadata"})  # jsonb, JSON text in the cold table


def kind_of(schema: pa.Schema, path: Path) -> str:
    """The record kind of a cold data file's rows. Raises ImportFailed for other files."""
    names = set(schema.names)
    for column, kind in _MARKERS:
        if column in names:
            return kind
    raise ImportFailed(f"{path}: not a data file of a cold table (columns {', '.join(schema.names)})")


def chunks(path: Path, chunk_rows: int) -> Iterator[Chunk]:
    """The file's rows in chunks of at most `chunk_rows`; `done` in bytes of the file.
    Raises ImportFailed when it cannot be read."""
    try:
        file = pq.ParquetFile(path)
        kind = kind_of(file.schema_arrow, path)
        size, total = path.stat().st_size, max(file.metadata.num_rows, 1)
        number = 0
        for batch in file.iter_batches(batch_size=chunk_rows):
            chunk = Chunk(path.name)
            for row in batch.to_pylist():
                number += 1
                _add(chunk, kind, row, number)
            chunk.done = size * number // total
            yield chunk
    except (OSError, pa.ArrowException) as exc:
        raise ImportFailed(f"{path}: cannot be read: {exc}") from exc


def _add(chunk: Chunk, kind: str, row: dict[str, Any], number: int) -> None:
    entry = f"row {number}"
    version = f"{row.get('version_ms', 0)}\t{row.get('version_seq', number)}"
    try:
        message = {k: _value(k, v) for k, v in row.items() if k not in _DROPPED}
        chunk.add(to_item(to_record(message, kind)), version, entry)
    except RecordError as exc:
        chunk.reject(entry, kind, exc, _payload(row))


def _value(name: str, value: Any) -> Any:
    if isinstance(value, Decimal):
        return canonical(value)
    if name in _JSON_COLUMNS and isinstance(value, str):
        try:
            return json.loads(value, parse_float=Decimal)
        except ValueError as exc:
            raise RecordError(f"invalid {name}: not JSON text: {exc}", "invalid") from None
    return value


def _payload(row: dict[str, Any]) -> bytes:
    """The row as a JSON object, for its dead letter."""
    shown = {k: v.isoformat() if isinstance(v, dt.datetime) else v for k, v in row.items()}
    return dump_json(shown).encode()
