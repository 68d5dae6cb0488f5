"""The `hot.Partitions` of hypertables: TimescaleDB chunks, rolled like native partitions.

A chunk is listed from `timescaledb_information.chunks` by its own range (`range_end` at or
before the cutoff, the rule `show_chunks(older_than => ...)` applies), read and
fingerprinted as `_timescaledb_internal._hyper_N_M_chunk` (a compressed chunk reads back
transparently), and dropped with DROP TABLE, which TimescaleDB turns into a chunk drop
(its compressed data and catalog rows go with it). Rows inserted into the hypertable create
the chunk of their range by themselves, so `ensure` has nothing to do: late rows for a
dropped range get a new chunk, which the next roll finds and merges with the cold rows.

Nothing here asks TimescaleDB's background jobs how they fared (on PostgreSQL 15.20 they
commit their work and are then recorded as failed): the chunks and their rows are the truth.

Dropping a chunk invalidates its range in every continuous aggregate of the hypertable, and
a refresh over an invalidated range whose raw rows are gone empties the aggregate there.
`aggregate_horizon` gives the oldest instant a refresh policy may still reach; the roller
keeps klines chunks newer than it (see `store.aggregates`).
"""

from __future__ import annotations

import datetime as dt

import asyncpg

from tickvault.archive.hot import Partition
from tickvault.store.schema import TimeTable


class TimescaleChunks:
    """Chunks of the hypertables in `schema`; see the module docstring."""

    def __init__(self, schema: str) -> None:
        self.schema = schema

    async def old(
        self, conn: asyncpg.Connection, table: TimeTable, cutoff: dt.datetime, adopt: bool = True
    ) -> list[Partition]:
        """Chunks of `table` whose range ends at or before `cutoff`, oldest first (`adopt`
        is moot: hypertables have no default partition)."""
        rows = await conn.fetch(
            "SELECT chunk_schema, chunk_name, range_start, range_end FROM timescaledb_information.chunks "
            "WHERE hypertable_schema = $1 AND hypertable_name = $2 AND range_end <= $3 "
            "ORDER BY range_start",
            self.schema,
            table.name,
            cutoff,
        )
        return [
            Partition(table, r["chunk_name"], r["range_start"], r["range_end"], r["chunk_schema"], False)
            for r in rows
        ]

    async def ensure(self, conn: asyncpg.Connection, partition: Partition) -> None:
        """Nothing: an insert into the hypertable creates the chunk of its range."""

    async def drop(self, conn: asyncpg.Connection, partition: Partition) -> None:
        await conn.execute(f"DROP TABLE {partition.relation}")


async def aggregate_horizon(
    conn: asyncpg.Connection, schema: str, table: str, now: dt.datetime
) -> dt.datetime | None:
    """The oldest instant the refresh policy of any continuous aggregate on `schema.table`
    reaches back to at `now` (now - its start_offset), or None when there is none. A chunk
    dropped after it would lose its aggregate rows at the policy's next run."""
    row = await conn.fetchrow(
        "SELECT count(*) AS policies, bool_or(j.config->>'start_offset' IS NULL) AS unbounded, "
        "max((j.config->>'start_offset')::interval) AS offset "
        "FROM timescaledb_information.continuous_aggregates c "
        "JOIN timescaledb_information.jobs j ON j.hypertable_schema = c.view_schema "
        "AND j.hypertable_name = c.view_name AND j.proc_name = 'policy_refresh_continuous_aggregate' "
        "WHERE c.hypertable_schema = $1 AND c.hypertable_name = $2",
        schema,
        table,
    )
    if not row["policies"]:
        return None
    if row["unbounded"]:  # a policy without start_offset refreshes all of history
        return dt.datetime.min.replace(tzinfo=dt.UTC)
    offset: dt.timedelta = row["offset"]
    return now - offset
