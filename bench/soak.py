"""Soak: the daemon for half an hour at a steady rate with its roller running; are memory and
lag flat, and is every message stored exactly once?

    python bench/soak.py [--rate R] [--duration-s S] [--sample-s T] [--days D] [--out CSV]
                         [--roll-interval-s I] [--no-roll] [--dsn DSN] [--redis-url URL]
                         [--drain-timeout-s S]

One run, in order (bench/README.md explains every number):
1. the daemon (`python -m tickvault run`, a subprocess configured by TICKVAULT_* variables)
   starts on a scratch database (native 1-day partitions) with Redis Streams as its source,
   /metrics on a free local port, and its roller on: `archive.interval_s` 30,
   `archive.hot_retention` 1d, `archive.snapshot_retention` 5m, the cold tier in a scratch
   directory (`--no-roll`: the roller off, to tell its memory from the ingest path's);
2. R messages/s (default 3,000: 60% klines, 20% fills, 20% public trades, bench/soak_load.py)
   are published for S seconds (default 1,800), their event times running from D + 2 days
   ago (default D = 30) to 2 days ago: a day of event time every S / D seconds, so a daily
   partition fills, falls behind the cutoff and is rolled while the next one fills;
3. every T seconds (default 15) a sample (bench/soak_sample.py): RSS, CPU, lag, rows written,
   roller rounds, partitions and rows rolled, Redis memory, database size, load average;
   streams are trimmed below what the group has acknowledged;
4. once everything is acknowledged, the bench waits until the roller has rolled every hot row
   (all are older than the cutoff; not with `--no-roll`), stops the daemon, then checks
   exactly once per table: hot rows + cold rows = messages sent, and no key twice across
   both tiers.
It prints the samples as a table, writes them to --out (CSV), and prints the flatness
figures: RSS and lag over the first 5 minutes against the last 5.

Everything it creates — the scratch database `tickvault_bench_<token>`, its streams, the
scratch directory — is removed at the end, also after an error, Ctrl-C or SIGTERM, and the
daemon is stopped; its log is kept as `<tmp>/tickvault_bench_<token>.daemon.log`.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import datetime as dt
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import asyncpg
import pyarrow as pa
import redis.asyncio as aioredis

import runner
import soak_sample
from ingest_daemon import environ, overrides, scratch_names, with_database
from runner import BenchError
from soak_load import TABLES, Load, Publisher
from soak_sample import Sample, Sampler
from tickvault.archive import table
from tickvault.errors import TickvaultError
from tickvault.settings import Settings, load_settings

SCHEMA: Final = "tickvault"
DAY_MS: Final = 86_400_000
KEYS: Final = {  # the columns that tell the messages apart, per table
    "klines": ("symbol", "open_time"),
    "fills": ("fill_id",),
    "trades": ("trade_id",),
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Bench:
    args: argparse.Namespace
    token: str = field(default_factory=lambda: secrets.token_hex(4))
    database: str | None = None  # set once the daemon may have created it
    scratch: Path | None = None
    streams: list[str] = field(default_factory=list)
    daemon: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None
    publish_s: float = 0.0

    async def main(self) -> None:
        a = self.args
        base, all_topics = scratch_names(self.token)
        topics = {s: k for s, k in all_topics.items() if k in TABLES}
        self.scratch = Path(tempfile.mkdtemp(prefix=f"{base}."))
        values = self.values(topics)
        settings = load_settings(**values)
        redis = aioredis.Redis.from_url(a.redis_url)
        try:
            for stream in topics:
                if await redis.exists(stream):
                    raise BenchError(f"stream {stream} exists already")
            self.streams = list(topics)
            self.database = base
            self.start_daemon(values, base)
            load, sent, samples = await self.publish_and_sample(redis, topics, settings)
        finally:
            await redis.aclose()
        await self.stop_daemon()
        counts = await verify(settings, load.made, cold=not self.args.no_roll)
        self.report(samples, sent, counts)

    def values(self, topics: dict[str, str]) -> dict[str, Any]:
        a = self.args
        assert self.scratch is not None
        dsn = with_database(a.dsn, f"tickvault_bench_{self.token}")
        values = overrides(dsn, a.redis_url, topics, self.token)
        values["postgres"].update(
            {"schema": SCHEMA, "create_database": True, "timescale": "off",
             "partition_interval_days": 1, "partitions_ahead": 0}
        )  # fmt: skip
        values["metrics"] = {"enabled": True, "host": "127.0.0.1", "port": free_port(), "lag_interval_s": 5}
        values["archive"] = {
            "enabled": not a.no_roll, "root": str(self.scratch / "cold"), "interval_s": a.roll_interval_s,
            "hot_retention": "1d", "snapshot_retention": "5m",
        }  # fmt: skip
        return values

    def start_daemon(self, values: dict[str, Any], base: str) -> None:
        self.log_path = Path(tempfile.gettempdir()) / f"{base}.daemon.log"
        with self.log_path.open("wb") as log:
            self.daemon = subprocess.Popen(
                [sys.executable, "-m", "tickvault", "run"], env=environ(values),
                stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip
        print(f"daemon pid {self.daemon.pid}, log {self.log_path}, metrics port {values['metrics']['port']}")

    async def publish_and_sample(
        self, redis: aioredis.Redis, topics: dict[str, str], settings: Settings
    ) -> tuple[Load, int, list[Sample]]:
        a = self.args
        assert self.daemon is not None
        today = dt.datetime.now(dt.UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        first_ms = int(today.timestamp() * 1000) - (a.days + 2) * DAY_MS
        total = int(a.rate * a.duration_s)
        load = Load(first_ms, a.days * DAY_MS / total)
        streams = {kind: stream for stream, kind in topics.items()}
        url = f"http://127.0.0.1:{settings.metrics.port}/metrics"
        sampler = Sampler(self.daemon.pid, url, f"bench_{self.token}", list(topics))
        await self.wait_ready(url)
        print(f"{a.rate:,.0f} msg/s for {a.duration_s:,.0f}s = {total:,} messages; event time "
              f"{a.days} days from {dt.datetime.fromtimestamp(first_ms / 1000, dt.UTC):%Y-%m-%d}, "
              f"{load.symbols} kline symbols\n\n{soak_sample.HEADER}")  # fmt: skip
        publisher = Publisher(redis, load, streams, a.rate, total)
        stop = asyncio.Event()
        started = time.perf_counter()
        task = asyncio.create_task(publisher.run(stop))
        samples: list[Sample] = []
        conn = await asyncpg.connect(settings.postgres.dsn.get_secret_value())
        try:
            while True:
                await asyncio.sleep(a.sample_s)
                self.check_alive()
                now = time.perf_counter()
                s = await sampler.sample(now - started, now, publisher.sent, redis, conn)
                samples.append(s)
                print(soak_sample.line(s), flush=True)
                await sampler.trim(redis)
                if task.done():
                    break
            await task  # raises what the publisher raised
            self.publish_s = time.perf_counter() - started
            print(f"published {publisher.sent:,} in {self.publish_s:,.1f}s; draining")
            await self.drain(sampler, redis, conn, publisher.sent)
        finally:
            stop.set()
            await asyncio.gather(task, return_exceptions=True)
            await conn.close()
            soak_sample.write_csv(Path(a.out), samples)
        return load, publisher.sent, samples

    async def wait_ready(self, url: str) -> None:
        """Until the daemon's /readyz answers 200 (consuming, PostgreSQL migrated and up)."""
        deadline = time.perf_counter() + 60
        while time.perf_counter() < deadline:
            self.check_alive()
            try:
                await asyncio.to_thread(urllib.request.urlopen, url.replace("/metrics", "/readyz"), timeout=5)
                return
            except OSError:  # not listening yet, or 503 (HTTPError)
                await asyncio.sleep(0.5)
        raise BenchError("the daemon was not ready within 60 s")

    async def drain(
        self, sampler: Sampler, redis: aioredis.Redis, conn: asyncpg.Connection, sent: int
    ) -> None:
        """Until every message is acknowledged and every hot row rolled (all are older than
        the cutoff; only acknowledged with --no-roll), within --drain-timeout-s."""
        deadline = time.perf_counter() + self.args.drain_timeout_s
        while time.perf_counter() < deadline:
            self.check_alive()
            progress = await sampler.sample(0, time.perf_counter(), sent, redis, conn)
            hot = 0 if self.args.no_roll else await hot_rows(conn)
            if progress.lag == 0 and progress.pending == 0 and hot == 0:
                rounds = f"every row rolled ({progress.roll_rounds} rounds)"
                print(f"all acknowledged, {'roller off' if self.args.no_roll else rounds}")
                return
            await asyncio.sleep(5)
        raise BenchError(f"not drained and rolled within {self.args.drain_timeout_s:.0f}s")

    def check_alive(self) -> None:
        assert self.daemon is not None
        if self.daemon.poll() is not None:
            code = self.daemon.returncode
            raise BenchError(f"the daemon exited early with code {code}; see {self.log_path}")

    async def stop_daemon(self) -> None:
        assert self.daemon is not None
        self.daemon.send_signal(signal.SIGTERM)
        code = await asyncio.to_thread(self.daemon.wait, 60)
        if code != 0:
            raise BenchError(f"the daemon exited {code}; see {self.log_path}")

    def report(self, samples: Sequence[Sample], sent: int, counts: dict[str, tuple[int, int, int]]) -> None:
        a = self.args
        lines = soak_sample.flatness(samples, a.duration_s)
        end = samples[-1]
        lines.append(("roller", f"{end.roll_rounds} rounds, {end.rolled_partitions} partitions, "
                      f"{end.rolled_rows:,} rows rolled, {end.roll_failures} failed partition rolls "
                      "(during publishing)"))  # fmt: skip
        for name, (hot, cold, distinct) in counts.items():
            lines.append((f"exactly once: {name}", f"hot {hot:,} + cold {cold:,} = {hot + cold:,} "
                          f"rows, {distinct:,} distinct keys"))  # fmt: skip
        stored = sum(hot + cold for hot, cold, _ in counts.values())
        lines.append(("exactly once: all", f"{sent:,} sent = {stored:,} stored"))
        assert self.log_path is not None
        lines.append(("daemon log", warnings_summary(self.log_path)))
        width = max(len(k) for k, _ in lines)
        run = f"{sent:,} messages in {self.publish_s:,.0f}s = {sent / self.publish_s:,.0f} msg/s"
        print(f"\nresults ({run}; samples in {a.out})")
        for key, value in lines:
            print(f"  {key:<{width}}  {value}")

    async def cleanup(self) -> None:
        """Stop the daemon if it runs, delete the streams, drop the database, remove the
        scratch directory; report, never hide, a failure."""
        await runner.stop_daemon(self.daemon, 60)
        await runner.delete_streams(self.args.redis_url, self.streams)
        if self.scratch is not None:
            shutil.rmtree(self.scratch, ignore_errors=True)
        if self.database and await runner.drop_database(self.args.dsn, self.database):
            print(f"cleaned up: database {self.database}, streams, {self.scratch}")


