"""The cold tables: one Apache Iceberg table per time table, its columns, and the checksum.

Layout. The catalog is pyiceberg's SQL catalog, its two tables (`iceberg_tables`,
`iceberg_namespace_properties`) kept in the tickvault schema of the same PostgreSQL database;
the namespace is the schema's name, the tables `klines`, `fills`, `order_events`. Data and
metadata files live under `archive.root` (`<root>/<schema>/<table>/{data,metadata}`).
Columns are the PostgreSQL table's columns except the bookkeeping `ingested_at`, with exact
types: text → string, numeric → decimal(38, 18) (ingest refuses what it cannot hold),
timestamptz → timestamptz (UTC microseconds), bigint → long, boolean → boolean, uuid →
string. Each table is partitioned by day of its time column; rows are sorted by the table's
key and Parquet row groups hold at most ROW_GROUP_ROWS rows (zstd), so a one-symbol read
skips most row groups by their statistics.

Everything here is synchronous (pyiceberg is): the roller calls it in a worker thread.
"""

from __future__ import annotations

import hashlib
import os
import sys
import warnings
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Final

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from pyiceberg.catalog.sql import SqlCatalog
from pyiceberg.expressions import And, BooleanExpression, GreaterThanOrEqual, LessThan
from pyiceberg.io import FileIO
from pyiceberg.io.pyarrow import ArrowScan
from pyiceberg.manifest import DataFile
from pyiceberg.partitioning import PartitionField, PartitionSpec
from pyiceberg.schema import Schema
from pyiceberg.table import DataScan, FileScanTask, Table
from pyiceberg.table.sorting import SortField, SortOrder
from pyiceberg.transforms import DayTransform, IdentityTransform
from pyiceberg.types import (
    BooleanType,
    DecimalType,
    IcebergType,
    LongType,
    NestedField,
    StringType,
    TimestamptzType,
)
from sqlalchemy import create_engine
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from tickvault.decimals import COLD_PRECISION, COLD_SCALE
from tickvault.errors import ColdFileError
from tickvault.settings import Settings
from tickvault.store.db import dsn_of

ROW_GROUP_ROWS: Final = 14_000
READ_THREADS: Final = 4  # data files of one read checked and read at once
CATALOG_NAME: Final = "tickvault"
# the table's key, the sort order of its rows (symbol early: one-symbol reads skip row groups)
SORT_KEYS: Final[dict[str, tuple[str, ...]]] = {
    "klines": ("exchange", "symbol", "interval", "open_time"),
    "fills": ("exchange", "symbol", "fill_id", "ts"),
    "order_events": ("exchange", "order_id", "updated_at", "event_hash"),
    "balances": ("account", "exchange", "asset", "ts"),
    "signals": ("bot_id", "strategy", "exchange", "symbol", "ts"),
    "trades": ("exchange", "symbol", "trade_id", "ts"),
}
_NULL: Final = "\\N"
_SEPARATOR: Final = "\x1f"
_DELETED: Final = 2  # a manifest entry's status: the file was removed in that snapshot
CHECKSUM_PREFIX: Final = "sha256:"


@dataclass(frozen=True)
class Column:
    name: str
    kind: str  # "text", "decimal", "time", "bigint" or "bool"


_ARROW: Final[dict[str, pa.DataType]] = {
    "text": pa.string(),
    "decimal": pa.decimal128(COLD_PRECISION, COLD_SCALE),
    "time": pa.timestamp("us", tz="UTC"),
    "bigint": pa.int64(),
    "bool": pa.bool_(),
}
_ICEBERG: Final[dict[str, IcebergType]] = {
    "text": StringType(),
    "decimal": DecimalType(COLD_PRECISION, COLD_SCALE),
    "time": TimestamptzType(),
    "bigint": LongType(),
    "bool": BooleanType(),
}


def arrow_schema(columns: Sequence[Column]) -> pa.Schema:
    return pa.schema([pa.field(c.name, _ARROW[c.kind]) for c in columns])


def root_url(root: str) -> str:
    """`archive.root` as a URL pyiceberg's file IO takes: file:///abs/path or s3://…"""
    return root if "://" in root else "file://" + os.path.abspath(root)


