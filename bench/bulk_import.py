"""Import benchmark: how close does `tickvault import` get to PostgreSQL's COPY limit on
Binance kline dumps?

    python bench/bulk_import.py [--months 12] [--symbols 1]

One run, in order (bench/README.md explains every number):
1. write --months monthly 1m kline dumps of 2024 per symbol as data.binance.vision serves
   them (tests/binance_dumps.py: zipped but for March and August, a header in the first
   half, microseconds from July on);
2. parse only: the importer's reader over every file (unzip, split, validate, COPY text),
   no database;
3. limit: raw asyncpg `copy_records_to_table` of the same rows, prebuilt as tuples outside
   the timing, into the migrated klines table (its partitions made beforehand), in batches
   of --batch-rows per transaction, as bench/ingest.py measures it; then TRUNCATE;
4. import: `tickvault import --quiet FILES` in this process (the command's own `run`):
   first into the empty table, then again (every row already stored: the upsert path), then
   `--only-missing` after deleting one week.
Everything it creates — the scratch database `tickvault_bench_<token>` and the files — is
removed at the end, also after an error or Ctrl-C.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import io
import secrets
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg

import runner
from runner import BenchError

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/binance_dumps.py
from tests.binance_dumps import year_of_dumps

from tickvault.cli import _parser
from tickvault.errors import TickvaultError
from tickvault.importer import binance, command
from tickvault.importer.files import lines
from tickvault.records import RECORD_TYPES
from tickvault.settings import Settings, load_settings
from tickvault.store import migrate, partitions
from tickvault.store.schema import TIME_TABLES
from tickvault.timestamps import parse_epoch_ms_or_us

SCHEMA = "bench"
KLINES = TIME_TABLES[0]


def scratch_settings(dsn: str, database: str) -> Settings:
    return load_settings(
        postgres={
            "dsn": urlunsplit(urlsplit(dsn)._replace(path="/" + database)), "schema": SCHEMA,
            "create_database": True,
        },
        state={"cache": False},
        log={"level": "WARNING"},
    )  # fmt: skip


def tuples(files: Sequence[Path], symbol_of: dict[Path, str]) -> list[tuple[Any, ...]]:
    """The rows the import will store, as the tuples asyncpg's binary COPY takes."""
    out = []
    for path in files:
        for _, raw in lines(path):
            f = raw.decode().split(",")
            if not f[0].isdigit():
                continue
            opened, closes = parse_epoch_ms_or_us(int(f[0])), parse_epoch_ms_or_us(int(f[6]))
            out.append((
                "binance", symbol_of[path], "1m", opened, closes, *map(Decimal, f[1:6]), Decimal(f[7]),
                int(f[8]), True,
            ))  # fmt: skip
    return out


def _chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