async def hot_rows(conn: asyncpg.Connection) -> int:
    total = 0
    for name in KEYS:
        total += await conn.fetchval(f"SELECT count(*) FROM {SCHEMA}.{name}")  # noqa: S608 - our names
    return int(total)


async def verify(
    settings: Settings, made: dict[str, int], cold: bool = True
) -> dict[str, tuple[int, int, int]]:
    """Per table: (hot rows, cold rows, distinct keys over both); raises BenchError unless
    hot + cold = distinct = messages made of that kind. `cold=False` (the roller was off):
    the hot rows only, no catalog opened."""
    conn = await asyncpg.connect(settings.postgres.dsn.get_secret_value())
    catalog = table.open_catalog(settings) if cold else None
    counts = {}
    try:
        for kind, name in TABLES.items():
            keys = KEYS[name]
            cols = ", ".join(keys)
            hot = await conn.fetch(f"SELECT {cols} FROM {SCHEMA}.{name}")  # noqa: S608 - our names
            hot_table = pa.table({k: [r[k] for r in hot] for k in keys})
            if catalog is not None:
                cold = catalog.load_table(f"{SCHEMA}.{name}").scan(selected_fields=keys).to_arrow()
                hot_table = hot_table.cast(cold.schema)
            else:
                cold = hot_table.schema.empty_table()
            both = pa.concat_tables([hot_table, cold])
            distinct = both.group_by(list(keys)).aggregate([]).num_rows
            counts[name] = (len(hot), cold.num_rows, distinct)
            if not len(hot) + cold.num_rows == distinct == made[kind]:
                raise BenchError(f"{name}: {made[kind]:,} sent, hot {len(hot):,} + cold {cold.num_rows:,}, "
                                 f"{distinct:,} distinct keys")  # fmt: skip
    finally:
        table.close_catalog(catalog)
        await conn.close()
    return counts


