"""The roller: moves old partitions to the cold tier, verifies them, then drops them.

One roll of a partition [start, end) of table T (a native partition, or a TimescaleDB chunk
through `chunks.TimescaleChunks`; all steps idempotent):
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

A crash anywhere leaves either the partition (and maybe a committed cold copy, which step 1
merges next time) or the log row and no partition: nothing lost, nothing doubled. A failure
at any step leaves the partition in PostgreSQL, logs the reason, counts it in
`tickvault_archive_failures_total`, and the next round retries. One roller runs at a time
across replicas (a session advisory lock).

On hypertables, klines chunks inside the window of a continuous aggregate's refresh policy
are kept hot even when older than the cutoff (`_cutoff_of`): their drop would invalidate
the range and the next refresh would empty the aggregate there.

After the partitions, still under that lock, each cold table's old snapshots are expired
and the files no kept snapshot references are swept (`sweep`, after
`archive.snapshot_retention`); a failure there is logged and counted, never fails the roll.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Final

import asyncpg
import pyarrow as pa
from pyiceberg.catalog.sql import SqlCatalog
from pyiceberg.expressions import BooleanExpression
from pyiceberg.table import Table

from tickvault import metrics
from tickvault.archive import chunks, hot, scrub, sweep, table
from tickvault.archive.hot import NativePartitions, Partition, PartitionChanged, Partitions
from tickvault.errors import TickvaultError
from tickvault.settings import Settings
from tickvault.store import db, partitions
from tickvault.store.schema import TIME_TABLES, TimeTable

log = logging.getLogger(__name__)
ROLL_LOCK_KEY: Final = 0x7476_636F_6C64  # "tvcold": one roller at a time across replicas


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


def cutoff(
    settings: Settings, older_than_s: int | None = None, now: dt.datetime | None = None
) -> dt.datetime:
    """Partitions ending at or before this instant are rolled."""
    age_s = settings.archive.hot_retention_s if older_than_s is None else older_than_s
    return (now or dt.datetime.now(dt.UTC)) - dt.timedelta(seconds=age_s)


async def roll(
    settings: Settings,
    *,
    older_than_s: int | None = None,
    tables: Sequence[str] = (),
    dry_run: bool = False,
    now: dt.datetime | None = None,
) -> list[Outcome] | None:
    """Roll every partition of `tables` (default: klines, fills, order_events) that ends
    before now - `older_than_s` (default `archive.hot_retention`), then expire and sweep
    their cold tables (not on a dry run). `now` (UTC, default the clock) is the instant both
    retentions count back from. None when another roller holds the lock. Raises StoreError
    when PostgreSQL cannot be reached."""
    metrics.ARCHIVE_RUNS.inc()
    conn = await db.connect(settings.postgres, "roll partitions")
    try:
        if not await conn.fetchval("SELECT pg_try_advisory_lock($1)", ROLL_LOCK_KEY):
            log.info("another roller holds the lock; not rolling now")
            return None
        try:
            now = now or dt.datetime.now(dt.UTC)
            outcomes = await _roll_all(conn, settings, cutoff(settings, older_than_s, now), tables, dry_run)
            if not dry_run:
                await _upkeep(settings, tables, now)
            return outcomes
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1)", ROLL_LOCK_KEY)
    except db.DRIVER_ERRORS as exc:
        raise db.translate(exc) from exc
    finally:
        await conn.close()


async def _roll_all(
    conn: asyncpg.Connection, settings: Settings, before: dt.datetime, tables: Sequence[str], dry_run: bool
) -> list[Outcome]:
    hot_side = await _hot_side(conn, settings)
    outcomes: list[Outcome] = []
    catalog: SqlCatalog | None = None
    try:
        for t in TIME_TABLES:
            if tables and t.name not in tables:
                continue
            t_before = await _cutoff_of(conn, hot_side, t, before)
            if dry_run:
                outcomes += await _dry_run(conn, hot_side, t, t_before)
                continue
            todo = await hot_side.old(conn, t, t_before)
            if todo and catalog is None:
                catalog = await asyncio.to_thread(table.open_catalog, settings)
            for partition in todo:
                assert catalog is not None
                outcomes.append(await _roll_logged(conn, settings, catalog, hot_side, partition))
    finally:
        await asyncio.to_thread(table.close_catalog, catalog)
    return outcomes


async def _hot_side(conn: asyncpg.Connection, settings: Settings) -> Partitions:
    schema, days = settings.postgres.schema_name, settings.postgres.partition_interval_days
    if isinstance(await partitions.detect(conn, schema, days, 0), partitions.NativePartitioner):
        return NativePartitions(schema, days)
    return chunks.TimescaleChunks(schema)


async def _cutoff_of(
    conn: asyncpg.Connection, hot_side: Partitions, t: TimeTable, before: dt.datetime
) -> dt.datetime:
    """`before`, or earlier where a continuous aggregate's refresh policy reaches further
    back (by the clock its jobs run on): dropping a chunk inside that window would empty the
    aggregate's rows of its range at the next refresh."""
    if not isinstance(hot_side, chunks.TimescaleChunks):
        return before
    horizon = await chunks.aggregate_horizon(conn, hot_side.schema, t.name, dt.datetime.now(dt.UTC))
    if horizon is None or horizon >= before:
        return before
    log.info(
        "%s: rolling chunks ending by %s, not %s: continuous aggregates refresh back to there",
        t.name, horizon.isoformat(), before.isoformat(),
    )  # fmt: skip
    return horizon


