"""Read benchmark: which engine turns hot and cold klines into an exact Arrow table fastest?

    python bench/read.py [--days D] [--symbols S] [--hot-days H] [--repeat N] [--dsn DSN] [--seed N]

One run, in order (bench/README.md explains every number):
1. load D days x S symbols of 1m klines (bench/roll.py's loader, default 30 x 200) into a
   migrated scratch database, then roll all but the last H days (default 2) to the cold table
   with `tickvault.archive.roller.roll` (files in a temporary directory);
2. hot reads from PostgreSQL (one symbol x the hot days; all symbols x one day) through
   asyncpg COPY CSV -> pyarrow.csv (the roller's read), the ADBC PostgreSQL driver, and
   asyncpg fetch -> Arrow from Python values;
3. cold reads (one symbol and ten symbols x up to 28 days; all symbols x one day; each with
   every column and with open_time, close only) through pyiceberg's scan, pyarrow.dataset
   over the files pyiceberg plans, DuckDB read_parquet over those files, and DuckDB's
   iceberg extension (loaded from its PyPI wheel).

Each figure is the median of N timed runs after one untimed run. Every engine's table must
have the exact types (decimal128(38, 18), timestamp[us, UTC]) and, sorted, equal the first
engine's, or the bench fails. The scratch database and directory are removed at the end,
also after an error or Ctrl-C.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib
import inspect
import io
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import adbc_driver_postgresql.dbapi as adbc
import asyncpg
import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.dataset as ds
import pyarrow.parquet as pq
from pyiceberg.expressions import And, BooleanExpression, EqualTo, In
from pyiceberg.table import Table
from pyiceberg.utils.concurrent import ExecutorFactory

import roll
import runner
from runner import BenchError
from tickvault.archive import hot, roller, table
from tickvault.archive.table import Column
from tickvault.errors import TickvaultError
from tickvault.settings import Settings
from tickvault.store import migrate

SCHEMA: Final = roll.SCHEMA
TWO: Final = ("open_time", "close")
Engine = Callable[[], Any]  # returns an Arrow table, or an awaitable of one


@dataclass(frozen=True)
class Query:
    label: str
    symbols: tuple[str, ...]  # () = every symbol
    start: dt.datetime  # [start, end), UTC
    end: dt.datetime
    columns: tuple[Column, ...]

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.columns]

    def sql(self, source: str, names: str) -> tuple[str, list[Any]]:
        """SELECT `names` FROM `source` for this query (PostgreSQL and DuckDB alike), and its
        parameters: start, end, then the symbols as an IN list."""
        sql = (
            f"SELECT {names} FROM {source} WHERE exchange = 'binance' AND \"interval\" = '1m' "  # noqa: S608
            "AND open_time >= $1 AND open_time < $2"
        )
        if self.symbols:
            sql += " AND symbol IN (" + ", ".join(f"${i + 3}" for i in range(len(self.symbols))) + ")"
        return sql, [self.start, self.end, *self.symbols]

    def iceberg(self) -> BooleanExpression:
        where = And(EqualTo("exchange", "binance"), EqualTo("interval", "1m"))
        where = And(where, table.time_range("open_time", self.start.isoformat(), self.end.isoformat()))
        return And(where, In("symbol", self.symbols)) if self.symbols else where

    def arrow(self) -> pc.Expression:
        at = pa.timestamp("us", tz="UTC")
        where = (pc.field("exchange") == "binance") & (pc.field("interval") == "1m")
        where &= (pc.field("open_time") >= pa.scalar(self.start, at)) & (
            pc.field("open_time") < pa.scalar(self.end, at)
        )
        return where & pc.field("symbol").isin(list(self.symbols)) if self.symbols else where


@dataclass
class Figure:
    engine: str
    rows: int
    seconds: float


def _same(got: pa.Table, want: pa.Table, engine: str, query: Query) -> None:
    keys = [(n, "ascending") for n in got.column_names]
    if not got.sort_by(keys).equals(want.sort_by(keys)):
        raise BenchError(f"{engine} returned other rows or types than the first engine for {query.label}")


async def measure(query: Query, engines: dict[str, Engine], repeat: int, exact: set[str]) -> list[Figure]:
    """Each engine: one untimed run (checked against the first exact engine's table), then
    `repeat` timed runs; the median."""
    schema = table.arrow_schema(query.columns)
    figures, reference = [], None
    for name, engine in engines.items():
        times = []
        for i in range(repeat + 1):
            started = time.perf_counter()
            result = engine()
            if inspect.isawaitable(result):
                result = await result
            if i:
                times.append(time.perf_counter() - started)
        if name in exact:
            if result.schema != schema:
                raise BenchError(f"{name} returned {result.schema}, not {schema}, for {query.label}")
            if reference is None:
                reference = result
            else:
                _same(result, reference, name, query)
        figures.append(Figure(name, result.num_rows, statistics.median(times)))
    rows = {f.rows for f in figures if f.engine in exact}
    if len(rows) != 1:
        raise BenchError(f"{query.label}: the engines returned different row counts {rows}")
    return figures


def print_figures(title: str, figures: Sequence[Figure], exact: set[str], note: str = "") -> None:
    """One table per query; the ratio is to the fastest engine with exact types."""
    fastest = min(f.seconds for f in figures if f.engine in exact)
    print(f"\n{title}: {figures[0].rows:,} rows{note}")
    width = max(len(f.engine) for f in figures)
    print(f"  {'engine':<{width}}  {'s (median)':>10}  {'rows/s':>12}  {'x fastest exact':>15}")
    for f in figures:
        rate = f.rows / f.seconds if f.seconds else 0.0
        print(f"  {f.engine:<{width}}  {f.seconds:>10.4f}  {rate:>12,.0f}  {f.seconds / fastest:>15.2f}")


def exact_decimals(data: pa.Table, schema: pa.Schema) -> pa.Table:
    """ADBC hands out numeric as an opaque extension type over strings: cast its text."""
    cols = []
    for column in data.columns:
        if isinstance(column.type, pa.ExtensionType):
            column = pa.chunked_array([c.storage for c in column.chunks], column.type.storage_type)
        cols.append(column)
    return pa.Table.from_arrays(cols, names=data.column_names).cast(schema)


def hot_engines(conn: asyncpg.Connection, ad: Any, query: Query) -> tuple[dict[str, Engine], set[str]]:
    schema = table.arrow_schema(query.columns)
    csv_sql, params = query.sql(f"{SCHEMA}.klines", hot._select(query.columns))
    plain_sql, _ = query.sql(f"{SCHEMA}.klines", ", ".join(f'"{n}"' for n in query.names))
    as_text = ", ".join(f'"{c.name}"' + ("::text" if c.kind == "decimal" else "") for c in query.columns)
    text_sql, _ = query.sql(f"{SCHEMA}.klines", as_text)

    async def copy_csv(parse: Callable[[bytes, Sequence[Column]], pa.Table]) -> pa.Table:
        chunks: list[bytes] = []

        async def sink(chunk: bytes) -> None:
            chunks.append(chunk)

        await conn.copy_from_query(csv_sql, *params, output=sink, format="csv")
        return parse(b"".join(chunks), query.columns)

    def adbc_raw(sql: str) -> pa.Table:
        with ad.cursor() as cur:
            cur.execute(sql, parameters=tuple(params))
            return cur.fetch_arrow_table()

    async def fetch_values() -> pa.Table:
        rows = await conn.fetch(plain_sql, *params)
        columns = [pa.array([r[i] for r in rows], f.type) for i, f in enumerate(schema)]
        return pa.Table.from_arrays(columns, schema=schema)

    engines: dict[str, Engine] = {
        "asyncpg COPY CSV -> pyarrow.csv": lambda: copy_csv(hot._parse),
        "  same, numeric parsed as float64": lambda: copy_csv(_parse_float),
        "ADBC, numeric -> cast": lambda: exact_decimals(adbc_raw(plain_sql), schema),
        "ADBC, numeric::text -> cast": lambda: exact_decimals(adbc_raw(text_sql), schema),
        "  same, left as text": lambda: adbc_raw(text_sql),
        "asyncpg fetch -> pa.array": fetch_values,
    }
    return engines, set(engines) - {"  same, numeric parsed as float64", "  same, left as text"}


def _parse_float(data: bytes, cols: Sequence[Column]) -> pa.Table:
    """The roller's CSV parse with float64 for numeric: inexact, only to show what exactness costs."""
    kinds = {"decimal": pa.float64(), "time": pa.int64(), "bigint": pa.int64(), "bool": pa.bool_()}
    options = pacsv.ConvertOptions(
        column_types={c.name: kinds.get(c.kind, pa.string()) for c in cols},
        true_values=["t"],
        false_values=["f"],
    )
    read = pacsv.ReadOptions(column_names=[c.name for c in cols])
    rows = pacsv.read_csv(io.BytesIO(data), read_options=read, convert_options=options)
    times = [i for i, c in enumerate(cols) if c.kind == "time"]
    for i in times:
        rows = rows.set_column(i, cols[i].name, rows.column(i).cast(pa.timestamp("us", tz="UTC")))
    return rows


def local(path: str) -> str:
    return path.removeprefix("file://")


def _quoted(paths: Sequence[str]) -> str:
    """A DuckDB list literal of local paths (table functions take no parameters here)."""
    return "[" + ", ".join("'" + local(p).replace("'", "''") + "'" for p in paths) + "]"


def cold_engines(cold: Table, con: duckdb.DuckDBPyConnection, query: Query) -> dict[str, Engine]:
    schema = table.arrow_schema(query.columns)
    names, where = query.names, query.iceberg()
    cols = ", ".join(f'"{n}"' for n in names)

    def plan() -> list[str]:
        return [local(t.file.file_path) for t in cold.scan(row_filter=where).plan_files()]

    def duck(source: str) -> pa.Table:
        sql, params = query.sql(source, cols)
        return con.execute(sql, params).to_arrow_table().cast(schema)

    engines: dict[str, Engine] = {
        "pyiceberg scan().to_arrow()": lambda: (
            cold.scan(row_filter=where, selected_fields=tuple(names)).to_arrow().select(names).cast(schema)
        ),
        "pyarrow.dataset over planned files": lambda: (
            ds.dataset(plan(), format="parquet").to_table(columns=names, filter=query.arrow()).cast(schema)
        ),
        "DuckDB read_parquet(planned files)": lambda: duck(f"read_parquet({_quoted(plan())})"),
        "DuckDB iceberg_scan(metadata)": lambda: duck(f"iceberg_scan({_quoted([cold.metadata_location])})"),
        "tickvault table.read (checks each file)": lambda: table.read(cold, where, schema),
        "(pyiceberg plan_files() alone)": lambda: pa.table({"files": plan()}),
    }
    if len(plan()) >= ExecutorFactory.get_or_create()._max_workers:
        # table.read maps files over pyiceberg's pool and ArrowScan maps over the same pool:
        # with as many files as workers every worker waits on a queued task, for ever
        del engines["tickvault table.read (checks each file)"]
    return engines


def pruning(cold: Table, query: Query) -> str:
    """Files and row groups pyarrow reads for the query (after pruning by statistics) out of
    the table's."""
    every = [local(t.file.file_path) for t in cold.scan().plan_files()]
    groups = sum(pq.ParquetFile(p).metadata.num_row_groups for p in every)
    tasks = cold.scan(row_filter=query.iceberg()).plan_files()
    planned = ds.dataset([local(t.file.file_path) for t in tasks])
    read = [len(f.subset(filter=query.arrow()).row_groups) for f in planned.get_fragments()]
    files = sum(1 for n in read if n)
    return f"; pyarrow reads {files}/{len(every)} files, {sum(read)}/{groups} row groups"


def duckdb_with_iceberg() -> duckdb.DuckDBPyConnection:
    """A DuckDB connection (UTC) with the avro and iceberg extensions loaded from their PyPI
    wheels (duckdb-extension-*), never downloaded."""
    con = duckdb.connect(config={"autoinstall_known_extensions": False, "autoload_known_extensions": False})
    con.execute("SET TimeZone = 'UTC'")
    for name in ("avro", "iceberg"):
        package = importlib.import_module(f"duckdb_extension_{name}")
        folder = Path(package.__file__).parent / "extensions" / f"v{duckdb.__version__}"
        path = folder / f"{name}.duckdb_extension"
        con.execute(f"LOAD '{path}'")
    return con


def queries(
    args: argparse.Namespace, today: dt.datetime, cols: tuple[Column, ...]
) -> tuple[list[Query], list[Query]]:
    day = dt.timedelta(days=1)
    symbols = [f"S{s:03d}USDT" for s in range(args.symbols)]
    hot_start, cold_end = today - args.hot_days * day, today - args.hot_days * day
    span = min(28, args.days - args.hot_days)
    two = tuple(c for c in cols if c.name in TWO)
    hot_q = [
        Query(f"hot, 1 symbol x {args.hot_days} days", (symbols[0],), hot_start, today, cols),
        Query("hot, all symbols x 1 day", (), today - day, today, cols),
    ]
    cold_q = []
    for label, syms, start in (
        (f"1 symbol x {span} days", (symbols[0],), cold_end - span * day),
        (f"{len(symbols[:10])} symbols x {span} days", tuple(symbols[:10]), cold_end - span * day),
        ("all symbols x 1 day", (), cold_end - day),
    ):
        for columns, what in ((cols, "all columns"), (two, "open_time, close")):
            cold_q.append(Query(f"cold, {label}, {what}", syms, start, cold_end, columns))
    return hot_q, cold_q


@dataclass
class Bench(roll.Bench):
    """bench/roll.py's scratch database and directory, its loader and its cleanup."""

    async def main(self) -> None:
        a = self.args
        name = f"tickvault_bench_{self.token}"
        self.scratch = Path(tempfile.mkdtemp(prefix=f"{name}."))
        settings = roll.scratch_settings(a.dsn, name, self.scratch)
        self.database = name  # from here on, cleanup drops it
        print(f"scratch database {name}, {a.days} days x {a.symbols} symbols, the last {a.hot_days} hot")
        await migrate.upgrade(settings.postgres)
        today = dt.datetime.now(dt.UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        dsn = settings.postgres.dsn.get_secret_value()
        conn = await asyncpg.connect(dsn)
        try:
            await roll.load(conn, today - dt.timedelta(days=a.days), a.days, a.symbols, a.seed)
            started = time.perf_counter()
            older_than_s = a.hot_days * 86_400
            outcomes = await roller.roll(settings, older_than_s=older_than_s, tables=["klines"], now=today)
            if not outcomes or {o.status for o in outcomes} != {"rolled"}:
                raise BenchError(f"the roll did not roll every old partition: {outcomes}")
            print(f"rolled {len(outcomes)} days to the cold table in {time.perf_counter() - started:.1f}s")
            cols = await hot.columns(conn, SCHEMA, "klines")
            hot_q, cold_q = queries(a, today, cols)
            with adbc.connect(dsn) as ad:
                for q in hot_q:
                    engines, exact = hot_engines(conn, ad, q)
                    print_figures(q.label, await measure(q, engines, a.repeat, exact), exact)
        finally:
            await conn.close()
        await self.cold(settings, cold_q)

    async def cold(self, settings: Settings, cold_q: Sequence[Query]) -> None:
        catalog = table.open_catalog(settings)
        con = duckdb_with_iceberg()
        try:
            cold = catalog.load_table(f"{SCHEMA}.klines")
            for q in cold_q:
                engines = cold_engines(cold, con, q)
                exact = set(engines) - {"(pyiceberg plan_files() alone)"}
                figures = await measure(q, engines, self.args.repeat, exact)
                files = figures.pop()  # plan_files() alone: its rows are files, not klines
                note = f" (pyiceberg plans {files.rows} files in {files.seconds:.4f}s{pruning(cold, q)})"
                print_figures(q.label, figures, exact, note)
        finally:
            con.close()
            table.close_catalog(catalog)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--days", type=int, default=30, help="days of klines, one partition each (default 30)")
    p.add_argument("--symbols", type=int, default=200, help="symbols, 1440 klines a day each (default 200)")
    p.add_argument("--hot-days", type=int, default=2, help="the last days left hot (default 2)")
    p.add_argument("--repeat", type=int, default=5, help="timed runs per engine and query (default 5)")
    p.add_argument(
        "--dsn", default="postgresql://postgres@127.0.0.1:5432/postgres",
        help="PostgreSQL server; its database is only used to create and drop the scratch database",
    )  # fmt: skip
    p.add_argument("--seed", type=int, default=7)
    args = p.parse_args(argv)
    if args.symbols < 1 or args.hot_days < 1 or args.days <= args.hot_days or args.repeat < 1:
        p.error("need --symbols, --hot-days, --repeat >= 1 and --days > --hot-days")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    failures = (TickvaultError, asyncpg.PostgresError, OSError, duckdb.Error, adbc.Error)
    return runner.run(Bench(parse_args(argv)), failures)


if __name__ == "__main__":
    sys.exit(main())
