"""Acceptance: the stored tables are the ones that writing each message once, in publish
order, gives — whatever the batching, the arrival order, claims by other consumers, Kafka
rebalances and redeliveries.

The reference is always the same: `Store.write` of one message at a time, in publish
order, with each message's version, into a schema of its own. Message sets have few keys, so
almost every message conflicts with another: open and closed candles and corrections, order
updates that disagree (an older terminal update, a lower filled_quantity, identity fields
that differ), fills and trades re-sent with other values, and bot-state snapshots with equal
ts/seq.
"""

from __future__ import annotations

import json
import logging
import random
from collections.abc import AsyncIterator, Sequence
from typing import Any

import asyncpg
import pytest
from aiokafka import AIOKafkaProducer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.helpers import Daemon, TestEnv, wait_until
from tickvault.codecs import native
from tickvault.records import RECORD_TYPES
from tickvault.sources import kafka_version, redis_version
from tickvault.store import Store, migrate

T0 = 1_767_225_600_000
TABLES = {
    "klines": ("kline", ("exchange", "symbol", "interval", "open_time")),
    "orders": ("order", ("exchange", "order_id")),
    "order_events": ("order", ()),
    "fills": ("fill", ("exchange", "symbol", "fill_id", "ts")),
    "bot_state": ("bot_state", ("bot_id",)),
    "trades": ("trade", ("exchange", "symbol", "trade_id", "ts")),
}
Message = tuple[str, str]  # (kind, JSON payload)


def _num(rng: random.Random, value: int) -> str:
    """The same value written with a random scale: 5, 5.0, 5.00."""
    return f"{value}" + rng.choice(["", ".0", ".00"])


def _kline(rng: random.Random) -> dict[str, Any]:
    low = rng.randint(90, 100)
    high = low + rng.randint(0, 4)
    return {
        "exchange": "bybit", "symbol": rng.choice(["C16USD", "ETHUSD"]), "interval": "1m",
        "open_time": T0 + 60_000 * rng.randint(0, 1), "open": _num(rng, rng.randint(low, high)),
        "high": _num(rng, high), "low": _num(rng, low), "close": _num(rng, rng.randint(low, high)),
        "volume": _num(rng, rng.randint(0, 9)), "closed": rng.random() < 0.6,
    }  # fmt: skip


def _order(rng: random.Random) -> dict[str, Any]:
    status = rng.choice(["new", "open", "partially_filled", "filled", "canceled", "expired"])
    body: dict[str, Any] = {
        "order_id": rng.choice(["A1", "A2"]), "exchange": "bybit", "symbol": "C16USD", "side": "buy",
        "type": "limit", "status": status, "quantity": "2", "price": "100",
        "updated_at": T0 + rng.randint(0, 3),
    }  # fmt: skip
    if rng.random() < 0.8:  # omitted: 0
        body["filled_quantity"] = _num(rng, rng.randint(0, 2))
    if rng.random() < 0.5:
        body["avg_fill_price"] = _num(rng, rng.randint(99, 100))
    for field, values in (
        ("seq", [1, 2]), ("client_order_id", ["c1", "c2"]), ("bot_id", ["b1"]),
        ("strategy", ["grid", "dca"]), ("created_at", [T0, T0 - 5]),
    ):  # fmt: skip
        if rng.random() < 0.5:
            body[field] = rng.choice(values)
    return body


def _fill(rng: random.Random) -> dict[str, Any]:
    return {
        "fill_id": rng.choice(["F1", "F2"]), "order_id": "A1", "exchange": "bybit", "symbol": "C16USD",
        "side": rng.choice(["buy", "sell"]), "quantity": _num(rng, rng.randint(1, 3)),
        "price": _num(rng, 100), "fee": _num(rng, rng.randint(0, 1)), "ts": T0 + rng.randint(0, 1),
    }  # fmt: skip


def _bot_state(rng: random.Random) -> dict[str, Any]:
    body: dict[str, Any] = {
        "bot_id": rng.choice(["b1", "b2"]),
        "ts": T0 + rng.randint(0, 1),
        "state": {"v": rng.randint(0, 3)},
    }
    if rng.random() < 0.5:
        body["seq"] = rng.randint(0, 1)
    return body


def _trade(rng: random.Random) -> dict[str, Any]:
    body: dict[str, Any] = {
        "exchange": "bybit", "symbol": "C16USD", "trade_id": rng.choice(["T1", "T2"]),
        "price": _num(rng, rng.randint(99, 100)), "quantity": _num(rng, rng.randint(1, 3)),
        "ts": T0 + rng.randint(0, 1),
    }  # fmt: skip
    if rng.random() < 0.5:
        body["side"] = rng.choice(["buy", "SELL"])
    if rng.random() < 0.5:
        body["quote_quantity"] = _num(rng, rng.randint(0, 300))
    return body


