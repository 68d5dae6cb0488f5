"""Roll benchmark: how close does the roller get to reading a partition and writing Parquet?

    python bench/roll.py [--days D] [--symbols S] [--busy-days E] [--ingest-messages N]
                         [--dsn DSN] [--redis-url URL] [--seed N]

One run, in order (bench/README.md explains every number):
1. load D + E days x S symbols of 1m klines (default 30 x 200 = 8,640,000 rows, plus E = 1
   day) with text COPY into the klines table of a migrated scratch database, one native
   1-day partition per day;
2. limit, per partition of the first D days: `COPY (SELECT … FROM <partition>) TO STDOUT`
   (CSV, the columns the roller reads) timed, then the same rows as Arrow (parsed outside the
   timing) written with a plain `pyarrow.parquet.write_table` (zstd) timed; the limit is the
   sum of the two;
3. tickvault: `tickvault.archive.roller.roll` of those D partitions (read, sort, Iceberg
   overwrite, read-back verify, archive_log row, drop), timed as a whole;
4. the daemon's ingest rate through Redis Streams, alone and while its own roller rolls the
   E partitions left (bench/roll_ingest.py; N messages each, default 500,000; N = 0 skips);
   then the cold table's row count is checked against what was loaded.

Everything it creates — the scratch database `tickvault_bench_<token>`, its streams, and a
temporary directory for the Parquet files and the cold tier — is removed at the end, also
after an error or Ctrl-C.
"""

from __future__ import annotations

import argparse
import datetime as dt
import io
import random
import secrets
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pyarrow.parquet as pq
import redis.asyncio as aioredis

import runner
from roll_ingest import Ingest, IngestRun
from runner import BenchError
from tickvault.archive import hot, roller, table
from tickvault.errors import TickvaultError
from tickvault.records import RECORD_TYPES
from tickvault.settings import Settings, load_settings
from tickvault.store import migrate, partitions
from tickvault.store.schema import TIME_TABLES

SCHEMA: Final = "tickvault"
KLINES: Final = next(t for t in TIME_TABLES if t.name == "klines")
COLUMNS: Final = RECORD_TYPES["kline"].COLUMNS
MB: Final = 1_000_000


@dataclass
class Limit:
    copy_s: float = 0.0
    write_s: float = 0.0
    csv_bytes: int = 0
    parquet_bytes: int = 0

    @property
    def total_s(self) -> float:
        return self.copy_s + self.write_s


def _fixed(units: int, places: int) -> str:
    """An exact decimal string from an integer count of 10**-places."""
    return f"{units // 10**places}.{units % 10**places:0{places}d}"


