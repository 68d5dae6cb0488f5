"""Positions benchmark: how fast are `Vault.positions` and `Vault.trading_summary` over a
million fills, most of them cold?

    python bench/positions.py [--fills N] [--symbols S] [--days D] [--hot-days H] [--repeat R]
                              [--dsn DSN] [--seed N]

One run, in order (bench/README.md explains every number):
1. load N fills (default 1,000,000) of S symbols (default 100, each traded by one of 10 bots;
   random sides, so positions flip) spread evenly over D days (default 30) with COPY into
   the fills table of a migrated scratch database, one native 1-day partition per day;
2. roll all but the last H days (default 2) to the cold tier with
   `tickvault.archive.roller.roll` (files in a temporary directory);
3. time, each the median of R runs (default 3) after one untimed run: `positions()` of every
   bot and symbol, `positions(symbol=…)` of one symbol, `trading_summary()` of everything,
   `trading_summary(bot_id=…)` of one bot — and, for the first and third, the read of the
   fills (`Vault.fills` with the columns they use) and the computation on the table alone.

Checks: the positions and the summary count every loaded fill once, and `positions()` equals
`positions.table` over what `Vault.fills` read. The scratch database and directory are
removed at the end, also after an error or Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import io
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import asyncpg
import pyarrow as pa

import roll
import runner
from runner import BenchError
from tickvault.archive import roller
from tickvault.errors import TickvaultError
from tickvault.records import Fill
from tickvault.settings import Settings
from tickvault.store import migrate, partitions
from tickvault.store.schema import TIME_TABLES
from tickvault.trading import positions, summary
from tickvault.vault import Vault

SCHEMA: Final = roll.SCHEMA
FILLS: Final = next(t for t in TIME_TABLES if t.name == "fills")
BOTS: Final = 10


def day_csv(
    day: dt.datetime, n: int, symbols: int, prices: list[int], first_id: int, rng: random.Random
) -> bytes:
    """`n` fills on `day`, evenly spaced, as COPY text: prices random walks in cents,
    quantities in thousandths, a 0.1% fee in USDT (one fill in ten in BNB)."""
    out = io.StringIO()
    step_us = 86_400_000_000 // max(n, 1)
    for i in range(n):
        s = rng.randrange(symbols)
        price = prices[s] = max(100, prices[s] + rng.randint(-prices[s] // 200, prices[s] // 200))
        quantity = rng.randint(1, 2_000)
        ts = day + dt.timedelta(microseconds=i * step_us)
        fee, asset = (roll._fixed(quantity * price, 8), "USDT") if i % 10 else ("0.0001", "BNB")
        side = "buy" if rng.random() < 0.5 else "sell"
        out.write(
            f"f{first_id + i}\to{first_id + i}\tbinance\tS{s:03d}USDT\t{side}\t{roll._fixed(quantity, 3)}\t"
            f"{roll._fixed(price, 2)}\t{fee}\t{asset}\tmaker\tbot{s % BOTS}\tgrid\t{ts.isoformat()}\n"
        )
    return out.getvalue().encode()


async def load(conn: asyncpg.Connection, first_day: dt.datetime, args: argparse.Namespace) -> None:
    rng = random.Random(args.seed)
    partitioner = partitions.NativePartitioner(SCHEMA, 1, 0)
    prices = [rng.randint(1_000, 10_000_000) for _ in range(args.symbols)]
    started, done = time.perf_counter(), 0
    for d in range(args.days):
        day = first_day + dt.timedelta(days=d)
        n = args.fills * (d + 1) // args.days - done
        await partitioner.ensure(conn, FILLS, [day])
        data = day_csv(day, n, args.symbols, prices, done, rng)
        await conn.copy_to_table("fills", schema_name=SCHEMA, source=io.BytesIO(data), columns=Fill.COLUMNS)
        done += n
    await conn.execute(f"VACUUM ANALYZE {SCHEMA}.fills")
    print(f"loaded {done:,} fills in {args.days} partitions in {time.perf_counter() - started:.1f}s")


@dataclass
class Figure:
    label: str
    rows: int  # fills read
    seconds: float


async def timed(label: str, rows: int, call: Callable[[], Awaitable[Any]], repeat: int) -> tuple[Figure, Any]:
    result = await call()
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        await call()
        times.append(time.perf_counter() - started)
    return Figure(label, rows, statistics.median(times)), result


def print_figures(figures: Sequence[Figure]) -> None:
    width = max(len(f.label) for f in figures)
    print(f"\n  {'what':<{width}}  {'fills':>9}  {'s (median)':>10}  {'fills/s':>10}")
    for f in figures:
        print(f"  {f.label:<{width}}  {f.rows:>9,}  {f.seconds:>10.3f}  {f.rows / f.seconds:>10,.0f}")


@dataclass
class Bench(roll.Bench):
    """bench/roll.py's scratch database and directory and its cleanup."""

    async def main(self) -> None:
        a = self.args
        name = f"tickvault_bench_{self.token}"
        self.scratch = Path(tempfile.mkdtemp(prefix=f"{name}."))
        settings = roll.scratch_settings(a.dsn, name, self.scratch)
        self.database = name  # from here on, cleanup drops it
        print(f"scratch database {name}: {a.fills:,} fills, {a.symbols} symbols, {a.days} days", end="")
        print(f", the last {a.hot_days} hot")
        await migrate.upgrade(settings.postgres)
        today = dt.datetime.now(dt.UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        conn = await asyncpg.connect(settings.postgres.dsn.get_secret_value())
        try:
            await load(conn, today - dt.timedelta(days=a.days), a)
        finally:
            await conn.close()
        started = time.perf_counter()
        outcomes = await roller.roll(settings, older_than_s=a.hot_days * 86_400, tables=["fills"], now=today)
        if not outcomes or {o.status for o in outcomes} != {"rolled"}:
            raise BenchError(f"the roll did not roll every old partition: {outcomes}")
        cold = sum(o.rows for o in outcomes)
        took = time.perf_counter() - started
        print(f"rolled {len(outcomes)} days ({cold:,} fills, {cold / a.fills:.0%}) in {took:.1f}s")
        await self.measure(settings)

    async def measure(self, settings: Settings) -> None:
        a, figures = self.args, []
        async with Vault.connect(settings) as v:
            one = "S000USDT"
            n_one = (await v.fills(symbol=one, columns=["fill_id"])).num_rows
            n_bot = (await v.fills(bot_id="bot0", columns=["fill_id"])).num_rows
            read = lambda: v.fills(columns=positions.FILL_COLUMNS)  # noqa: E731
            figure, fills = await timed("read: Vault.fills (positions' columns)", a.fills, read, a.repeat)
            figures.append(figure)
            compute = lambda: asyncio.to_thread(positions.table, fills)  # noqa: E731
            figures.append((await timed("compute: positions.table on it", a.fills, compute, a.repeat))[0])
            figure, everything = await timed("Vault.positions()", a.fills, v.positions, a.repeat)
            figures.append(figure)
            figures.append((await timed(f"Vault.positions(symbol={one})", n_one,
                                        lambda: v.positions(symbol=one), a.repeat))[0])  # fmt: skip
            compute = lambda: asyncio.to_thread(summary.table, fills)  # noqa: E731
            figures.append((await timed("compute: summary.table on it", a.fills, compute, a.repeat))[0])
            figure, total = await timed("Vault.trading_summary()", a.fills, v.trading_summary, a.repeat)
            figures.append(figure)
            figures.append((await timed("Vault.trading_summary(bot_id=bot0)", n_bot,
                                        lambda: v.trading_summary(bot_id="bot0"), a.repeat))[0])  # fmt: skip
        self.check(everything, total, fills)
        print_figures(figures)
        row = total.to_pylist()[0]
        trips, net = row["round_trips"], row["net_pnl"]
        print(f"\n  {everything.num_rows} positions; {trips:,} round trips, net PnL {net}")

    def check(self, everything: pa.Table, total: pa.Table, fills: pa.Table) -> None:
        counted = sum(everything.column("fills").to_pylist())
        if counted != self.args.fills or total.column("fills")[0].as_py() != self.args.fills:
            raise BenchError(f"positions counted {counted:,} fills, {self.args.fills:,} were loaded")
        if not positions.table(fills).equals(everything):
            raise BenchError("Vault.positions differs from positions.table over Vault.fills")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--fills", type=int, default=1_000_000, help="fills loaded (default 1,000,000)")
    p.add_argument("--symbols", type=int, default=100, help="symbols, traded by 10 bots (default 100)")
    p.add_argument(
        "--days", type=int, default=30, help="days the fills span, one partition each (default 30)"
    )
    p.add_argument("--hot-days", type=int, default=2, help="the last days left hot (default 2)")
    p.add_argument("--repeat", type=int, default=3, help="timed runs of each figure (default 3)")
    p.add_argument(
        "--dsn", default="postgresql://postgres@127.0.0.1:5432/postgres",
        help="PostgreSQL server; its database is only used to create and drop the scratch database",
    )  # fmt: skip
    p.add_argument("--seed", type=int, default=7)
    args = p.parse_args(argv)
    if (
        args.symbols < 1
        or args.hot_days < 1
        or args.days <= args.hot_days
        or args.repeat < 1
        or args.fills < 1
    ):
        p.error("need --fills, --symbols, --hot-days, --repeat >= 1 and --days > --hot-days")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    return runner.run(Bench(parse_args(argv)), (TickvaultError, asyncpg.PostgresError, OSError))


if __name__ == "__main__":
    sys.exit(main())
