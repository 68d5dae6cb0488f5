"""The steps of one partition's roll, and what the partitions of a table rolled side by side share.

One roll of a partition [start, end) of table T (a native partition, or a TimescaleDB chunk
through `chunks.TimescaleChunks`; all steps idempotent), in this order:
1. Merge: when the cold table already holds rows in the range (a resumed roll, or late rows
   that arrived after an earlier roll and now sit in a re-created partition), they are
   loaded back into the hot partition under the ingest rules (`hot.reload`), so PostgreSQL
   applies the one set of conflict rules.
2. Read the partition into Arrow, and its fingerprint (row count and a sum of hashes of
   the row versions' identities, `hot.fingerprint`), from one snapshot.
3. Overwrite the range in the Iceberg table with those rows: one atomic commit that
   replaces whatever the range held, so a repeated roll never adds a second copy.
4. Verify: read back what that snapshot holds for the range; its row count must equal what
   was read, and its rows, sorted by the key, must equal them value for value (else their
   order-independent checksums, `table.checksum`, must be equal). The partition's checksum
   goes to `archive_log`.
5. In one PostgreSQL transaction: lock T (ACCESS EXCLUSIVE, bounded by
   `archive.lock_timeout_s`), check the partition's fingerprint is unchanged — a late row
   written after step 2 would otherwise be dropped unarchived; if it changed, nothing is
   dropped and the next round merges it — then insert the `archive_log` row and drop the
   partition. The lock is held only for the fingerprint and the drop.

Partitions of one table roll side by side (`TableRoll`): while one is sorted, written and
verified in worker threads, the next is merged and read. They share one PostgreSQL
connection, used by one step at a time (`TableRoll.db`: steps 1-2 and 5 — the drop's lock
on T covers every partition of T, so a read beside it would only wait, or time the lock
out), and the cold table, each partition through a table object of its own: pyiceberg does not
document its table objects as safe for concurrent use (a commit beside a scan of one shared
object failed here, rarely, with "dictionary changed size during iteration"). The catalog is
used by one thread at a time (`TableRoll.catalog_lock`): opening the table, and each
overwrite (its Parquet files and its commit), made after its table object is refreshed to
the snapshot the previous one made, so pyiceberg's optimistic commit never conflicts and
never retries. One partition's overwrite thus overlaps the other's read, or its verify.
"""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import asyncpg
import pyarrow as pa
from pyiceberg.catalog.sql import SqlCatalog
from pyiceberg.expressions import BooleanExpression
from pyiceberg.table import Table

from tickvault import metrics
from tickvault.archive import hot, scrub, table
from tickvault.archive.hot import Partition, PartitionChanged, Partitions
from tickvault.archive.table import Column
from tickvault.errors import TickvaultError
from tickvault.settings import Settings
from tickvault.store.schema import TimeTable


class VerifyFailed(TickvaultError):
    """What the cold table holds for a range differs from the partition that was written."""


@dataclass(frozen=True)
class Outcome:
    partition: Partition
    status: str  # "rolled", "would roll", "failed", "changed"
    rows: int = 0
    files: int = 0
    bytes: int = 0
    checksum: str = ""
    merged_rows: int = 0
    reason: str = ""


@dataclass
class TableRoll:
    """What the rolls of one table's partitions share: the connection (the caller's, which
    holds the roll lock; used under `db` only), and the catalog (used under `catalog_lock`
    only, in worker threads)."""

    conn: asyncpg.Connection
    settings: Settings
    catalog: SqlCatalog
    hot_side: Partitions
    table: TimeTable
    db: asyncio.Lock = field(default_factory=asyncio.Lock)
    catalog_lock: threading.Lock = field(default_factory=threading.Lock)

    def open(self, cols: tuple[Column, ...]) -> Table:
        """A table object of the cold table (created when missing), for one partition's use.
        Raises OSError when the root is unwritable."""
        with self.catalog_lock:
            t = self.table
            return table.open_table(
                self.catalog, self.settings.postgres.schema_name, t.name, t.time_column, cols
            )

    def overwrite(self, cold: Table, data: pa.Table, where: BooleanExpression) -> int:
        """`table.overwrite` from the table's current snapshot, one at a time."""
        with self.catalog_lock:
            cold.refresh()
            return table.overwrite(cold, data, where)