def open_catalog(settings: Settings, *, pooled: bool = True) -> SqlCatalog:
    """The SQL catalog in the tickvault schema (its tables are created on first use).

    `pooled=False` gives it an engine without a connection pool: every catalog call connects
    and closes again. The daemon's roller uses that: it calls the catalog from worker
    threads, and a call still running when the roller is cancelled (shutdown) would otherwise
    hand its connection back to a pool already disposed, leaving it open until collected.
    Raises what SQLAlchemy raises when PostgreSQL cannot be reached."""
    url = make_url(dsn_of(settings.postgres)).set(drivername="postgresql+psycopg")
    url = url.update_query_dict({"options": f"-csearch_path={settings.postgres.schema_name}"})
    catalog = SqlCatalog(
        CATALOG_NAME,
        uri=url.render_as_string(hide_password=False),
        warehouse=root_url(settings.archive.root),
        init_catalog_tables="true",
        **s3_properties(settings),
    )
    if not pooled:  # pyiceberg takes no pool options: replace its engine, closing the first
        catalog.engine.dispose()
        catalog.engine = create_engine(url, poolclass=NullPool)
    return catalog


def s3_properties(settings: Settings) -> dict[str, str]:
    """pyiceberg's file IO properties for an `s3://` root: the endpoint, region and keys that
    are set (what is not set comes from the standard AWS variables and files, as the AWS SDK
    under pyarrow's S3 filesystem reads them). Secrets go to the file IO only."""
    archive = settings.archive
    if not archive.root.startswith("s3://"):
        return {}
    props = {"py-io-impl": "pyiceberg.io.pyarrow.PyArrowFileIO"}
    for key, value in (
        ("s3.endpoint", archive.s3_endpoint),
        ("s3.region", archive.s3_region),
        ("s3.access-key-id", archive.s3_access_key_id),
        ("s3.secret-access-key", archive.s3_secret_access_key),
    ):
        if value is not None:
            props[key] = value if isinstance(value, str) else value.get_secret_value()
    return props


def close_catalog(catalog: SqlCatalog | None) -> None:
    """Close the catalog's connections (SQLAlchemy keeps a pool of them)."""
    if catalog is not None:
        catalog.engine.dispose()


def open_table(
    catalog: SqlCatalog, namespace: str, name: str, time_column: str, columns: Sequence[Column]
) -> Table:
    """The cold table, created when missing. Raises OSError when the root is unwritable."""
    catalog.create_namespace_if_not_exists(namespace)
    fields = [NestedField(i + 1, c.name, _ICEBERG[c.kind], required=False) for i, c in enumerate(columns)]
    ids = {c.name: i + 1 for i, c in enumerate(columns)}
    day = DayTransform()  # type: ignore[var-annotated]
    spec = PartitionSpec(PartitionField(ids[time_column], 1000, day, f"{time_column}_day"))
    order = SortOrder(*(SortField(source_id=ids[k], transform=IdentityTransform()) for k in SORT_KEYS[name]))
    return catalog.create_table_if_not_exists(
        f"{namespace}.{name}",
        schema=Schema(*fields),
        partition_spec=spec,
        sort_order=order,
        properties={
            "write.parquet.compression-codec": "zstd",
            "write.parquet.row-group-limit": str(ROW_GROUP_ROWS),
        },
    )


def time_range(column: str, start_iso: str, end_iso: str) -> BooleanExpression:
    """[start, end) on the time column, as an Iceberg filter."""
    return And(GreaterThanOrEqual(term=column, value=start_iso), LessThan(term=column, value=end_iso))


def sort(data: pa.Table, name: str) -> pa.Table:
    return data.sort_by([(k, "ascending") for k in SORT_KEYS[name]])


def overwrite(table: Table, data: pa.Table, where: BooleanExpression) -> int:
    """Replace the rows matching `where` by `data` in one atomic commit (one snapshot update:
    a repeated or resumed roll replaces instead of adding); returns the new snapshot id."""
    with warnings.catch_warnings():
        # an overwrite of a range the cold table does not hold yet deletes nothing: expected
        warnings.filterwarnings("ignore", "Delete operation did not match any records")
        table.overwrite(data, overwrite_filter=where)
    snapshot = table.current_snapshot()
    assert snapshot is not None  # just committed
    return snapshot.snapshot_id