def day_csv(day: dt.datetime, symbols: int, rng: random.Random) -> bytes:
    """One day of 1m klines for `symbols` symbols, as COPY text (tab-separated)."""
    out = io.StringIO()
    for s in range(symbols):
        symbol = f"S{s:03d}USDT"
        price_c = rng.randint(1_000, 10_000_000)  # cents
        for m in range(1440):
            at = day + dt.timedelta(minutes=m)
            close_c = max(1, price_c + rng.randint(-price_c // 100, price_c // 100))
            high_c = max(price_c, close_c) + rng.randint(0, price_c // 200)
            low_c = max(0, min(price_c, close_c) - rng.randint(0, price_c // 200))
            volume_m = rng.randint(1, 10_000_000)  # thousandths
            close_at = at + dt.timedelta(seconds=59.999)
            out.write(
                f"binance\t{symbol}\t1m\t{at.isoformat()}\t{close_at.isoformat()}\t"
                f"{_fixed(price_c, 2)}\t{_fixed(high_c, 2)}\t{_fixed(low_c, 2)}\t{_fixed(close_c, 2)}\t"
                f"{_fixed(volume_m, 3)}\t{_fixed(volume_m * close_c, 5)}\t{rng.randint(1, 5000)}\tt\n"
            )
            price_c = close_c
    return out.getvalue().encode()


async def load(conn: asyncpg.Connection, first_day: dt.datetime, days: int, symbols: int, seed: int) -> int:
    """COPY the klines in, one day (one partition) at a time; the rows loaded."""
    rng = random.Random(seed)
    partitioner = partitions.NativePartitioner(SCHEMA, 1, 0)
    started, rows = time.perf_counter(), 0
    for d in range(days):
        day = first_day + dt.timedelta(days=d)
        await partitioner.ensure(conn, KLINES, [day])
        data = day_csv(day, symbols, rng)
        await conn.copy_to_table("klines", schema_name=SCHEMA, source=io.BytesIO(data), columns=COLUMNS)
        rows += 1440 * symbols
    await conn.execute(f"VACUUM ANALYZE {SCHEMA}.klines")
    print(f"loaded {rows:,} klines in {days} partitions in {time.perf_counter() - started:.1f}s")
    return rows


async def limit(conn: asyncpg.Connection, parts: Sequence[hot.Partition], scratch: Path) -> Limit:
    """COPY out each partition, then a plain pyarrow Parquet write of its rows (zstd)."""
    cols = await hot.columns(conn, SCHEMA, "klines")
    out = Limit()
    for p in parts:
        chunks: list[bytes] = []

        async def sink(chunk: bytes, chunks: list[bytes] = chunks) -> None:
            chunks.append(chunk)

        started = time.perf_counter()
        await conn.copy_from_query(
            # the very query the roller runs (hot.read), without its fingerprint
            f"SELECT {hot._select(cols)} FROM {SCHEMA}.{p.name}",  # noqa: S608
            output=sink,
            format="csv",
        )
        out.copy_s += time.perf_counter() - started
        data = b"".join(chunks)
        out.csv_bytes += len(data)
        rows = hot._parse(data, cols)  # outside the timing: the limit is the copy and the write
        path = scratch / f"{p.name}.parquet"
        started = time.perf_counter()
        pq.write_table(rows, path, compression="zstd")
        out.write_s += time.perf_counter() - started
        out.parquet_bytes += path.stat().st_size
    return out


def print_results(
    n_rows: int,
    n_parts: int,
    lim: Limit,
    roll_s: float,
    outcomes: list[roller.Outcome],
    ingested: tuple[IngestRun, IngestRun] | None,
) -> None:
    cold_bytes = sum(o.bytes for o in outcomes)
    limit_rows_s, roll_rows_s = n_rows / lim.total_s, n_rows / roll_s
    mb = lim.csv_bytes / MB
    lines = [
        ("klines, partitions", f"{n_rows:,} rows in {n_parts} partitions ({mb:,.0f} MB as CSV)"),
        ("limit: COPY … TO STDOUT", f"{lim.copy_s:.1f}s ({n_rows / lim.copy_s:,.0f} rows/s)"),
        ("limit: pyarrow Parquet write (zstd)",
         f"{lim.write_s:.1f}s ({n_rows / lim.write_s:,.0f} rows/s, {lim.parquet_bytes / MB:,.1f} MB)"),
        ("LIMIT: copy + write",
         f"{lim.total_s:.1f}s = {limit_rows_s:,.0f} rows/s, {mb / lim.total_s:,.1f} MB/s"),
        ("TICKVAULT ROLL (read, sort, overwrite, verify, drop)",
         f"{roll_s:.1f}s = {roll_rows_s:,.0f} rows/s, {mb / roll_s:,.1f} MB/s "
         f"= {roll_rows_s / limit_rows_s:.2f} x limit (target >= 0.5)"),
        ("roll: cold files", f"{sum(o.files for o in outcomes)} files, {cold_bytes / MB:,.1f} MB"),
    ]  # fmt: skip
    if ingested is not None:
        alone, busy = ingested
        bound = " (backlog drained before the roll ended: a lower bound)" if busy.drained_early else ""
        lines += [
            ("daemon ingest, alone",
             f"{alone.rows_s:,.0f} rows/s ({alone.rows:,} klines in {alone.window_s:.1f}s)"),
            ("daemon ingest, while its roller runs",
             f"{busy.rows_s:,.0f} rows/s = {busy.rows_s / alone.rows_s:.2f} x alone "
             f"({busy.rows:,} klines in {busy.window_s:.1f}s){bound}"),
            ("the daemon's roll", f"done {busy.roll_done_s:.1f}s after the daemon was started"),
        ]  # fmt: skip
    width = max(len(k) for k, _ in lines)
    print("\nresults (MB/s: the partitions' CSV text over the time)")
    for key, value in lines:
        print(f"  {key:<{width}}  {value}")


def scratch_settings(dsn: str, database: str, scratch: Path) -> Settings:
    """Settings for the scratch database `database` on the server of `dsn` (native 1-day
    partitions, no TimescaleDB) with the cold tier under `scratch`/cold."""
    return load_settings(
        postgres={
            "dsn": urlunsplit(urlsplit(dsn)._replace(path="/" + database)), "schema": SCHEMA,
            "create_database": True, "timescale": "off", "partition_interval_days": 1,
            "partitions_ahead": 0,
        },
        archive={"root": str(scratch / "cold")},
        log={"level": "WARNING"},
    )  # fmt: skip


@dataclass
class Bench:
    args: argparse.Namespace
    token: str = field(default_factory=lambda: secrets.token_hex(4))
    database: str | None = None  # set once we may have created it
    scratch: Path | None = None
    ingest: Ingest | None = None

    async def main(self) -> None:
        a = self.args
        name = f"tickvault_bench_{self.token}"
        self.scratch = Path(tempfile.mkdtemp(prefix=f"{name}."))
        settings = scratch_settings(a.dsn, name, self.scratch)
        self.database = name  # from here on, cleanup drops it
        print(f"scratch database {name}, {a.days} + {a.busy_days} days x {a.symbols} symbols of 1m klines")
        await migrate.upgrade(settings.postgres)
        today = dt.datetime.now(dt.UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        first_day = today - dt.timedelta(days=a.days + a.busy_days + 2)
        conn = await asyncpg.connect(settings.postgres.dsn.get_secret_value())
        try:
            await load(conn, first_day, a.days + a.busy_days, a.symbols, a.seed)
            parts = await hot.NativePartitions(SCHEMA, 1).old(
                conn, KLINES, first_day + dt.timedelta(days=a.days), adopt=False
            )
            lim = await limit(conn, parts, self.scratch)
        finally:
            await conn.close()
        outcomes, roll_s = await self.roll(settings, first_day + dt.timedelta(days=a.days))
        ingested = await self.ingest_phases(settings) if a.ingest_messages else None
        await self.check_cold(settings, a.days + (a.busy_days if ingested else 0))
        print_results(a.days * a.symbols * 1440, len(parts), lim, roll_s, outcomes, ingested)

    async def roll(self, settings: Settings, now: dt.datetime) -> tuple[list[roller.Outcome], float]:
        """Roll the partitions ending by `now` (the first --days), timed."""
        started = time.perf_counter()
        outcomes = await roller.roll(settings, older_than_s=0, tables=["klines"], now=now)
        roll_s = time.perf_counter() - started
        if outcomes is None or {o.status for o in outcomes} != {"rolled"} or len(outcomes) != self.args.days:
            raise BenchError(f"the roll did not roll every partition: {outcomes}")
        return outcomes, roll_s

    async def ingest_phases(self, settings: Settings) -> tuple[IngestRun, IngestRun]:
        a = self.args
        self.ingest = Ingest(settings.postgres.dsn.get_secret_value(), a.redis_url, self.token, SCHEMA)
        print(f"daemon ingest of {a.ingest_messages:,} klines, alone")
        alone = await self.ingest.alone(a.ingest_messages, a.seed)
        print(f"daemon ingest of {a.ingest_messages:,} klines while its roller rolls {a.busy_days} days")
        busy = await self.ingest.while_rolling(
            a.ingest_messages, a.seed, settings.archive.root, rolls=a.busy_days
        )
        return alone, busy

    async def check_cold(self, settings: Settings, days: int) -> None:
        catalog = table.open_catalog(settings)
        try:
            cold = catalog.load_table(f"{SCHEMA}.klines").scan().to_arrow().num_rows
        finally:
            table.close_catalog(catalog)
        expected = days * self.args.symbols * 1440
        if cold != expected:
            raise BenchError(f"the cold table holds {cold} rows, {expected} were rolled")

    async def cleanup(self) -> None:
        if self.ingest is not None:
            await self.ingest.cleanup()
        if self.scratch is not None:
            shutil.rmtree(self.scratch, ignore_errors=True)
        if not self.database:
            return
        if await runner.drop_database(self.args.dsn, self.database):
            print(f"cleaned up: database {self.database}, {self.scratch}")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--days", type=int, default=30, help="days of klines, one partition each (default 30)")
    p.add_argument("--symbols", type=int, default=200, help="symbols, 1440 klines a day each (default 200)")
    p.add_argument(
        "--dsn", default="postgresql://postgres@127.0.0.1:5432/postgres",
        help="PostgreSQL server; its database is only used to create and drop the scratch database",
    )  # fmt: skip
    p.add_argument(
        "--busy-days",
        type=int,
        default=1,
        help="days loaded after --days, rolled by the daemon's roller while it ingests (default 1)",
    )
    p.add_argument(
        "--ingest-messages",
        type=int,
        default=500_000,
        help="klines the daemon ingests alone, then again while rolling (default 500,000; 0 skips)",
    )
    p.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    p.add_argument("--seed", type=int, default=7)
    args = p.parse_args(argv)
    if args.days < 1 or args.symbols < 1 or args.busy_days < 1 or args.ingest_messages < 0:
        p.error("--days, --symbols and --busy-days must be at least 1, --ingest-messages at least 0")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    failures = (TickvaultError, asyncpg.PostgresError, aioredis.RedisError, OSError)
    return runner.run(Bench(parse_args(argv)), failures)


if __name__ == "__main__":
    sys.exit(main())