MAKERS = {"kline": _kline, "order": _order, "fill": _fill, "bot_state": _bot_state, "trade": _trade}


def message_set(rng: random.Random, n: int) -> list[Message]:
    """n valid messages over few keys, in publish order."""
    kinds = list(MAKERS)
    out = []
    for _ in range(n):
        kind = rng.choice(kinds)
        out.append((kind, json.dumps(MAKERS[kind](rng))))
    return out


async def snapshot(conn: asyncpg.Connection, schema: str) -> dict[str, list[str]]:
    """Every table's rows (values and versions; not ingested_at) as sorted JSON text."""
    out = {}
    for table, (kind, _) in TABLES.items():
        columns = list(RECORD_TYPES[kind].COLUMNS)
        if table != "order_events":
            columns += ["version_ms", "version_seq"]
        select = ", ".join(f'"{c}"' for c in columns)
        rows = await conn.fetch(
            f"SELECT row_to_json(x)::text FROM (SELECT {select} FROM {schema}.{table}) x ORDER BY 1"  # noqa: S608
        )
        out[table] = [r[0] for r in rows]
    return out


async def write_each(store: Store, messages: Sequence[Message], versions: Sequence[str]) -> None:
    """The reference: one message at a time, in the order given."""
    for (kind, payload), version in zip(messages, versions, strict=True):
        result = await store.write(kind, [native.decode_item(payload.encode(), kind)], [version])
        assert not result.rejected


async def write_batches(
    store: Store, messages: Sequence[Message], versions: Sequence[str], rng: random.Random
) -> None:
    """The same messages shuffled, some repeated, in batches of random sizes per kind."""
    arrivals = list(zip(messages, versions, strict=True))
    arrivals += rng.choices(arrivals, k=rng.randint(0, len(arrivals)))
    rng.shuffle(arrivals)
    while arrivals:
        kind = arrivals[0][0][0]
        same = [a for a in arrivals if a[0][0] == kind][: rng.randint(1, 8)]
        for a in same:
            arrivals.remove(a)
        items = [native.decode_item(payload.encode(), kind) for (_, payload), _ in same]
        result = await store.write(kind, items, [version for _, version in same])
        assert not result.rejected


class Scratch:
    """A migrated schema of its own with an open writer Store, for reference writes."""

    def __init__(self, env: TestEnv, suffix: str) -> None:
        self.env = env
        self.schema = f"{env.schema}_{suffix}"
        self.settings = env.settings(postgres={"schema": self.schema})

    async def __aenter__(self) -> Store:
        await migrate.upgrade(self.settings.postgres)
        self.store = Store(self.settings.postgres, writer=True)
        return await self.store.__aenter__()

    async def __aexit__(self, *exc_info: object) -> None:
        await self.store.close()
        conn = await asyncpg.connect(self.env.dsn)
        try:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{self.schema}" CASCADE')
        finally:
            await conn.close()


@pytest.fixture
async def stores(env: TestEnv) -> AsyncIterator[tuple[Store, Store, asyncpg.Connection]]:
    async with Scratch(env, "ref") as reference, Scratch(env, "got") as got:
        conn = await asyncpg.connect(env.dsn, server_settings={"timezone": "UTC"})
        try:
            yield reference, got, conn
        finally:
            await conn.close()


async def truncate(conn: asyncpg.Connection, schema: str) -> None:
    await conn.execute(f"TRUNCATE {', '.join(f'{schema}.{t}' for t in TABLES)}")


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.integers(0, 2**32), st.integers(1, 30))
async def test_any_batching_order_and_repetition_stores_the_publish_order_result(
    stores: tuple[Store, Store, asyncpg.Connection], seed: int, n: int
) -> None:
    reference, got, conn = stores
    rng = random.Random(seed)  # hypothesis' own randoms lean on small values: too few conflicts
    messages = message_set(rng, n)
    # two messages often share a version: one entry id on two streams, one timestamp and
    # offset on two partitions; their tie is broken by their values
    versions = [f"{T0 + i // 2}\t{rng.randint(0, 1)}" for i in range(n)]
    await truncate(conn, reference.schema)
    await truncate(conn, got.schema)
    await write_each(reference, messages, versions)
    await write_batches(got, messages, versions, rng)
    assert await snapshot(conn, got.schema) == await snapshot(conn, reference.schema)


STATUS_RANK = {"new": 0, "open": 1, "partially_filled": 2, "filled": 3, "canceled": 3, "expired": 3}
IDENTITY = ("client_order_id", "bot_id", "strategy", "created_at")