async def _upkeep(settings: Settings, tables: Sequence[str], now: dt.datetime) -> None:
    """Expire and sweep each existing cold table; failures are logged and counted only."""
    names = [t.name for t in TIME_TABLES if not tables or t.name in tables]
    catalog: SqlCatalog | None = None
    try:
        catalog = await asyncio.to_thread(table.open_catalog, settings)
        for name in names:
            await _upkeep_one(settings, catalog, name, now)
    except Exception as exc:  # the catalog itself: counted against every table, retried next round
        log.error("cold table upkeep failed, retried next round: %s", _reason(exc))
        for name in names:
            metrics.ARCHIVE_SWEEP_FAILURES.labels(name).inc()
    finally:
        await asyncio.to_thread(table.close_catalog, catalog)


async def _upkeep_one(settings: Settings, catalog: SqlCatalog, name: str, now: dt.datetime) -> None:
    identifier = f"{settings.postgres.schema_name}.{name}"
    try:
        if not await asyncio.to_thread(catalog.table_exists, identifier):
            return
        cold = await asyncio.to_thread(catalog.load_table, identifier)
        retention_s = settings.archive.snapshot_retention_s
        swept = await asyncio.to_thread(sweep.expire_and_sweep, cold, retention_s, now)
    except Exception as exc:  # never fails the roll: the next round tries again
        log.error("expiring/sweeping cold table %s failed, retried next round: %s", name, _reason(exc))
        metrics.ARCHIVE_SWEEP_FAILURES.labels(name).inc()
        return
    log.info(
        "cold table %s: %d snapshots expired, %d kept; %d unreferenced files deleted, %d files kept",
        name, swept.expired_snapshots, swept.kept_snapshots, swept.deleted_files, swept.kept_files,
    )  # fmt: skip
    metrics.ARCHIVE_SWEPT_FILES.labels(name).inc(swept.deleted_files)


def _reason(exc: BaseException) -> str:
    return " ".join(f"{type(exc).__name__}: {exc}".split())[:500]


async def _dry_run(
    conn: asyncpg.Connection, hot_side: Partitions, t: TimeTable, before: dt.datetime
) -> list[Outcome]:
    out = []
    for partition in await hot_side.old(conn, t, before, adopt=False):
        rows = await conn.fetchval(f"SELECT count(*) FROM {partition.relation}")  # noqa: S608
        out.append(Outcome(partition, "would roll", rows=rows))
    return out


async def _roll_logged(
    conn: asyncpg.Connection,
    settings: Settings,
    catalog: SqlCatalog,
    hot_side: Partitions,
    p: Partition,
) -> Outcome:
    started = time.monotonic()
    name = f"{p.name} [{p.start:%Y-%m-%dT%H:%M}Z, {p.end:%Y-%m-%dT%H:%M}Z)"
    try:
        outcome = await _roll_one(conn, settings, catalog, hot_side, p)
    except PartitionChanged as exc:
        log.info("not dropping %s: %s; the next round merges it", name, exc)
        return Outcome(p, "changed", reason=str(exc))
    except Exception as exc:  # any failure leaves the partition in PostgreSQL, to retry next round
        reason = _reason(exc)
        log.error("rolling %s failed, partition kept, retried next round: %s", name, reason)
        metrics.ARCHIVE_FAILURES.labels(p.table.name).inc()
        return Outcome(p, "failed", reason=reason)
    elapsed_s = time.monotonic() - started
    log.info(
        "rolled %s: %d rows (%d merged from the cold table), %d files, %d bytes, checksum %s, %.1f s",
        name, outcome.rows, outcome.merged_rows, outcome.files, outcome.bytes, outcome.checksum, elapsed_s,
    )  # fmt: skip
    metrics.ARCHIVE_PARTITIONS.labels(p.table.name).inc()
    metrics.ARCHIVE_ROWS.labels(p.table.name).inc(outcome.rows)
    metrics.ARCHIVE_BYTES.labels(p.table.name).inc(outcome.bytes)
    metrics.ARCHIVE_LAST_SUCCESS.set(time.time())
    return outcome


