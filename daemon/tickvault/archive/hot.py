"""The PostgreSQL side of a roll: which partitions are old, reading one into Arrow, loading
cold rows back through the writers' rules, and the drop.

`Partitions` is the interface a roll needs from the hot store; `NativePartitions` fills it
for native range partitions, `chunks.TimescaleChunks` for hypertable chunks.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import io
import queue
import re
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any, Final, Protocol

import asyncpg
import pyarrow as pa

from tickvault import pgcsv
from tickvault.archive.table import Column, arrow_schema
from tickvault.errors import TickvaultError
from tickvault.store import writers
from tickvault.store.partitions import NativePartitioner
from tickvault.store.schema import TimeTable

_KINDS: Final = {
    "text": "text",
    "uuid": "text",
    "numeric": "decimal",
    "timestamp with time zone": "time",
    "bigint": "bigint",
    "integer": "bigint",
    "boolean": "bool",
    "jsonb": "text",  # JSON text in the cold table
}
_SKIPPED: Final = frozenset({"ingested_at"})  # bookkeeping, not data
_BOUND_RE: Final = re.compile(r"^FOR VALUES FROM \('([^']+)'\) TO \('([^']+)'\)$")
_KIND_OF_TABLE: Final = {
    "klines": "kline", "fills": "fill", "balances": "balance", "signals": "signal", "trades": "trade",
}  # fmt: skip
_IDENTIFIER_RE: Final = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
COPY_ROWS: Final = 8192  # rows per chunk of CSV when cold rows are loaded back (about 1.5 MiB of klines)


class PartitionChanged(TickvaultError):
    """Rows of the partition changed between the read and the drop; the next round retries."""


@dataclass(frozen=True)
class Partition:
    """One partition or chunk of `table` holding the rows of [start, end) (UTC): the relation
    `schema.name` (the tickvault schema for native partitions, TimescaleDB's internal one for
    chunks). Raises ValueError for a name that is not a plain lower-case identifier."""

    table: TimeTable
    name: str  # the relation's name in `schema`
    start: dt.datetime
    end: dt.datetime
    schema: str
    # whether its rows have a stable identity (ctid, xmin) to fingerprint: not so for a
    # TimescaleDB chunk, whose rows may be compressed (then only `tableoid` is readable)
    row_identity: bool = True

    def __post_init__(self) -> None:
        for part in (self.schema, self.name):
            if not _IDENTIFIER_RE.match(part):
                raise ValueError(f"not a plain identifier: {part!r}")

    @property
    def relation(self) -> str:
        """The quoted, schema-qualified name, for SQL."""
        return f'"{self.schema}"."{self.name}"'


class Partitions(Protocol):
    """What the roller needs from the hot store, per time table.

    `old` lists the partitions lying wholly before `cutoff` (end <= cutoff; never a default
    partition), oldest first, after giving rows parked in a default partition for such
    ranges a partition of their own (unless `adopt` is false: a dry run changes nothing).
    `ensure` makes sure a partition for [start, end) exists, so that cold rows loaded back
    land in it. `drop` removes one in the caller's transaction, with the table locked."""

    async def old(
        self, conn: asyncpg.Connection, table: TimeTable, cutoff: dt.datetime, adopt: bool = True
    ) -> list[Partition]: ...

    async def ensure(self, conn: asyncpg.Connection, partition: Partition) -> None: ...

    async def drop(self, conn: asyncpg.Connection, partition: Partition) -> None: ...


class NativePartitions:
    def __init__(self, schema: str, interval_days: int) -> None:
        self.schema = schema
        self.interval_days = interval_days

    async def old(
        self, conn: asyncpg.Connection, table: TimeTable, cutoff: dt.datetime, adopt: bool = True
    ) -> list[Partition]:
        if adopt:
            await self._adopt_default_rows(conn, table, cutoff)
        rows = await conn.fetch(
            "SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) FROM pg_inherits i "
            "JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = to_regclass($1) ORDER BY 1",
            f"{self.schema}.{table.name}",
        )
        found = []
        for name, bound in rows:
            match = _BOUND_RE.match(bound)  # the default partition and TO (MAXVALUE) do not match
            if match is None:
                continue
            start, end = (dt.datetime.fromisoformat(match[i]).astimezone(dt.UTC) for i in (1, 2))
            if end <= cutoff:
                found.append(Partition(table, name, start, end, self.schema))
        return sorted(found, key=lambda p: p.start)

    async def _adopt_default_rows(
        self, conn: asyncpg.Connection, table: TimeTable, cutoff: dt.datetime
    ) -> None:
        """Late rows for a rolled range sit in the default partition when the daemon that
        wrote them had seen that partition before it was dropped: give them one again."""
        col = table.time_column
        times = await conn.fetch(
            f"SELECT DISTINCT date_bin($1, {col}, 'epoch') FROM {self.schema}.{table.name}_default "  # noqa: S608
            f"WHERE {col} < $2",
            dt.timedelta(days=self.interval_days),
            cutoff,
        )
        partitioner = NativePartitioner(self.schema, self.interval_days, 0)
        await partitioner.ensure(conn, table, [r[0] for r in times])

    async def ensure(self, conn: asyncpg.Connection, partition: Partition) -> None:
        exists = await conn.fetchval("SELECT to_regclass($1)", partition.relation)
        if exists is None:
            await NativePartitioner(self.schema, self.interval_days, 0).ensure(
                conn, partition.table, [partition.start]
            )

    async def drop(self, conn: asyncpg.Connection, partition: Partition) -> None:
        await conn.execute(f"DROP TABLE {partition.relation}")


