"""PostgreSQL hot store: pool, partitions, idempotent batch writes, dead letters.

`Store` is an async context manager. Its methods raise `StoreUnavailable` (retriable) when
the server cannot be reached and never retry on their own: the caller owns the retry policy.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from operator import attrgetter
from typing import Any, Final

import asyncpg

from tickvault.errors import RowRejected
from tickvault.rows import Item
from tickvault.settings import PostgresSettings
from tickvault.store import db, dead_letters, partitions, writers
from tickvault.store.dead_letters import DeadLetter
from tickvault.store.migrate import current_revision, head_revision
from tickvault.store.schema import KIND_TIME_TABLES

log = logging.getLogger(__name__)
# after a batch of a kind could not be inserted as new rows, its next batches go straight to
# the upsert: a stream of updates (open candles, redeliveries) would make every COPY fail
UPSERTS_AFTER_CONFLICT: Final = 20
_TIME: Final = attrgetter("time")

__all__ = ["DeadLetter", "Store", "WriteResult"]


@dataclass
class WriteResult:
    written: dict[str, int] = field(default_factory=dict)  # rows inserted or updated, per table
    # rows of the batch that inserted or updated nothing, per table: submitted minus written
    unchanged: dict[str, int] = field(default_factory=dict)
    rejected: list[tuple[int, str]] = field(default_factory=list)  # (index in batch, reason)
    # bot_state: the rows this batch made the latest of their bot (writers.LATEST_COLUMNS)
    latest: list[asyncpg.Record] = field(default_factory=list)

    @classmethod
    def committed(
        cls, submitted: int, written: dict[str, int], latest: list[asyncpg.Record] | None = None
    ) -> WriteResult:
        """The result of a committed batch of `submitted` records that wrote `written` rows per
        table: each table's unchanged rows are the rest, never below 0 (a counter cannot go
        down, and a table's statements could in principle write more rows than there were
        records)."""
        unchanged = {table: max(0, submitted - n) for table, n in written.items()}
        return cls(written=written, unchanged=unchanged, latest=latest or [])

    def add(self, other: WriteResult, offset: int) -> None:
        for table, n in other.written.items():
            self.written[table] = self.written.get(table, 0) + n
        for table, n in other.unchanged.items():
            self.unchanged[table] = self.unchanged.get(table, 0) + n
        self.rejected += [(i + offset, reason) for i, reason in other.rejected]
        self.latest += other.latest


class Store:
    def __init__(self, settings: PostgresSettings, *, writer: bool = False) -> None:
        self.settings = settings
        self.schema = settings.schema_name
        self._writer = writer
        self._writers = writers.build_writers(self.schema)
        self._pool: asyncpg.Pool | None = None
        self._partitioner: partitions.Partitioner = partitions.TimescalePartitioner(
            self.schema, settings.partition_interval_days
        )
        self._upserts_left = dict.fromkeys(self._writers, 0)  # per kind: batches not to `insert`

    async def __aenter__(self) -> Store:
        init = self._init_connection if self._writer else None
        self._pool = await db.create_pool(self.settings, init=init)
        if self._writer:
            self._partitioner = await self.run(self._detect_partitioner)
            await self.ensure_partitions_ahead()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close()

    @property
    def partitioning(self) -> str:
        """ "native" (range partitions made by the daemon) or "timescaledb" (hypertables)."""
        return "native" if isinstance(self._partitioner, partitions.NativePartitioner) else "timescaledb"

    @property
    def tables(self) -> list[str]:
        """The tables batch writes count rows of (tickvault_rows_*_total), sorted."""
        return sorted({t for w in self._writers.values() for t, _ in w.statements if t})

    @property
    def pool(self) -> asyncpg.Pool:
        if self._pool is None:
            raise RuntimeError("store is not open")
        return self._pool

    async def run(self, work: Any) -> Any:
        """`await work(conn)` on a pooled connection; driver errors become StoreError."""
        return await db.run(self.pool, work)

    async def _init_connection(self, conn: asyncpg.Connection) -> None:
        await writers.create_staging(conn, self.schema, self._writers)

    async def _detect_partitioner(self, conn: asyncpg.Connection) -> partitions.Partitioner:
        pg = self.settings
        return await partitions.detect(conn, self.schema, pg.partition_interval_days, pg.partitions_ahead)

    async def ensure_partitions_ahead(self) -> None:
        now = dt.datetime.now(dt.UTC)
        await self.run(lambda conn: self._partitioner.ensure_ahead(conn, now))

    async def fetch(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        rows: list[asyncpg.Record] = await self.run(lambda conn: conn.fetch(sql, *args))
        return rows

    async def ping(self) -> None:
        await self.run(lambda conn: conn.fetchval("SELECT 1"))

    async def migrations_current(self) -> tuple[bool, str | None, str]:
        current = await self.run(lambda conn: current_revision(conn, self.schema))
        head = head_revision()
        return current == head, current, head

    async def write(self, kind: str, items: Sequence[Item], versions: Sequence[str]) -> WriteResult:
        """Write a batch idempotently. `versions[i]` is the version of the message that
        `items[i]` came from (`sources.Message.version`). A row the database refuses is isolated
        by splitting the batch, so it never sinks its neighbours; it comes back in `rejected`
        with the reason."""
        writer = self._writers[kind]

        async def attempt(conn: asyncpg.Connection) -> tuple[dict[str, int], list[asyncpg.Record]]:
            if not self._writer:  # a reader's pool (Vault's direct writes): staging on demand
                await writers.create_staging(conn, self.schema, {kind: writer})
            if KIND_TIME_TABLES[kind]:
                times = list(map(_TIME, items))
                for table in KIND_TIME_TABLES[kind]:
                    await self._partitioner.ensure(conn, table, times)
            if writer.insert_first:
                if self._upserts_left[kind] == 0:
                    written = await writers.insert(conn, self.schema, writer, items, versions)  # type: ignore[arg-type]
                    if written is not None:
                        return written, []
                    self._upserts_left[kind] = UPSERTS_AFTER_CONFLICT
                self._upserts_left[kind] -= 1
            return await writers.write(conn, writer, items, versions)

        try:
            written, latest = await self.run(attempt)
            return WriteResult.committed(len(items), written, latest)
        except RowRejected as exc:
            if len(items) == 1:
                return WriteResult(rejected=[(0, exc.args[0])])
        middle = len(items) // 2
        result = await self.write(kind, items[:middle], versions[:middle])
        result.add(await self.write(kind, items[middle:], versions[middle:]), middle)
        return result

    async def write_dead_letters(self, letters: Sequence[DeadLetter]) -> int:
        count: int = await self.run(lambda conn: dead_letters.insert(conn, self.schema, letters))
        return count

    async def dead_letters(
        self, *, ids: Sequence[int] = (), include_replayed: bool = False, limit: int = 100
    ) -> list[dead_letters.StoredDeadLetter]:
        rows: list[dead_letters.StoredDeadLetter] = await self.run(
            lambda conn: dead_letters.fetch(
                conn, self.schema, ids=ids, include_replayed=include_replayed, limit=limit
            )
        )
        return rows

    async def mark_replayed(self, ids: Sequence[int]) -> None:
        await self.run(lambda conn: dead_letters.mark_replayed(conn, self.schema, ids))