def read(
    table: Table, where: BooleanExpression, schema: pa.Schema, snapshot_id: int | None = None
) -> pa.Table:
    """The rows matching `where` (at `snapshot_id`, default the current snapshot), only the
    columns of `schema`, cast to it (pyiceberg hands out large strings). Each data file is
    checked before it is read (`check_file`) and read on its own, so a bad one is named.
    Raises ColdFileError."""
    if table.current_snapshot() is None:
        return schema.empty_table()
    scan = table.scan(row_filter=where, snapshot_id=snapshot_id, selected_fields=tuple(schema.names))
    tasks = list(scan.plan_files())
    # threads of its own: each file's read submits its work to pyiceberg's shared pool, so
    # waiting on that pool from that pool deadlocks once the files outnumber its workers
    with ThreadPoolExecutor(min(READ_THREADS, len(tasks)) or 1, thread_name_prefix="tickvault-cold") as pool:
        parts = list(pool.map(lambda task: _read_file(scan, task, schema), tasks))
    return pa.concat_tables(parts) if parts else schema.empty_table()


def _read_file(scan: DataScan, task: FileScanTask, schema: pa.Schema) -> pa.Table:
    path = task.file.file_path
    try:
        check_file(scan.io, task.file)
        rows = ArrowScan(scan.table_metadata, scan.io, scan.projection(), scan.row_filter).to_table([task])
    except ColdFileError:
        raise
    except (OSError, pa.ArrowException, ValueError) as exc:
        reason = " ".join(f"{type(exc).__name__}: {exc}".split())[:300]
        raise ColdFileError(f"cold data file {path} cannot be read: {reason}") from exc
    return rows.select(schema.names).cast(schema)


def check_file(io: FileIO, file: DataFile) -> None:
    """That the data file exists with the size and the Parquet row count the table's metadata
    (its manifest) records: a deleted, truncated, replaced or garbled file fails here, before
    its rows are read. Costs a stat and a footer read. Raises ColdFileError naming the file,
    OSError when the file system cannot be reached."""
    path = file.file_path
    source = io.new_input(path)
    try:
        size = len(source)
    except FileNotFoundError:
        raise ColdFileError(f"cold data file {path} is missing") from None
    if size != file.file_size_in_bytes:
        raise ColdFileError(
            f"cold data file {path} is {size} bytes, the table's metadata records {file.file_size_in_bytes}"
        )
    try:
        with source.open() as stream:
            rows = pq.read_metadata(stream).num_rows
    except pa.ArrowException as exc:
        raise ColdFileError(f"cold data file {path} is not readable Parquet: {exc}") from exc
    if rows != file.record_count:
        raise ColdFileError(
            f"cold data file {path} holds {rows} rows, the table's metadata records {file.record_count}"
        )


def live_files(table: Table, where: BooleanExpression) -> dict[str, int]:
    """The data files a scan of `where` reads at the current snapshot, each with the id of the
    snapshot that added it (Iceberg manifests keep it for files carried into later snapshots)."""
    if table.current_snapshot() is None:
        return {}
    paths = {task.file.file_path for task in table.scan(row_filter=where).plan_files()}
    entries = table.inspect.entries().select(["status", "snapshot_id", "data_file"]).to_pylist()
    return {
        e["data_file"]["file_path"]: e["snapshot_id"]
        for e in entries
        if e["status"] != _DELETED and e["data_file"]["file_path"] in paths
    }


def files_in(table: Table, where: BooleanExpression, snapshot_id: int) -> tuple[int, int]:
    """(data files, bytes) that a scan of `where` at `snapshot_id` reads."""
    tasks = list(table.scan(row_filter=where, snapshot_id=snapshot_id).plan_files())
    return len(tasks), sum(t.file.file_size_in_bytes for t in tasks)


