"""Time partitions behind one interface: native range partitions or TimescaleDB hypertables.

Native: every time table has a DEFAULT partition, so no row is ever refused. The daemon
creates fixed-width partitions ahead of time and before each batch that reaches a range
without one; rows that already sit in the default partition for a new range are moved into
it in the same transaction. TimescaleDB creates chunks itself, so there `ensure` does nothing;
`ensure_ahead` brings the chunk width in line with `partition_interval_days` once per process
(`set_chunk_time_interval`: chunks made from then on; existing chunks keep their width).

The first partition starts at 1970-01-01, the start of the time range records accept. The
last one, holding 9999-12-31, has no upper bound (`TO (MAXVALUE)`): its end would be in the
year 10000, which PostgreSQL could store but Python's datetime cannot represent.
TimescaleDB needs no such care: its chunks cover 4713 BC to about 294000 AD.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Collection, Iterable
from itertools import repeat
from operator import attrgetter, sub
from typing import Protocol

import asyncpg

from tickvault.store.db import affected
from tickvault.store.schema import TIME_TABLES, TimeTable
from tickvault.timestamps import EPOCH, MAX_TIME

log = logging.getLogger(__name__)
_LOCK_KEY = 0x7469636B  # advisory lock shared by every daemon that creates partitions
_DAYS = attrgetter("days")


class Partitioner(Protocol):
    async def ensure(self, conn: asyncpg.Connection, table: TimeTable, times: Iterable[dt.datetime]) -> None:
        """Make sure rows at `times` land in a proper partition. Idempotent, safe to race."""

    async def ensure_ahead(self, conn: asyncpg.Connection, now: dt.datetime) -> None:
        """Create the partitions for the current and the next few intervals (native), or keep
        the chunk width in line with the settings (TimescaleDB). Run at start and periodically."""


class TimescalePartitioner:
    def __init__(self, schema: str, interval_days: int) -> None:
        self.schema = schema
        self.interval_days = interval_days
        self._interval_checked = False

    async def ensure(self, conn: asyncpg.Connection, table: TimeTable, times: Iterable[dt.datetime]) -> None:
        return None

    async def ensure_ahead(self, conn: asyncpg.Connection, now: dt.datetime) -> None:
        if not self._interval_checked:
            await self.apply_interval(conn)
            self._interval_checked = True

    async def apply_interval(self, conn: asyncpg.Connection) -> None:
        """Set the chunk width of every hypertable of the schema whose width differs from
        `interval_days`. Only chunks created afterwards get it; TimescaleDB keeps the existing
        ones (a new chunk next to an old one is cut short rather than overlap it). Without the
        right to change a table (not its owner) it warns and keeps the old width."""
        if await conn.fetchval("SELECT to_regclass('timescaledb_information.dimensions')") is None:
            return  # no extension in this database: nothing migrated yet
        width = dt.timedelta(days=self.interval_days)
        rows = await conn.fetch(
            "SELECT hypertable_name, time_interval FROM timescaledb_information.dimensions "
            "WHERE hypertable_schema = $1 AND dimension_type = 'Time' ORDER BY 1",
            self.schema,
        )
        for name, old in rows:
            if old == width:
                continue
            try:
                await conn.execute(
                    "SELECT set_chunk_time_interval($1::regclass, $2::interval)",
                    f"{self.schema}.{name}",
                    width,
                )
            except asyncpg.InsufficientPrivilegeError as exc:
                log.warning("keeping %s chunks of %s, not %s days: %s", name, old, self.interval_days, exc)
            else:
                log.info(
                    "%s.%s: chunks created from now on span %s days (were %s)",
                    self.schema,
                    name,
                    self.interval_days,
                    old,
                )


class NativePartitioner:
    def __init__(self, schema: str, interval_days: int, ahead: int) -> None:
        self.schema = schema
        self.interval_days = interval_days
        self.ahead = ahead
        self._known: set[tuple[str, int]] = set()

    def bucket(self, ts: dt.datetime) -> int:
        return (ts - EPOCH).days // self.interval_days

    def bounds(self, bucket: int) -> tuple[dt.datetime, dt.datetime | None]:
        """[lower, upper) of a bucket; upper is None (no bound) for the last one, which
        holds MAX_TIME. `bucket` must not be after that one."""
        width = dt.timedelta(days=self.interval_days)
        lower = EPOCH + bucket * width
        return lower, None if lower > MAX_TIME - width else lower + width

    async def ensure(self, conn: asyncpg.Connection, table: TimeTable, times: Iterable[dt.datetime]) -> None:
        times = times if isinstance(times, Collection) else list(times)
        if not times:
            return
        # buckets follow time: when the earliest and latest share one, every time is in it
        # (a batch of a live feed: no Python call per row)
        first, last = self.bucket(min(times)), self.bucket(max(times))
        if first == last:
            buckets = {first}
        else:  # the days since the epoch of every time, in C; a Python call per distinct day
            days = set(map(_DAYS, map(sub, times, repeat(EPOCH))))
            buckets = {day // self.interval_days for day in days}
        for bucket in buckets:
            if (table.name, bucket) not in self._known:
                try:
                    await self._create(conn, table, bucket)
                except asyncpg.InvalidObjectDefinitionError as exc:
                    # partitions made under another partition_interval_days cover part of this
                    # range; rows route to them or to the default partition, so keep the layout
                    log.warning(
                        "not creating a %s partition at %s: %s", table.name, self.bounds(bucket)[0], exc
                    )
                self._known.add((table.name, bucket))

    async def ensure_ahead(self, conn: asyncpg.Connection, now: dt.datetime) -> None:
        first = self.bucket(now)
        last = min(first + self.ahead, self.bucket(MAX_TIME))
        for table in TIME_TABLES:
            await self.ensure(conn, table, [self.bounds(b)[0] for b in range(first, last + 1)])

    async def _create(self, conn: asyncpg.Connection, table: TimeTable, bucket: int) -> None:
        lower, upper = self.bounds(bucket)
        s, parent, col = self.schema, table.name, table.time_column
        name = f"{parent}_p{lower:%Y%m%d}"
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", _LOCK_KEY)
            if await conn.fetchval("SELECT to_regclass($1)", f"{s}.{name}") is not None:
                return
            await conn.execute(f"CREATE TABLE {s}.{name} (LIKE {s}.{parent} INCLUDING DEFAULTS)")
            moved = await conn.execute(
                f"WITH moved AS (DELETE FROM {s}.{parent}_default "  # noqa: S608 - identifiers are ours
                f"WHERE {col} >= $1 AND ($2::timestamptz IS NULL OR {col} < $2) RETURNING *) "
                f"INSERT INTO {s}.{name} SELECT * FROM moved",
                lower,
                upper,
            )
            to = "MAXVALUE" if upper is None else f"'{upper.isoformat()}'"
            await conn.execute(
                f"ALTER TABLE {s}.{parent} ATTACH PARTITION {s}.{name} "
                f"FOR VALUES FROM ('{lower.isoformat()}') TO ({to})"
            )
        log.info("created partition %s.%s (%s rows moved from default)", s, name, affected(moved))


async def detect(conn: asyncpg.Connection, schema: str, interval_days: int, ahead: int) -> Partitioner:
    """Native partitioning when the klines table is a partitioned table, else TimescaleDB."""
    native = await conn.fetchval(
        "SELECT EXISTS (SELECT 1 FROM pg_partitioned_table p JOIN pg_class c ON c.oid = p.partrelid "
        "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 AND c.relname = 'klines')",
        schema,
    )
    return (
        NativePartitioner(schema, interval_days, ahead)
        if native
        else TimescalePartitioner(schema, interval_days)
    )