async def roll_one(shared: TableRoll, p: Partition) -> Outcome:
    """Steps 1-5 for partition `p` of `shared.table`. Raises PartitionChanged when rows
    changed between the read and the drop, anything else on a failure: either way the
    partition stays in PostgreSQL."""
    conn, schema = shared.conn, shared.settings.postgres.schema_name
    async with shared.db:
        cols = await hot.columns(conn, schema, p.table.name)
        arrow = table.arrow_schema(cols)
        cold = await asyncio.to_thread(shared.open, cols)
        where = table.time_range(p.table.time_column, p.start.isoformat(), p.end.isoformat())
        earlier = await asyncio.to_thread(table.read, cold, where, arrow)
        if earlier.num_rows:
            await _check_logged(shared, cold, where, p, earlier)
            await shared.hot_side.ensure(conn, p)
            await hot.reload(conn, schema, p.table, earlier)
        data, seen = await hot.read(conn, p, cols)
    files = size = 0
    digest, snapshot_id = table.checksum(data.slice(0, 0)), None  # _verify's, once rows are written
    if data.num_rows or earlier.num_rows:
        data = await asyncio.to_thread(table.sort, data, p.table.name)
        snapshot_id = await asyncio.to_thread(shared.overwrite, cold, data, where)
        digest = await asyncio.to_thread(_verify, cold, where, arrow, snapshot_id, data, p.table.name)
        files, size = await asyncio.to_thread(table.files_in, cold, where, snapshot_id)
    series = _kline_series(data) if p.table.name == "klines" else []
    async with shared.db:
        await _drop(shared, p, seen, (files, data.num_rows, size, digest, snapshot_id), series)
    return Outcome(p, "rolled", data.num_rows, files, size, digest, earlier.num_rows)


async def _check_logged(
    shared: TableRoll, cold: Table, where: BooleanExpression, p: Partition, rows: pa.Table
) -> None:
    """Before cold rows of a rolled range are merged back: they must be what the roll that
    logged the range verified (unless the range was committed again since). Raises
    ColdDataCorrupt, so the partition stays hot and the damage is reported, not merged."""
    schema = shared.settings.postgres.schema_name
    for logged in await scrub.logged_ranges(shared.conn, schema, [p.table.name]):
        if (logged.start, logged.end) != (p.start, p.end):
            continue
        check = await asyncio.to_thread(scrub.judge, cold, where, rows, logged)
        if check.status == "corrupt":
            metrics.ARCHIVE_COLD_CHECK_FAILURES.labels(p.table.name).inc()
            raise scrub.ColdDataCorrupt(f"cold rows of the range differ from the archive log: {check.reason}")


def _verify(
    cold: Table, where: BooleanExpression, arrow: pa.Schema, snapshot_id: int, data: pa.Table, name: str
) -> str:
    """The checksum of `data` (sorted by `name`'s key), once the committed snapshot is shown
    to hold exactly it: the same row count, and the rows read back (sorted by the key unless
    they came back in that order) equal to `data` value for value — or, should the key not
    order them alike (duplicate keys), the same order-independent checksum. The checksum is
    computed while the rows are read back. Raises VerifyFailed."""
    with ThreadPoolExecutor(1, thread_name_prefix="tickvault-checksum") as pool:
        want = pool.submit(table.checksum, data)
        back = table.read(cold, where, arrow, snapshot_id)
        if back.num_rows != data.num_rows:
            raise VerifyFailed(
                f"the cold table holds {back.num_rows} rows for the range, {data.num_rows} were written"
            )
        if not (back.equals(data) or table.sort(back, name).equals(data)):
            got = table.checksum(back)
            if got != want.result():
                raise VerifyFailed(
                    f"checksum of the committed rows {got} differs from the partition's {want.result()}"
                )
        return want.result()


async def _drop(
    shared: TableRoll,
    p: Partition,
    seen: str,
    logged: tuple[int, int, int, str, int | None],
    series: list[tuple[str, str, str]],
) -> None:
    conn, schema = shared.conn, shared.settings.postgres.schema_name
    lock_timeout_ms = int(shared.settings.archive.lock_timeout_s * 1000)
    async with conn.transaction():
        await conn.execute(f"SET LOCAL lock_timeout = '{lock_timeout_ms}ms'")
        # as at the read: a fingerprint of row text must see times printed alike
        await conn.execute("SET LOCAL timezone = 'UTC'; SET LOCAL datestyle = 'ISO'")
        await conn.execute(f"LOCK TABLE {schema}.{p.table.name} IN ACCESS EXCLUSIVE MODE")
        now = await hot.fingerprint(conn, p)
        if now != seen:
            raise PartitionChanged(f"rows changed since the read ({seen} → {now})")
        await conn.execute(
            f"INSERT INTO {schema}.archive_log (table_name, range_start, range_end, files, rows, bytes, "  # noqa: S608
            "checksum, snapshot_id) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            p.table.name, p.start, p.end, *logged,
        )  # fmt: skip
        await conn.executemany(
            f'INSERT INTO {schema}.cold_kline_series (exchange, symbol, "interval") VALUES ($1, $2, $3) '  # noqa: S608
            "ON CONFLICT DO NOTHING",
            series,
        )
        await shared.hot_side.drop(conn, p)


def _kline_series(data: pa.Table) -> list[tuple[str, str, str]]:
    """The distinct (exchange, symbol, interval) of klines rows."""
    names = ["exchange", "symbol", "interval"]
    found = data.select(names).group_by(names).aggregate([])
    return list(zip(*(found.column(n).to_pylist() for n in names), strict=True))
