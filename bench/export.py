"""Export benchmark: does `tickvault export` of a million klines run in bounded memory, and
how fast, against a direct query of the same rows?

    python bench/export.py [--rows 1000000] [--symbols 4] [--formats csv,jsonl,parquet,xlsx]

One run: --rows 1m klines (--symbols series, consecutive minutes) are COPYed into the
migrated klines table of a scratch database `tickvault_bench_<token>`; then each command
below runs in a process of its own, timed, its peak resident memory
recorded (VmHWM, polled every 20 ms until it exits):
- `export` of an empty range: the floor (Python, pyarrow, the driver, the CLI);
- `tickvault export klines … --format F` for each format;
- the direct reads of the same rows: `Vault.klines(…)` in one call (every row in memory) and
  `tickvault query klines … --format csv --output` (which pages, as export does).
Checked: the parquet export equals `Vault.klines` of the same rows (`Table.equals`), the CSV
export is byte for byte the CSV `tickvault query` writes, the JSON Lines export has a line
per row. The scratch database and files are removed at the end, also after an error or Ctrl-C.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pyarrow as pa
import pyarrow.parquet as pq

import runner
from runner import BenchError
from tickvault.errors import TickvaultError
from tickvault.records import RECORD_TYPES
from tickvault.settings import Settings, load_settings
from tickvault.store import migrate, partitions
from tickvault.store.schema import TIME_TABLES
from tickvault.vault import Vault

SCHEMA = "bench"
T0 = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)
BATCH_ROWS = 50_000
DIRECT = """
import asyncio, sys
from tickvault.vault import Vault
async def main():
    async with Vault.connect() as v:
        t = await v.klines("binance", interval="1m", symbols=sys.argv[1].split(","))
    print(t.num_rows)
asyncio.run(main())
"""


def klines(n: int, symbols: Sequence[str]) -> list[tuple[Any, ...]]:
    """n closed 1m candles round-robin over `symbols`, prices with 2 to 8 decimals."""
    out = []
    for i in range(n):
        minute, symbol = divmod(i, len(symbols))
        opened = T0 + dt.timedelta(minutes=minute)
        price = Decimal(30_000 + i % 9_973) + Decimal(i % 997) / 100
        out.append((
            "binance", symbols[symbol], "1m", opened, opened + dt.timedelta(seconds=59.999), price,
            price + Decimal("12.5"), price - Decimal("7.25"), price + Decimal("0.01"),
            Decimal(i % 10_007) / 1000, Decimal(i % 1_000_003) / 10**8, i % 500, True,
        ))  # fmt: skip
    return out


def scratch_settings(dsn: str, database: str) -> Settings:
    return load_settings(
        postgres={
            "dsn": urlunsplit(urlsplit(dsn)._replace(path="/" + database)), "schema": SCHEMA,
            "create_database": True,
        },
        state={"cache": False},
        log={"level": "WARNING"},
    )  # fmt: skip


def high_water_kb(pid: int) -> int:
    """VmHWM of a running process: its peak resident memory since its exec, in KiB (wait4's
    ru_maxrss would carry over the peak of the bench process that forked it); 0 once gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            return next((int(line.split()[1]) for line in f if line.startswith("VmHWM:")), 0)
    except OSError:
        return 0


def check_files(scratch: Path, formats: list[str], direct: pa.Table) -> None:
    """The parquet export equals the direct read, the csv export is query's csv, the jsonl
    export has a line per row."""
    if "parquet" in formats and not pq.read_table(scratch / "x.parquet").equals(direct):
        raise BenchError("the parquet export differs from Vault.klines")
    if "csv" in formats and (scratch / "x.csv").read_bytes() != (scratch / "q.csv").read_bytes():
        raise BenchError("the csv export differs from tickvault query's csv")
    if "jsonl" in formats:
        with (scratch / "x.jsonl").open("rb") as f:
            lines = sum(1 for _ in f)
        if lines != direct.num_rows:
            raise BenchError(f"the jsonl export has {lines} lines, expected {direct.num_rows}")


@dataclass
class Figure:
    what: str
    rows: int
    seconds: float
    peak_mb: float