async def _roll_one(
    conn: asyncpg.Connection,
    settings: Settings,
    catalog: SqlCatalog,
    hot_side: Partitions,
    p: Partition,
) -> Outcome:
    schema = settings.postgres.schema_name
    cols = await hot.columns(conn, schema, p.table.name)
    arrow = table.arrow_schema(cols)
    cold = await asyncio.to_thread(table.open_table, catalog, schema, p.table.name, p.table.time_column, cols)
    where = table.time_range(p.table.time_column, p.start.isoformat(), p.end.isoformat())
    earlier = await asyncio.to_thread(table.read, cold, where, arrow)
    if earlier.num_rows:
        await _check_logged(conn, schema, cold, where, p, earlier)
        await hot_side.ensure(conn, p)
        await hot.reload(conn, schema, p.table, earlier)
    data, seen = await hot.read(conn, p, cols)
    files = size = 0
    digest, snapshot_id = table.checksum(data.slice(0, 0)), None  # _verify's, once rows are written
    if data.num_rows or earlier.num_rows:
        data = table.sort(data, p.table.name)
        snapshot_id = await asyncio.to_thread(table.overwrite, cold, data, where)
        digest = await asyncio.to_thread(_verify, cold, where, arrow, snapshot_id, data, p.table.name)
        files, size = await asyncio.to_thread(table.files_in, cold, where, snapshot_id)
    series = _kline_series(data) if p.table.name == "klines" else []
    await _drop(conn, settings, hot_side, p, seen, (files, data.num_rows, size, digest, snapshot_id), series)
    return Outcome(p, "rolled", data.num_rows, files, size, digest, earlier.num_rows)


async def _check_logged(
    conn: asyncpg.Connection, schema: str, cold: Table, where: BooleanExpression, p: Partition, rows: pa.Table
) -> None:
    """Before cold rows of a rolled range are merged back: they must be what the roll that
    logged the range verified (unless the range was committed again since). Raises
    ColdDataCorrupt, so the partition stays hot and the damage is reported, not merged."""
    for logged in await scrub.logged_ranges(conn, schema, [p.table.name]):
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
    conn: asyncpg.Connection,
    settings: Settings,
    hot_side: Partitions,
    p: Partition,
    seen: str,
    logged: tuple[int, int, int, str, int | None],
    series: list[tuple[str, str, str]],
) -> None:
    schema = settings.postgres.schema_name
    async with conn.transaction():
        await conn.execute(f"SET LOCAL lock_timeout = '{int(settings.archive.lock_timeout_s * 1000)}ms'")
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
        await hot_side.drop(conn, p)


def _kline_series(data: pa.Table) -> list[tuple[str, str, str]]:
    """The distinct (exchange, symbol, interval) of klines rows."""
    names = ["exchange", "symbol", "interval"]
    found = data.select(names).group_by(names).aggregate([])
    return list(zip(*(found.column(n).to_pylist() for n in names), strict=True))


async def history(settings: Settings, limit: int = 1000) -> list[asyncpg.Record]:
    """The newest `archive_log` rows, newest first."""
    conn = await db.connect(settings.postgres, "read the archive log")
    try:
        rows: list[asyncpg.Record] = await conn.fetch(
            "SELECT table_name, range_start, range_end, files, rows, bytes, checksum, snapshot_id, "  # noqa: S608
            f"written_at FROM {settings.postgres.schema_name}.archive_log "
            "ORDER BY written_at DESC, id DESC LIMIT $1",
            limit,
        )
    except db.DRIVER_ERRORS as exc:
        raise db.translate(exc) from exc
    finally:
        await conn.close()
    return rows
