"""Shared pieces of the kill and restart scenarios: a mixed workload spread over days, the
tally of what landed (lost, duplicated, altered) in the hot tier or hot + cold, and a
private redis-server the tests may kill and start again empty.

The tally compares rows by key with what was sent: `lost` counts keys sent and not stored,
`duplicated` keys stored more than once (a second copy in the other tier, or an order event
appended twice), `altered` keys whose stored values are not Decimal-equal to what was sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import random
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
from pyiceberg.exceptions import NoSuchTableError

from tests.fault import report
from tests.helpers import TestEnv, free_port, wait_for_port, wait_until
from tests.integration import workload
from tickvault.archive import roller
from tickvault.archive import table as cold_table
from tickvault.settings import Settings

HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS
# kind -> (table, key columns, compared columns)
TABLES: dict[str, tuple[str, tuple[str, ...], tuple[str, ...]]] = {
    "kline": (
        "klines", ("exchange", "symbol", "interval", "open_time"),
        ("exchange", "symbol", "interval", "open_time", "close_time", "open", "high", "low", "close",
         "volume", "quote_volume", "trades", "closed"),
    ),
    "order": (
        "orders", ("exchange", "order_id"),
        ("order_id", "client_order_id", "exchange", "symbol", "side", "type", "status", "quantity",
         "price", "stop_price", "filled_quantity", "avg_fill_price", "bot_id", "strategy",
         "created_at", "updated_at", "seq"),
    ),
    "fill": (
        "fills", ("exchange", "symbol", "fill_id"),
        ("fill_id", "order_id", "exchange", "symbol", "side", "quantity", "price", "fee", "fee_asset",
         "liquidity", "bot_id", "strategy", "ts"),
    ),
    "trade": (
        "trades", ("exchange", "symbol", "trade_id", "ts"),
        ("exchange", "symbol", "trade_id", "price", "quantity", "side", "quote_quantity", "ts"),
    ),
    "bot_state": ("bot_state", ("bot_id",), ("bot_id", "ts", "seq", "state")),
}  # fmt: skip
COLD_KINDS = ("kline", "fill", "trade")  # kinds whose table the roller moves to the cold tier


def ts(ms: int) -> dt.datetime:
    return workload.ts(ms)


def _price(rng: random.Random) -> Decimal:
    return Decimal(rng.randrange(1, 10**12)) / Decimal(10**8)


def mixed(
    n: int, seed: int, t0_ms: int = workload.T0_MS, days: float = 1, first_id: int = 0
) -> workload.Workload:
    """About `n` messages: 50% 1h klines, 15% orders, 15% fills, 15% trades, 5% bot states,
    their times spread evenly over `days` days from `t0_ms`; every key distinct. Orders and
    bot states come from tests/integration/workload.py (ids from 0), the rest is built here
    with ids from `first_id`."""
    orders, states = n * 15 // 100, n * 5 // 100
    w = workload.build(klines=0, orders=orders, fills=0, states=states, seed=seed)
    rng = random.Random(seed)
    span_ms = int(days * DAY_MS)
    w.payloads |= {"kline": [], "fill": [], "trade": []}
    w.expected |= {"kline": {}, "fill": {}, "trade": {}}
    _klines(w, n // 2, rng, t0_ms, span_ms)
    for i in range(n * 15 // 100):
        at_ms = t0_ms + i * span_ms // max(1, n * 15 // 100)
        _fill(w, first_id + i, rng, at_ms, orders)
        _trade(w, first_id + i, rng, at_ms + 7)
    return w


def _klines(w: workload.Workload, n: int, rng: random.Random, t0_ms: int, span_ms: int) -> None:
    symbols = max(1, n * HOUR_MS // span_ms)  # one candle per symbol and hour over the span
    for i in range(n):
        symbol, open_ms = f"K{i % symbols}", t0_ms + (i // symbols) * HOUR_MS
        low = _price(rng)
        high = low + _price(rng)
        close = (high - (high - low) / 3).quantize(Decimal("1E-18"))
        volume = Decimal(f"{rng.randrange(10**20)}.{rng.randrange(10**9):09d}")
        row = {
            "exchange": "okx", "symbol": symbol, "interval": "1h", "open_time": ts(open_ms),
            "close_time": ts(open_ms + HOUR_MS - 1), "open": low, "high": high, "low": low,
            "close": close, "volume": volume, "quote_volume": None, "trades": i, "closed": True,
        }  # fmt: skip
        w.expected["kline"][("okx", symbol, "1h", ts(open_ms))] = row
        w.payloads["kline"].append(
            f'{{"exchange":"okx","symbol":"{symbol}","interval":"1h","open_time":{open_ms},'
            f'"close_time":{open_ms + HOUR_MS - 1},"open":{low},"high":"{high}","low":{low},'
            f'"close":"{close}","volume":{volume},"trades":{i}}}'
        )


def _fill(w: workload.Workload, i: int, rng: random.Random, at_ms: int, orders: int) -> None:
    qty, price, fee = Decimal(rng.randrange(1, 10**6)) / 1000, _price(rng), -Decimal(i) / 10**9
    symbol = f"SYM{i % 50}"
    w.expected["fill"][("bybit", symbol, f"f{i}")] = {
        "fill_id": f"f{i}", "order_id": f"o{i % max(orders, 1)}", "exchange": "bybit",
        "symbol": symbol, "side": "sell", "quantity": qty, "price": price, "fee": fee,
        "fee_asset": "USDT", "liquidity": "taker", "bot_id": None, "strategy": None, "ts": ts(at_ms),
    }  # fmt: skip
    w.payloads["fill"].append(
        f'{{"fill_id":"f{i}","order_id":"o{i % max(orders, 1)}","exchange":"bybit",'
        f'"symbol":"{symbol}","side":"sell","quantity":{qty},"price":"{price}","fee":{fee},'
        f'"fee_asset":"USDT","liquidity":"TAKER","ts":"{ts(at_ms).isoformat()}"}}'
    )


def _trade(w: workload.Workload, i: int, rng: random.Random, at_ms: int) -> None:
    price, qty = _price(rng), Decimal(rng.randrange(1, 10**9)) / 10**6
    symbol, trade_id = f"T{i % 20}", str(9_000_000_000 + i)
    w.expected["trade"][("binance", symbol, trade_id, ts(at_ms))] = {
        "exchange": "binance", "symbol": symbol, "trade_id": trade_id, "price": price,
        "quantity": qty, "side": "buy" if i % 2 else None, "quote_quantity": None, "ts": ts(at_ms),
    }  # fmt: skip
    side = ',"side":"BUY"' if i % 2 else ""
    w.payloads["trade"].append(
        f'{{"exchange":"binance","symbol":"{symbol}","trade_id":"{trade_id}","price":{price},'
        f'"quantity":"{qty}"{side},"ts":{at_ms}}}'
    )


def slices(w: workload.Workload, n: int) -> list[dict[str, list[str]]]:
    """The workload cut into `n` consecutive parts, each holding its share of every kind."""
    out: list[dict[str, list[str]]] = [{} for _ in range(n)]
    for kind, payloads in w.payloads.items():
        step = -(-len(payloads) // n)
        for i in range(n):
            out[i][kind] = payloads[i * step : (i + 1) * step]
    return out


async def publish(env: TestEnv, part: dict[str, list[str]], chunk: int = 500, pause_s: float = 0.02) -> int:
    """Publish `part` in chunks that interleave the kinds, pausing between chunks so ingest
    runs while publishing; the number of messages published."""
    sent, offset = 0, 0
    while any(offset < len(p) for p in part.values()):
        for kind, payloads in part.items():
            if offset < len(payloads):
                sent += await env.publish(kind, payloads[offset : offset + chunk])
        offset += chunk
        await asyncio.sleep(pause_s)
    return sent


async def stored_total(env: TestEnv) -> int:
    """Rows in the hot tables so far (0 before the daemon's first migration)."""
    try:
        rows = await env.fetch(
            "SELECT (SELECT count(*) FROM {s}.klines) + (SELECT count(*) FROM {s}.orders)"
            " + (SELECT count(*) FROM {s}.fills) + (SELECT count(*) FROM {s}.bot_state)"
            " + (SELECT count(*) FROM {s}.trades)"
        )
    except (asyncpg.UndefinedTableError, asyncpg.InvalidSchemaNameError):
        return 0
    return int(rows[0][0])


async def part_way(env: TestEnv, before: int, size: int, rng: random.Random) -> float:
    """Wait until a random fraction (5-95%) of a round's `size` messages is stored beyond
    `before` rows: a kill then lands mid-ingest however fast the machine is. The fraction."""
    fraction = rng.uniform(0.05, 0.95)
    target = before + max(1, int(fraction * size))

    async def reached() -> bool:
        return await stored_total(env) >= target

    await wait_until(reached, 90, 0.01, f"{fraction:.0%} of the round to be stored")
    return fraction


@dataclass
class Tally:
    """What landed, against what was sent."""

    sent: int = 0
    lost: int = 0
    duplicated: int = 0
    altered: int = 0
    examples: tuple[str, ...] = ()
    missing: tuple[tuple[str, Any], ...] = ()  # (kind, key) of every key lost

    def add(
        self, kind: str, expected: dict[Any, dict[str, Any]], found: list[tuple[Any, dict[str, Any]]]
    ) -> int:
        """Count `found` (key, row) pairs against `expected`; the number of expected keys found."""
        self.sent += len(expected)
        seen: dict[Any, dict[str, Any]] = {}
        notes = list(self.examples)
        for key, row in found:
            if key in seen:
                self.duplicated += 1
                notes.append(f"{kind} {key} twice")
            seen[key] = row
        for key, want in expected.items():
            got = seen.get(key)
            if got is None:
                self.lost += 1
                self.missing += ((kind, key),)
                notes.append(f"{kind} {key} lost")
            elif {c: got[c] for c in want} != want:
                self.altered += 1
                notes.append(f"{kind} {key}: {got} != {want}")
        unexpected = len(set(seen) - set(expected))
        if unexpected:
            notes.append(f"{kind}: {unexpected} rows never sent")
        self.altered += unexpected
        self.examples = tuple(notes[:5])
        return len(set(seen) & set(expected))


def _row(kind: str, raw: dict[str, Any]) -> dict[str, Any]:
    if kind == "bot_state" and isinstance(raw.get("state"), str):
        raw = {**raw, "state": json.loads(raw["state"], parse_float=Decimal)}
    return raw


async def hot(env: TestEnv, kind: str) -> list[tuple[Any, dict[str, Any]]]:
    table, key, columns = TABLES[kind]
    quoted = ", ".join(f'"{c}"' for c in columns)
    rows = await env.fetch(f"SELECT {quoted} FROM {{s}}.{table}")  # noqa: S608 - our identifiers
    return [(tuple(r[k] for k in key), _row(kind, dict(r))) for r in rows]


def cold(settings: Settings, kind: str) -> list[tuple[Any, dict[str, Any]]]:
    """Every row of `kind`'s cold table (none before its first commit)."""
    table, key, columns = TABLES[kind]
    catalog = cold_table.open_catalog(settings)
    try:
        arrow = catalog.load_table(f"{settings.postgres.schema_name}.{table}").scan().to_arrow()
    except NoSuchTableError:
        return []
    finally:
        cold_table.close_catalog(catalog)
    return [(tuple(r[k] for k in key), r) for r in arrow.select(list(columns)).to_pylist()]


async def tally(env: TestEnv, w: workload.Workload, settings: Settings | None = None) -> Tally:
    """Compare every table with `w`: the hot tier, plus the cold tier when `settings` has one.
    Order events: one per order stored (each order is sent once), in either tier."""
    t, orders = Tally(), 0
    for kind, expected in w.expected.items():
        found = await hot(env, kind)
        if settings is not None and kind in COLD_KINDS:
            found += await asyncio.to_thread(cold, settings, kind)
        stored = t.add(kind, expected, found)
        orders = stored if kind == "order" else orders
    events = await env.count("order_events")
    if settings is not None:
        events += await asyncio.to_thread(_cold_count, settings, "order_events")
    t.duplicated += max(0, events - orders)
    t.lost += max(0, orders - events)
    return t


def _cold_count(settings: Settings, name: str) -> int:
    catalog = cold_table.open_catalog(settings)
    try:
        return len(catalog.load_table(f"{settings.postgres.schema_name}.{name}").scan().to_arrow())
    except NoSuchTableError:
        return 0
    finally:
        cold_table.close_catalog(catalog)


def record_and_check(scenario: str, rounds: int, t: Tally, detail: str = "", sent: int | None = None) -> None:
    """Record the scenario's figures, then fail unless every message landed exactly once."""
    report.record(
        report.FaultFigures(scenario, rounds, t.sent if sent is None else sent, t.lost, t.duplicated, detail)
    )
    assert (t.lost, t.duplicated, t.altered) == (0, 0, 0), t.examples


class RedisServer:
    """A redis-server of the test's own on a free port, without persistence: `kill` then
    `start` brings it back empty, as a Redis without AOF/RDB comes back from a crash."""

    def __init__(self, work_dir: Path) -> None:
        self.port = free_port()
        self.work_dir = work_dir
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        binary = shutil.which("redis-server") or "/usr/bin/redis-server"
        cmd = [
            binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
            "--dir", str(self.work_dir), "--protected-mode", "no",
        ]  # fmt: skip
        self.starts += 1
        with (self.work_dir / "redis.log").open("ab") as log:
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
        wait_for_port(self.port, self.proc, "redis-server")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
        if self.proc is not None:
            self.proc.wait(10)


@contextlib.contextmanager
def redis_server() -> Iterator[RedisServer]:
    """A started RedisServer, killed and reaped at the end."""
    work_dir = Path(tempfile.mkdtemp(prefix="tickvault-redis-"))
    server = RedisServer(work_dir)
    try:
        server.start()
        yield server
    finally:
        server.kill()
        shutil.rmtree(work_dir, ignore_errors=True)


async def holds_roll_lock(env: TestEnv) -> bool:
    """Whether a roller holds the roll lock of the test's database."""
    key = roller.ROLL_LOCK_KEY
    held = await env.fetch(
        "SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND granted "
        "AND classid = $1 AND objid = $2 AND objsubid = 1"
        # the lock is per database: a roller of another test session must not count
        " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
        key >> 32,
        key & 0xFFFF_FFFF,
    )
    return bool(held)