@dataclass
class Bench:
    args: argparse.Namespace
    token: str = field(default_factory=lambda: secrets.token_hex(4))
    database: str | None = None
    scratch: Path | None = None
    results: list[tuple[str, int, float]] = field(default_factory=list)  # (phase, rows, seconds)

    async def main(self) -> None:
        a = self.args
        name = f"tickvault_bench_{self.token}"
        self.scratch = Path(tempfile.mkdtemp(prefix=f"{name}."))
        settings = scratch_settings(a.dsn, name)
        self.database = name
        files, symbol_of = self.write_files()
        rows = tuples(files, symbol_of)
        mb = sum(p.stat().st_size for p in files) / 1e6
        print(f"scratch database {name}: {len(files)} files ({mb:.1f} MB), {len(rows):,} klines")
        await migrate.upgrade(settings.postgres)
        self.parse_only(files)
        await self.limit(settings, rows)
        await self.imports(settings, files, len(rows))
        self.report()

    def write_files(self) -> tuple[list[Path], dict[Path, str]]:
        assert self.scratch is not None
        files, symbol_of = [], {}
        for i in range(self.args.symbols):
            symbol = f"S{i:02d}USDT" if self.args.symbols > 1 else "BTCUSDT"
            for dump in year_of_dumps(self.scratch, symbol, 2024)[: self.args.months]:
                files.append(dump.path)
                symbol_of[dump.path] = symbol
        return files, symbol_of

    def parse_only(self, files: Sequence[Path]) -> None:
        started, n = time.perf_counter(), 0
        for path in files:
            series = binance.series_of(path, "binance", "binance", None, None)
            for chunk in binance.chunks(path, series, command.CHUNK_ROWS, 0):
                n += len(chunk.items)
        self.results.append(("parse only (reader, no database)", n, time.perf_counter() - started))

    async def limit(self, settings: Settings, rows: list[tuple[Any, ...]]) -> None:
        conn = await asyncpg.connect(settings.postgres.dsn.get_secret_value())
        try:
            pg = settings.postgres
            parts = await partitions.detect(conn, SCHEMA, pg.partition_interval_days, pg.partitions_ahead)
            await parts.ensure(conn, KLINES, {r[3] for r in rows})
            columns = RECORD_TYPES["kline"].COLUMNS
            started = time.perf_counter()
            for chunk in _chunks(rows, self.args.batch_rows):
                async with conn.transaction():
                    await conn.copy_records_to_table(
                        "klines", schema_name=SCHEMA, records=chunk, columns=columns
                    )
            self.results.append(
                ("LIMIT: raw COPY of prebuilt tuples", len(rows), time.perf_counter() - started)
            )
            if await conn.fetchval(f"SELECT count(*) FROM {SCHEMA}.klines") != len(rows):  # noqa: S608
                raise BenchError("the raw COPY did not store every row")
            await conn.execute(f"TRUNCATE {SCHEMA}.klines")
        finally:
            await conn.close()

    async def imports(self, settings: Settings, files: Sequence[Path], total: int) -> None:
        paths = [str(p) for p in files]
        base = ["import", "--quiet", "--batch-rows", str(self.args.batch_rows)]
        for phase, extra, expect in (
            ("tickvault import, empty table", [], total),
            ("tickvault import again (all stored)", [], 0),
            (
                "tickvault import --only-missing (a week deleted)",
                ["--only-missing"],
                7 * 1440 * self.args.symbols,
            ),
        ):
            if extra:
                await self._delete_week(settings)
            args = _parser().parse_args([*base, *extra, *paths])
            out = io.StringIO()
            started = time.perf_counter()
            with contextlib.redirect_stdout(out):
                await command.run(settings, args)
            elapsed_s = time.perf_counter() - started
            stored = int(out.getvalue().split(" read: ")[1].split(" stored")[0])
            if stored != expect:
                raise BenchError(f"{phase}: stored {stored} rows, expected {expect}: {out.getvalue()}")
            self.results.append((phase, total, elapsed_s))

    async def _delete_week(self, settings: Settings) -> None:
        conn = await asyncpg.connect(settings.postgres.dsn.get_secret_value())
        try:
            start = dt.datetime(2024, 1, 8, tzinfo=dt.UTC)
            await conn.execute(
                f"DELETE FROM {SCHEMA}.klines WHERE open_time >= $1 AND open_time < $2",  # noqa: S608
                start, start + dt.timedelta(days=7),
            )  # fmt: skip
        finally:
            await conn.close()

    def report(self) -> None:
        limit = next(n / s for phase, n, s in self.results if phase.startswith("LIMIT"))
        for phase, n, s in self.results:
            rate = n / s
            print(f"  {phase:<52} {s:6.1f}s  {rate:>10,.0f} rows/s = {rate / limit:.2f} x limit")

    async def cleanup(self) -> None:
        if self.scratch is not None:
            shutil.rmtree(self.scratch, ignore_errors=True)
        if not self.database:
            return
        if await runner.drop_database(self.args.dsn, self.database):
            print(f"cleaned up: database {self.database}, {self.scratch}")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    p.add_argument("--months", type=int, default=12, help="monthly dumps of 2024 per symbol (default 12)")
    p.add_argument("--symbols", type=int, default=1, help="symbols, a year of 1m klines each (default 1)")
    p.add_argument(
        "--batch-rows", type=int, default=command.BATCH_ROWS, help="rows per write and per limit transaction"
    )
    p.add_argument(
        "--dsn", default="postgresql://postgres@127.0.0.1:5432/postgres",
        help="PostgreSQL server; its database is only used to create and drop the scratch database",
    )  # fmt: skip
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    return runner.run(Bench(parse_args(argv)), (TickvaultError, asyncpg.PostgresError, OSError))


if __name__ == "__main__":
    sys.exit(main())