def checksum(data: pa.Table) -> str:
    """An order-independent checksum of the rows, `"sha256:"` + 64 hex digits, computed in C
    (pyarrow kernels and hashlib) without a Python loop over rows: equal row sets give equal
    checksums however the rows are ordered or chunked; duplicate rows count twice.

    What is hashed, to recompute it without tickvault: the rows sorted by every column in
    table order, ascending, nulls last (strings bytewise); then SHA-256 over each column in
    table order, each as one byte per row (1 for a value, 0 for null) followed by its values,
    nulls as zeros, little-endian: integers and times (epoch microseconds) as 8 bytes signed,
    decimals as 16 bytes of their unscaled two's-complement integer (value x 10**18 for
    decimal(38, 18)), booleans as 1 byte 0/1, strings as one 8-byte unsigned byte length per
    row followed by all the rows' UTF-8 bytes. Computed on the Arrow form, so the hot
    partition and the committed cold rows are hashed alike. Ranges rolled before this format
    have a 16-hex-digit checksum in `archive_log`; `checksum_like` recomputes either.
    Raises TypeError for a column type the cold schema does not use."""
    if sys.byteorder != "little":  # Arrow buffers are native-endian
        raise NotImplementedError("the checksum reads Arrow buffers as little-endian")
    digest = hashlib.sha256()
    if data.num_columns:
        keys = [(name, "ascending") for name in data.column_names]
        order = pc.sort_indices(data, sort_keys=keys)  # nulls last
        for column in data.columns:
            for part in _column_bytes(column.take(order).combine_chunks()):
                digest.update(part)
    return CHECKSUM_PREFIX + digest.hexdigest()


def checksum_like(data: pa.Table, logged: str) -> str:
    """The checksum of `data` in the format of `logged` (an `archive_log` checksum): the
    current one, or the 16-hex-digit one of ranges rolled before it."""
    return checksum(data) if logged.startswith(CHECKSUM_PREFIX) else _checksum_v1(data)


def _column_bytes(array: pa.Array) -> list[memoryview]:
    """One column's bytes as `checksum` hashes them."""
    valid = pc.is_valid(array).cast(pa.uint8())
    parts = [_values(valid, 1)]
    kind = array.type
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        texts = pc.fill_null(array, "").cast(pa.large_string())
        parts.append(_values(pc.binary_length(texts).cast(pa.uint64()), 8))
        offsets = _values(texts, 8, buffer=1, extra=1).cast("q")
        parts.append(memoryview(texts.buffers()[2] or b"")[offsets[0] : offsets[-1]])
    elif pa.types.is_decimal128(kind):
        parts.append(_values(pc.fill_null(array, pa.scalar(0, pa.int64()).cast(kind)), 16))
    elif pa.types.is_boolean(kind):
        parts.append(_values(pc.fill_null(array, False).cast(pa.uint8()), 1))
    elif pa.types.is_timestamp(kind) or pa.types.is_integer(kind):
        parts.append(_values(pc.fill_null(array.cast(pa.int64()), 0), 8))
    else:
        raise TypeError(f"no checksum for column type {kind}")
    return parts


def _values(array: pa.Array, width: int, buffer: int = 1, extra: int = 0) -> memoryview:
    """The `width`-byte slots of `array`'s buffer `buffer` that belong to its rows (`extra`
    more: offsets have one slot more than rows)."""
    start = array.offset * width
    return memoryview(array.buffers()[buffer] or b"")[start : start + (len(array) + extra) * width]


def _checksum_v1(data: pa.Table) -> str:
    """The checksum of ranges rolled before `checksum`'s format: the sum mod 2**64 of a
    64-bit BLAKE2b of each row's canonical text (columns joined by 0x1F, nulls as \\N, times
    as epoch microseconds, decimals as Arrow prints them), as 16 hex digits."""
    texts = []
    for column in data.columns:
        if pa.types.is_timestamp(column.type):
            column = column.cast(pa.int64())
        texts.append(pc.fill_null(column.cast(pa.string()), _NULL))
    rows = pc.binary_join_element_wise(*texts, _SEPARATOR).cast(pa.binary()).to_pylist() if texts else []
    total = sum(int.from_bytes(hashlib.blake2b(row, digest_size=8).digest(), "big") for row in rows)
    return f"{total % 2**64:016x}"