def _rank(record: Any, version: tuple[int, int]) -> tuple[Any, ...]:
    """Each kind's rule, as the README states it: the message of highest rank is stored."""
    if record.KIND == "kline":
        return (record.closed, version)  # closed over open, then the later-published
    if record.KIND in ("fill", "trade"):
        return (-version[0], -version[1])  # the first-published
    seq = -1 if record.seq is None else record.seq
    if record.KIND == "bot_state":
        return (record.ts, seq, version)
    rank = STATUS_RANK[record.status]
    return (rank == 3, record.status == "filled", record.updated_at, seq, rank, version)


def _fill_progress(order: Any) -> tuple[Any, ...]:
    """Greatest wins: more filled, then a known average price, then the values' text."""
    avg = order.avg_fill_price
    return (order.filled_quantity, avg is not None, avg or 0, str(order.filled_quantity), str(avg or ""))


def oracle(messages: Sequence[Message], versions: Sequence[str]) -> dict[str, list[tuple[Any, ...]]]:
    """The stored rows, from the rules written out in Python (versions must be distinct)."""
    best: dict[tuple[Any, ...], tuple[tuple[Any, ...], Any]] = {}
    merged: dict[tuple[Any, ...], dict[str, Any]] = {}  # per order: identity fields, fill progress
    for (kind, payload), version in zip(messages, versions, strict=True):
        record = native.decode(payload.encode(), kind)
        table = record.TABLE
        key = (table, *(getattr(record, k) for k in TABLES[table][1]))
        rank = _rank(record, tuple(map(int, version.split("\t"))))  # type: ignore[arg-type]
        if key not in best or rank > best[key][0]:
            best[key] = (rank, record)
        if kind == "order":
            known = merged.setdefault(key, {"progress": record})
            for field in IDENTITY:
                value = getattr(record, field)
                if value is not None:
                    known[field] = max(known.get(field, value), value)
            if _fill_progress(record) > _fill_progress(known["progress"]):
                known["progress"] = record
    out: dict[str, list[tuple[Any, ...]]] = {t: [] for t in TABLES if t != "order_events"}
    for key, (_, record) in best.items():
        if record.KIND == "order":
            fields = dict(merged[key])
            progress = fields.pop("progress")
            fields |= {f: getattr(progress, f) for f in ("filled_quantity", "avg_fill_price")}
            record = record.model_copy(update=fields)
        out[key[0]].append(stored_form(record.row()))
    return {table: sorted(rows, key=repr) for table, rows in out.items()}


def stored_form(row: tuple[Any, ...]) -> tuple[Any, ...]:
    """Decimals as text (their scale kept); bot state as a parsed object."""
    return tuple(
        json.loads(v) if isinstance(v, str) and v.startswith("{") else str(v) if v is not None else None
        for v in row
    )


async def stored_rows(conn: asyncpg.Connection, schema: str) -> dict[str, list[tuple[Any, ...]]]:
    out = {}
    for table, (kind, _) in TABLES.items():
        if table == "order_events":
            continue
        select = ", ".join(f'"{c}"' for c in RECORD_TYPES[kind].COLUMNS)
        rows = await conn.fetch(f"SELECT {select} FROM {schema}.{table}")  # noqa: S608
        out[table] = sorted((stored_form(tuple(r)) for r in rows), key=repr)
    return out


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.integers(0, 2**32), st.integers(1, 30))
async def test_the_stored_rows_follow_each_kinds_rule_in_publish_order(
    stores: tuple[Store, Store, asyncpg.Connection], seed: int, n: int
) -> None:
    _, got, conn = stores
    rng = random.Random(seed)
    messages = message_set(rng, n)
    versions = [f"{T0 + i}\t0" for i in range(n)]
    await truncate(conn, got.schema)
    await write_batches(got, messages, versions, rng)
    assert await stored_rows(conn, got.schema) == oracle(messages, versions)


def closed_candle(close: str, volume: str) -> str:
    return json.dumps({
        "exchange": "bybit", "symbol": "C16USD", "interval": "1m", "open_time": 1767225600000,
        "open": "100", "high": "101", "low": "99", "close": close, "volume": volume, "closed": True,
    })  # fmt: skip


@pytest.mark.parametrize("source", ["redis"], indirect=True)
async def test_a_candle_claimed_from_a_dead_consumer_does_not_undo_its_correction(
    env: TestEnv, daemon: Daemon
) -> None:
    stream = env.stream("kline")
    for name in env.topics:
        await env.redis.xgroup_create(name, env.group, id="0", mkstream=True)
    await env.add("kline", closed_candle("100", "5").encode())  # A
    await env.redis.xreadgroup(env.group, "dead", {stream: ">"}, count=1)  # read, never acknowledged
    await env.add("kline", closed_candle("100.5", "5.5").encode())  # B, its correction
    await daemon.start()

    async def b_stored() -> bool:
        return await env.count("klines") == 1

    await wait_until(b_stored, 30, what="the correction to be stored")
    await daemon.drain()  # includes claiming A from "dead" (redis.claim_idle_s = 2)
    assert await env.redis.xpending(stream, env.group) == {
        "pending": 0, "min": None, "max": None, "consumers": []
    }  # fmt: skip
    rows = await env.fetch("SELECT close::text, volume::text FROM {s}.klines")
    assert [tuple(r) for r in rows] == [("100.5", "5.5")]