async def columns(conn: asyncpg.Connection, schema: str, table: str) -> tuple[Column, ...]:
    """The table's data columns in table order, with their cold kinds."""
    rows = await conn.fetch(
        "SELECT column_name, data_type FROM information_schema.columns "
        "WHERE table_schema = $1 AND table_name = $2 ORDER BY ordinal_position",
        schema,
        table,
    )
    return tuple(Column(name, _KINDS[kind]) for name, kind in rows if name not in _SKIPPED)


async def fingerprint(conn: asyncpg.Connection, partition: Partition) -> str:
    """`"<rows>:<sum>"`: the partition's row count and the sum of a 64-bit hash of each row
    version's identity (its `ctid`, seeded with its `xmin`), as PostgreSQL sees them in the
    caller's snapshot. Taken with the read and again under the lock before the drop: equal
    values mean no row was inserted, updated or deleted in between.

    Why the identity suffices, without hashing the values (a tenth of the cost, no row is
    rendered as text): PostgreSQL never changes a row in place. An INSERT, and an UPDATE
    (also `ON CONFLICT DO UPDATE`, even one that only raises a version column), writes a new
    row version whose `xmin` is its writer's transaction id; a writer that commits after the
    read snapshot is not one whose rows that snapshot sees, so the new version's (ctid, xmin)
    pair is one the read did not count. A DELETE (or the old side of an UPDATE) removes a pair
    the read counted. Pairs are unique among live versions (a ctid holds one version at a
    time), so any committed change alters the set of pairs, and then the sum, except by a
    64-bit hash collision. An `ON CONFLICT … DO UPDATE … WHERE` that matches nothing, and
    `SELECT … FOR UPDATE`, write no version and change no data. Freezing keeps the `xmin`
    that the system column shows (PostgreSQL ≥ 9.4 sets a flag bit instead of overwriting it;
    see "Routine Vacuuming" in its documentation), and pruning moves no live version's ctid.
    What rewrites the table without changing data (VACUUM FULL, CLUSTER) changes every ctid:
    a false alarm, so the partition is kept and the next round rolls it. A 32-bit `xmin` can
    repeat only after about 4 billion transactions, never within one roll.

    A TimescaleDB chunk (`row_identity` false) may be compressed, and then shows no `ctid` or
    `xmin`: its rows are fingerprinted by a hash of their text, the values themselves, which
    any insert, update or delete changes just as well, at ten times the cost."""
    row_hash = (
        "hashtidextended(ctid, xmin::text::bigint)"
        if partition.row_identity
        else "hashtextextended(t::text, 0)::numeric"  # the row's values: compressed rows have no ctid
    )
    value: str = await conn.fetchval(
        f"SELECT count(*)::text || ':' || coalesce(sum({row_hash}), 0)::text FROM {partition.relation} t"  # noqa: S608
    )
    return value


def _select(cols: Sequence[Column]) -> str:
    """The read's select list: each column as PostgreSQL prints it (times in ISO 8601 in UTC
    with microseconds, decimals positional: both exact), uuids as text."""
    return ", ".join(f'"{c.name}"::text' if c.kind == "text" else f'"{c.name}"' for c in cols)


