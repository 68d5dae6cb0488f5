"""The roller: moves old partitions to the cold tier, verifies them, then drops them.

Each partition that ends before the cutoff goes through the steps of `steps` (merge, read
with a fingerprint, Iceberg overwrite, read-back verify, drop under a lock with the
fingerprint checked again), in that order. A crash anywhere leaves either the partition
(and maybe a committed cold copy, which the merge takes back next time) or the log row and
no partition: nothing lost, nothing doubled. A failure at any step leaves the partition in
PostgreSQL, logs the reason, counts it in `tickvault_archive_failures_total`, and the next
round retries; the other partitions go on. A round that fails as a whole (PostgreSQL
unreachable, say) counts once for each of its tables. One roller runs at a time across
replicas (a session advisory lock, held on the round's connection throughout).

Up to `archive.parallel_partitions` partitions of a table are in flight at once: while one
is sorted, written and verified in worker threads, the next is read from PostgreSQL
(`steps.TableRoll` says what they share and what runs one at a time). Outcomes come back in
partition order.

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
import gc
import logging
import time
from collections.abc import Sequence
from typing import Final

import asyncpg
import pyarrow as pa
from pyiceberg.catalog.sql import SqlCatalog

from tickvault import allocator, metrics
from tickvault.archive import chunks, steps, sweep, table
from tickvault.archive.hot import NativePartitions, Partition, PartitionChanged, Partitions
from tickvault.archive.steps import Outcome
from tickvault.settings import Settings
from tickvault.store import db, partitions
from tickvault.store.schema import TIME_TABLES, TimeTable

log = logging.getLogger(__name__)
ROLL_LOCK_KEY: Final = 0x7476_636F_6C64  # "tvcold": one roller at a time across replicas


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
    when PostgreSQL cannot be reached; a round that raises counts in
    tickvault_archive_failures_total once for each of its tables (each partition failure
    was counted where it happened, and did not raise)."""
    metrics.ARCHIVE_RUNS.inc()
    try:
        return await _round(settings, older_than_s, tables, dry_run, now)
    except Exception:
        for name in table_names(tables):
            metrics.ARCHIVE_FAILURES.labels(name).inc()
        raise


def table_names(tables: Sequence[str] = ()) -> list[str]:
    """The time tables a round of `tables` rolls (default: all), in rolling order."""
    return [t.name for t in TIME_TABLES if not tables or t.name in tables]


async def _round(
    settings: Settings,
    older_than_s: int | None,
    tables: Sequence[str],
    dry_run: bool,
    now: dt.datetime | None,
) -> list[Outcome] | None:
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
            if not todo:
                continue
            if catalog is None:
                catalog = await asyncio.to_thread(table.open_catalog, settings, pooled=False)
            outcomes += await _roll_table(steps.TableRoll(conn, settings, catalog, hot_side, t), todo)
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
    names = table_names(tables)
    catalog: SqlCatalog | None = None
    try:
        catalog = await asyncio.to_thread(table.open_catalog, settings, pooled=False)
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


async def _roll_table(shared: steps.TableRoll, todo: Sequence[Partition]) -> list[Outcome]:
    """Roll `todo`, partitions of `shared.table`, up to `archive.parallel_partitions` at a
    time, each in its own order of steps; their outcomes in the order of `todo`."""
    outcomes: list[Outcome | None] = [None] * len(todo)
    pending = iter(enumerate(todo))

    async def worker() -> None:  # takes the next partition when its previous one is done
        for i, p in pending:
            outcomes[i] = await _roll_logged(shared, p)

    async with asyncio.TaskGroup() as group:  # if cancelled, cancels and awaits every worker
        for _ in range(min(shared.settings.archive.parallel_partitions, len(todo))):
            group.create_task(worker())
    return [o for o in outcomes if o is not None]


async def _roll_logged(shared: steps.TableRoll, p: Partition) -> Outcome:
    started = time.monotonic()
    name = f"{p.name} [{p.start:%Y-%m-%dT%H:%M}Z, {p.end:%Y-%m-%dT%H:%M}Z)"
    try:
        outcome = await steps.roll_one(shared, p)
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


def release_memory() -> int:
    """Free what a round left behind, after it: a full collection of cyclic garbage (the
    daemon's thresholds, `app.tune_gc`, make full collections hours apart, and a round's
    pyiceberg objects hold Arrow buffers), then the memory the round's Arrow work freed goes
    back to the OS (`release_unused` of pyarrow's default pool: with jemalloc,
    `tickvault.allocator`, a purge of every arena), and so does the C library's heap's free
    memory (`allocator.trim_c_heap`). The number of objects collected."""
    collected = gc.collect()
    pa.default_memory_pool().release_unused()
    allocator.trim_c_heap()
    return collected


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