def warnings_summary(log_path: Path) -> str:
    """How many WARNING / ERROR lines the daemon logged, with the commonest messages."""
    found: collections.Counter[str] = collections.Counter()
    for text in log_path.read_text(errors="replace").splitlines():
        for level in (" WARNING ", " ERROR "):
            if level in text:
                found[level.strip() + ": " + text.split(level, 1)[1][:80]] += 1
    if not found:
        return "no WARNING or ERROR lines"
    common = "; ".join(f"{n} x {m}" for m, n in found.most_common(3))
    return f"{sum(found.values())} WARNING/ERROR lines, commonest: {common}"


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rate", type=float, default=3000, help="messages per second (default 3000)")
    p.add_argument("--duration-s", type=float, default=1800, help="seconds of publishing (default 1800)")
    p.add_argument("--sample-s", type=float, default=15, help="seconds between samples (default 15)")
    p.add_argument("--days", type=int, default=30, help="days of event time the run spans (default 30)")
    p.add_argument("--roll-interval-s", type=float, default=30, help="archive.interval_s (default 30)")
    p.add_argument("--no-roll", action="store_true", help="the roller off (archive.enabled false)")
    p.add_argument("--out", default="soak.csv", help="CSV of the samples (default soak.csv)")
    p.add_argument(
        "--dsn", default="postgresql://postgres@127.0.0.1:5432/postgres",
        help="PostgreSQL server; its database is only used to drop the scratch database",
    )  # fmt: skip
    p.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    p.add_argument("--drain-timeout-s", type=float, default=600, help="after publishing (default 600)")
    args = p.parse_args(argv)
    if args.rate <= 0 or args.duration_s <= 0 or args.sample_s <= 0 or args.days < 1:
        p.error("--rate, --duration-s and --sample-s must be positive, --days at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    signal.signal(signal.SIGINT, signal.default_int_handler)  # also when started in the background
    failures = (TickvaultError, asyncpg.PostgresError, aioredis.RedisError, OSError)
    return runner.run(Bench(parse_args(argv)), failures)


if __name__ == "__main__":
    sys.exit(main())