@dataclass
class Bench:
    args: argparse.Namespace
    token: str = field(default_factory=lambda: secrets.token_hex(4))
    database: str | None = None
    scratch: Path | None = None
    figures: list[Figure] = field(default_factory=list)

    async def main(self) -> None:
        a = self.args
        name = f"tickvault_bench_{self.token}"
        self.scratch = Path(tempfile.mkdtemp(prefix=f"{name}."))
        settings = scratch_settings(a.dsn, name)
        self.database = name
        symbols = [f"S{i:02d}USDT" for i in range(a.symbols)]
        await migrate.upgrade(settings.postgres)
        await self.load(settings, klines(a.rows, symbols))
        print(f"scratch database {name}: {a.rows:,} klines over {len(symbols)} symbols")
        env = self.environ(settings)
        series = ["klines", "--exchange", "binance", "--symbols", ",".join(symbols), "--interval", "1m"]
        empty = ["--end", "2000-01-01T00:00:00Z"]
        self.run("export, empty range (floor)", 0, env, "export", *series, *empty, "-o", self.path("e.csv"))
        for fmt in a.formats.split(","):
            self.run(f"export --format {fmt}", a.rows, env, "export", *series, "-o", self.path(f"x.{fmt}"))
        self.run("query --format csv --output", a.rows, env, "query", *series, "--format", "csv",
                 "--output", self.path("q.csv"))  # fmt: skip
        self.run("Vault.klines (one read)", a.rows, env, "-c", DIRECT, ",".join(symbols), module=False)
        await self.check(settings, symbols)
        self.report()

    async def load(self, settings: Settings, rows: list[tuple[Any, ...]]) -> None:
        conn = await asyncpg.connect(settings.postgres.dsn.get_secret_value())
        try:
            pg = settings.postgres
            parts = await partitions.detect(conn, SCHEMA, pg.partition_interval_days, pg.partitions_ahead)
            await parts.ensure(conn, TIME_TABLES[0], {r[3] for r in rows})
            for start in range(0, len(rows), BATCH_ROWS):
                await conn.copy_records_to_table(
                    "klines", schema_name=SCHEMA, records=rows[start : start + BATCH_ROWS],
                    columns=RECORD_TYPES["kline"].COLUMNS,
                )  # fmt: skip
            await conn.execute(f"ANALYZE {SCHEMA}.klines")
        finally:
            await conn.close()

    def environ(self, settings: Settings) -> dict[str, str]:
        base = {k: v for k, v in os.environ.items() if not k.startswith("TICKVAULT_")}
        return base | {
            "TICKVAULT_POSTGRES__DSN": settings.postgres.dsn.get_secret_value(),
            "TICKVAULT_POSTGRES__SCHEMA": SCHEMA,
            "TICKVAULT_STATE__CACHE": "false",
        }

    def path(self, name: str) -> str:
        assert self.scratch is not None
        return str(self.scratch / name)

    def run(self, what: str, rows: int, env: dict[str, str], *args: str, module: bool = True) -> None:
        """Run `python -m tickvault ARGS` (or `python ARGS`); record its time and peak RSS."""
        command = [sys.executable, *(["-m", "tickvault"] if module else []), *args]
        started = time.perf_counter()
        proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        peak_kb = 0
        while proc.poll() is None:
            peak_kb = max(peak_kb, high_water_kb(proc.pid))
            time.sleep(0.02)
        elapsed_s = time.perf_counter() - started
        _, err = proc.communicate()
        if proc.returncode != 0:
            raise BenchError(f"{what}: exit {proc.returncode}: {err.decode().strip()[-500:]}")
        self.figures.append(Figure(what, rows, elapsed_s, peak_kb / 1024))

    async def check(self, settings: Settings, symbols: list[str]) -> None:
        async with Vault.connect(settings) as vault:
            direct = await vault.klines("binance", interval="1m", symbols=symbols)
        if direct.num_rows != self.args.rows:
            raise BenchError(f"the direct read gave {direct.num_rows} rows, expected {self.args.rows}")
        assert self.scratch is not None
        check_files(self.scratch, self.args.formats.split(","), direct)

    def report(self) -> None:
        floor = self.figures[0].peak_mb
        print(f"  {'command':<32} {'time':>7} {'rows/s':>10} {'peak RSS':>9} {'above floor':>12}")
        for f in self.figures:
            rate = f"{f.rows / f.seconds:>10,.0f}" if f.rows else f"{'':>10}"
            above = f.peak_mb - floor
            print(f"  {f.what:<32} {f.seconds:6.1f}s {rate} {f.peak_mb:7.0f}MB {above:10.0f}MB")

    async def cleanup(self) -> None:
        if self.scratch is not None:
            shutil.rmtree(self.scratch, ignore_errors=True)
        if self.database and await runner.drop_database(self.args.dsn, self.database):
            print(f"cleaned up: database {self.database}, {self.scratch}")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    p.add_argument("--rows", type=int, default=1_000_000, help="klines to export (default 1,000,000)")
    p.add_argument("--symbols", type=int, default=4, help="series they are spread over (default 4)")
    p.add_argument("--formats", default="csv,jsonl,parquet,xlsx", help="formats to export, comma-separated")
    p.add_argument(
        "--dsn", default="postgresql://postgres@127.0.0.1:5432/postgres",
        help="PostgreSQL server; its database is only used to create and drop the scratch database",
    )  # fmt: skip
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    return runner.run(Bench(parse_args(argv)), (TickvaultError, asyncpg.PostgresError, OSError))


if __name__ == "__main__":
    sys.exit(main())
