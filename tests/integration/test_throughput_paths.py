"""What makes ingest fast keeps it correct: klines and fills COPYed straight into their table
only when every key is new, writers per kind keyed so each row has one, Redis reads on a
connection of their own that is reopened when it drops, and read counts shared among the
streams that have entries waiting."""

from __future__ import annotations

import asyncio
import json
from collections import defaultdict
from decimal import Decimal
from typing import Any, cast

import pytest

from tests.helpers import TestEnv
from tickvault.codecs import native
from tickvault.pipeline import Pipeline, PipelineConfig, Route, Routes
from tickvault.rows import Row
from tickvault.sources import Message, new_message
from tickvault.sources.redis_streams import RedisStreamsSource
from tickvault.store import UPSERTS_AFTER_CONFLICT, Store, WriteResult, migrate, writers

T0 = 1_767_225_600_000


def kline(minute: int, close: str = "1.5", symbol: str = "BTCUSDT", closed: bool = True) -> bytes:
    return json.dumps({
        "exchange": "binance", "symbol": symbol, "interval": "1m", "open_time": T0 + minute * 60_000,
        "open": "1", "high": "2", "low": "1", "close": close, "volume": "10", "closed": closed,
    }).encode()  # fmt: skip


def rows(*payloads: bytes) -> list[Row]:
    return [cast(Row, native.decode_item(p, "kline")) for p in payloads]


_published = iter(range(1, 1_000_000))


def versions(n: int) -> list[str]:
    """Versions of n messages published one after another (and after every earlier call)."""
    return [f"{next(_published)}\t0" for _ in range(n)]


async def write(store: Store, *payloads: bytes) -> WriteResult:
    return await store.write("kline", rows(*payloads), versions(len(payloads)))


async def closes(env: TestEnv) -> dict[int, Decimal]:
    found = await env.fetch("SELECT open_time, close FROM {s}.klines ORDER BY open_time")
    return {int(r[0].timestamp() * 1000 - T0) // 60_000: r[1] for r in found}


async def test_new_rows_are_copied_in_whole_and_a_stored_key_refuses_the_whole_batch(env: TestEnv) -> None:
    settings = env.settings()
    await migrate.upgrade(settings.postgres)
    w = writers.build_writers(env.schema)["kline"]
    async with Store(settings.postgres, writer=True) as store, store.pool.acquire() as conn:
        assert await writers.insert(conn, env.schema, w, rows(kline(0), kline(1)), versions(2)) == {
            "klines": 2
        }
        # minute 2 is new, minute 1 is stored: nothing of the batch is written
        batch = rows(kline(2), kline(1, "1.75"))
        assert await writers.insert(conn, env.schema, w, batch, versions(2)) is None
        batch = rows(kline(3), kline(3, "1.75"))
        assert await writers.insert(conn, env.schema, w, batch, versions(2)) is None
        assert await closes(env) == {0: Decimal("1.5"), 1: Decimal("1.5")}


async def test_a_refused_insert_is_upserted_and_the_next_batches_go_straight_to_the_upsert(
    env: TestEnv,
) -> None:
    settings = env.settings()
    await migrate.upgrade(settings.postgres)
    async with Store(settings.postgres, writer=True) as store:
        await write(store, kline(0, closed=False))
        assert store._upserts_left["kline"] == 0  # all new: inserted, no upsert to come

        written = await write(store, kline(0, "1.75"), kline(1))  # closes minute 0
        assert written.written == {"klines": 2}
        assert store._upserts_left["kline"] == UPSERTS_AFTER_CONFLICT - 1
        assert await closes(env) == {0: Decimal("1.75"), 1: Decimal("1.5")}

        for minute in range(2, 2 + UPSERTS_AFTER_CONFLICT - 1):
            await write(store, kline(minute))
        assert store._upserts_left["kline"] == 0  # the next batch tries the insert again
        await write(store, kline(0, "1.25", closed=False), kline(99))  # an open candle after the close
        assert (await closes(env))[0] == Decimal("1.75")
        assert len(await closes(env)) == UPSERTS_AFTER_CONFLICT + 2


def test_each_row_key_has_one_writer_and_keys_spread_over_all_writers() -> None:
    config = PipelineConfig(writers_per_kind=3)
    route = Route("kline", native.decode_item)
    pipeline = Pipeline(cast(Any, None), cast(Any, None), Routes({"klines": route}), config)
    messages = [
        new_message(("redis", "klines", f"{i}-0", kline(i // 40, str(1 + i % 7 / 10), f"S{i % 40}"), None))
        for i in range(400)
    ]
    pipeline._take(messages)
    writers_of: dict[str, set[str]] = defaultdict(set)
    for key in ("kline/0", "kline/1", "kline/2"):
        items, taken = pipeline.batcher.take(key)
        assert taken == sorted(taken, key=lambda m: int(m.entry_id.split("-")[0]))  # read order kept
        for item in items:
            writers_of[item.writer_key].add(key)
    assert len(writers_of) == 40
    assert all(len(keys) == 1 for keys in writers_of.values())
    assert set().union(*writers_of.values()) == {"kline/0", "kline/1", "kline/2"}


async def _read_until(source: RedisStreamsSource, n: int) -> list[Message]:
    got: list[Message] = []
    async with asyncio.timeout(20):
        while len(got) < n:
            got += await source.read(100, 0.05)
    return got


@pytest.mark.parametrize("source", ["redis"], indirect=True)
async def test_a_dropped_redis_read_connection_is_reopened(env: TestEnv) -> None:
    settings = env.settings()
    stream = env.stream("kline")
    async with RedisStreamsSource(settings.redis, [stream]) as source:
        await env.publish("kline", [kline(0)])
        assert [m.payload for m in await _read_until(source, 1)] == [kline(0)]
        reads = source._reads
        assert reads is not None
        await reads.send_command("CLIENT", "ID")
        client_id = await reads.read_response()
        assert await env.redis.client_kill_filter(_id=client_id) == 1

        await env.publish("kline", [kline(1)])
        assert [m.payload for m in await _read_until(source, 1)] == [kline(1)]


@pytest.mark.parametrize("source", ["redis"], indirect=True)
async def test_redis_reads_share_their_count_among_the_streams_with_entries_waiting(env: TestEnv) -> None:
    settings = env.settings()
    async with RedisStreamsSource(settings.redis, [env.stream("kline"), env.stream("fill")]) as source:
        while source._recovering:  # first the recovery of own pending entries: none here
            assert await source.read(100, 0.05) == []
        await env.publish("kline", [kline(i) for i in range(300)])
        sizes = [len(await source.read(100, 0.05)) for _ in range(3)]
        assert sizes == [50, 100, 100]  # COUNT 50 per stream, then 100 for the only busy one