async def read(
    conn: asyncpg.Connection, partition: Partition, cols: Sequence[Column]
) -> tuple[pa.Table, str]:
    """The partition's rows as Arrow (the cold schema; decimals and times parsed from their
    text, never through float) and their fingerprint, both from one snapshot. A worker thread
    parses COPY's output while PostgreSQL still sends it. Raises what asyncpg raises, or
    pyarrow.ArrowInvalid for text the cold schema cannot hold."""
    stream = _Stream()
    parsed = asyncio.ensure_future(asyncio.to_thread(_parse, stream, cols))
    try:
        async with conn.transaction(isolation="repeatable_read", readonly=True):
            # the text _parse expects, whatever the connection's settings
            await conn.execute("SET LOCAL timezone = 'UTC'; SET LOCAL datestyle = 'ISO'")
            query = f"SELECT {_select(cols)} FROM {partition.relation}"  # noqa: S608
            await conn.copy_from_query(query, output=stream.put, format="csv")
            stream.end()  # the parser finishes while PostgreSQL fingerprints the same snapshot
            seen = await fingerprint(conn, partition)
    except BaseException:
        stream.end()
        await asyncio.gather(parsed, return_exceptions=True)  # ends on the truncated text: moot
        raise
    return await parsed, seen


class _Stream(io.RawIOBase):
    """COPY's output chunks as a file that a parser thread reads while they arrive: `put`
    (on the event loop) never blocks, `readinto` (in the thread) waits for the next chunk,
    and returns 0 (end of file) after `end`."""

    def __init__(self) -> None:
        super().__init__()
        self._chunks: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()
        self._left = memoryview(b"")
        self._ended = False

    async def put(self, chunk: bytes) -> None:
        self._chunks.put(chunk)

    def end(self) -> None:
        """No more chunks; a second call changes nothing."""
        self._chunks.put(None)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while not self._left:
            if self._ended:
                return 0
            chunk = self._chunks.get()
            self._ended = chunk is None
            self._left = memoryview(chunk or b"")
        n = min(len(buffer), len(self._left))
        buffer[:n] = self._left[:n]
        self._left = self._left[n:]
        return n


def _parse(data: bytes | io.RawIOBase, cols: Sequence[Column]) -> pa.Table:
    """COPY's CSV (as `read` asks for it), bytes or a file, as Arrow in the cold schema."""
    schema = arrow_schema(cols)
    source = io.BufferedReader(data, 1 << 20) if isinstance(data, io.RawIOBase) else io.BytesIO(data)
    if not (source.peek(1) if isinstance(source, io.BufferedReader) else data):
        return schema.empty_table()
    return pgcsv.read(source, schema.names, schema)


async def _copy(conn: asyncpg.Connection, table: str, data: pa.Table, names: Sequence[str]) -> None:
    """COPY the columns `names` of `data` into `table` as CSV that Arrow writes, COPY_ROWS rows
    at a time (each in a worker thread): no Python object per value and one chunk of text at a
    time, however many rows a merge brings back; decimals lose the cold scale's padding
    (`pgcsv.canonical_text`)."""

    async def chunks() -> AsyncIterator[bytes]:
        for batch in data.select(list(names)).to_batches(max_chunksize=COPY_ROWS):
            yield await asyncio.to_thread(pgcsv.write, pa.Table.from_batches([batch]))

    await conn.copy_to_table(table, source=chunks(), columns=list(names), format="csv")


async def reload(conn: asyncpg.Connection, schema: str, table: TimeTable, cold: pa.Table) -> None:
    """Write cold rows back into the hot table under the ingest rules, with each row's stored
    version: klines, fills, trades, balances and signals through their writers' statements
    (a closed candle is never replaced by an open one; the first-published fill or trade
    wins), order events deduplicated by their key and stored hash. One transaction; the
    partition must exist."""
    if cold.num_rows == 0:
        return
    kind = _KIND_OF_TABLE.get(table.name)
    async with conn.transaction():
        if kind is None:
            await _reload_events(conn, schema, cold)
            return
        w = writers.build_writers(schema)[kind]
        await writers.create_staging(conn, schema, {kind: w})
        await _copy(conn, w.stage, cold, w.columns)
        for _, sql in w.statements:
            await conn.execute(sql)


async def _reload_events(conn: asyncpg.Connection, schema: str, cold: pa.Table) -> None:
    names = cold.schema.names
    cols = ", ".join(f'"{n}"' for n in names)
    await conn.execute(
        # with its defaults: the cold rows carry no ingested_at, which is NOT NULL DEFAULT now()
        f"CREATE TEMP TABLE IF NOT EXISTS tv_reload_events (LIKE {schema}.order_events INCLUDING DEFAULTS) "
        "ON COMMIT DELETE ROWS"
    )
    await _copy(conn, "tv_reload_events", cold, names)
    await conn.execute(
        f"INSERT INTO {schema}.order_events ({cols}) SELECT {cols} FROM tv_reload_events "  # noqa: S608
        "ON CONFLICT (exchange, order_id, updated_at, event_hash) DO NOTHING"
    )