async def reference_snapshot(
    env: TestEnv, messages: Sequence[Message], versions: Sequence[str]
) -> dict[str, list[str]]:
    async with Scratch(env, "ref") as reference:
        await write_each(reference, messages, versions)
        conn = await asyncpg.connect(env.dsn, server_settings={"timezone": "UTC"})
        try:
            return await snapshot(conn, reference.schema)
        finally:
            await conn.close()


async def stored_snapshot(env: TestEnv) -> dict[str, list[str]]:
    conn = await asyncpg.connect(env.dsn, server_settings={"timezone": "UTC"})
    try:
        return await snapshot(conn, env.schema)
    finally:
        await conn.close()


def random_batching(env: TestEnv, rng: random.Random) -> dict[str, Any]:
    return {"max_rows": rng.randint(1, 25), "writers_per_kind": rng.randint(1, 3)}


@pytest.mark.parametrize("seed", [1, 2])
@pytest.mark.parametrize("source", ["redis"], indirect=True)
async def test_redis_claims_and_redelivery_store_the_publish_order_result(
    env: TestEnv, daemon: Daemon, seed: int
) -> None:
    rng = random.Random(seed)
    messages = message_set(rng, 120)
    for name in env.topics:
        await env.redis.xgroup_create(name, env.group, id="0", mkstream=True)
    versions = [redis_version(await env.add(kind, payload.encode())) for kind, payload in messages]
    for ghost in ("ghost1", "ghost2"):  # consumers that read the oldest entries and die
        for kind in MAKERS:
            await env.redis.xreadgroup(env.group, ghost, {env.stream(kind): ">"}, count=rng.randint(1, 8))
    await daemon.start(env.settings(batch=random_batching(env, rng)))
    await daemon.drain()
    expected = await reference_snapshot(env, messages, versions)
    assert await stored_snapshot(env) == expected

    assert await daemon.stop_all() == [0]
    for kind in MAKERS:  # every entry delivered again, to a daemon that batches differently
        await env.redis.xgroup_setid(env.stream(kind), env.group, id="0")
    await daemon.start(env.settings(batch=random_batching(env, rng)))
    await daemon.drain()
    assert await stored_snapshot(env) == expected


async def publish_to_random_partitions(
    env: TestEnv, messages: Sequence[Message], rng: random.Random
) -> list[str]:
    """Each message to a random partition, with timestamps that often tie; returns versions."""
    assert env.kafka is not None
    producer = AIOKafkaProducer(bootstrap_servers=env.kafka.bootstrap, linger_ms=5)
    await producer.start()
    try:
        versions = []
        for i, (kind, payload) in enumerate(messages):
            topic, partition = env.stream(kind), rng.randrange(env.partitions)
            meta = await producer.send_and_wait(
                topic, payload.encode(), partition=partition, timestamp_ms=T0 + i // 3
            )
            env._ends[(topic, partition)] = max(env._ends.get((topic, partition), 0), meta.offset + 1)
            versions.append(kafka_version(T0 + i // 3, meta.offset))
        return versions
    finally:
        await producer.stop()


@pytest.mark.parametrize("seed", [3])
@pytest.mark.parametrize("source", ["kafka"], indirect=True)
async def test_kafka_rebalances_and_redelivery_store_the_publish_order_result(
    env: TestEnv, daemon: Daemon, seed: int, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="tickvault.sources.kafka")
    rng = random.Random(seed)
    messages = message_set(rng, 120)
    versions = await publish_to_random_partitions(env, messages, rng)
    first, _ = await daemon.start(env.settings(batch=random_batching(env, rng)))
    await daemon.start(env.settings(batch=random_batching(env, rng), kafka={"client_id": "c2"}))
    first.set()  # the first member leaves: its partitions move to the second
    await daemon.drain()
    moves = [r.getMessage() for r in caplog.records if "partitions revoked" in r.getMessage()]
    assert moves, "no rebalance happened"
    expected = await reference_snapshot(env, messages, versions)
    assert await stored_snapshot(env) == expected
    assert sorted(await daemon.stop_all()) == [0, 0]

    again = f"{env.group}-again"  # a new group reads every record once more
    await daemon.start(env.settings(batch=random_batching(env, rng), kafka={"group_id": again}))
    assert env.kafka is not None

    async def reread() -> bool:
        committed = await env.kafka.committed(again, env._ends)  # type: ignore[union-attr]
        return committed == env._ends

    await wait_until(reread, 120, what="the second group to read everything")
    assert await stored_snapshot(env) == expected
