"""Fault suite: the broker restarts under a running daemon, round after round.

- Kafka: a Tansu broker of the test's own, whose topics and committed offsets live in S3
  (moto), is SIGKILLed mid-ingest and started again with its data; the daemon stays up,
  resumes by itself, and stores every message exactly once.
- Redis: a redis-server of the test's own without persistence, the daemon's source and
  bot-state cache, is SIGKILLed mid-ingest and started again empty. The daemon stays up,
  recreates its consumer group (NOGROUP) and reads what is published afterwards; the
  bot-state cache is refilled from PostgreSQL. What Redis lost with its memory — entries
  published but not yet read — is the broker's loss, counted apart: every entry the daemon
  had been delivered before the crash, and every entry published after, is stored once.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import random
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import pytest
import redis.asyncio as aioredis

from tests.fault import common
from tests.fault.report import rounds
from tests.helpers import Daemon, TestEnv, free_port, wait_until
from tickvault.settings import Settings
from tickvault.sources.redis_streams import RedisStreamsSource
from tickvault.state import StateCache

SMALL_BATCHES = {"max_rows": 300, "max_age_s": 0.05}


# ---- Kafka broker restart ------------------------------------------------------------------


@pytest.mark.parametrize("source", ["kafka"], indirect=True)
async def test_kafka_broker_restarts_mid_ingest(durable_kafka: TestEnv) -> None:
    env = durable_kafka
    assert env.kafka is not None
    n_rounds = rounds(3)
    w = common.mixed(1_500 * (n_rounds + 1), seed=43)
    parts = common.slices(w, n_rounds + 1)
    rng, landed = random.Random(1943), []
    daemon = Daemon(env)
    # small polls and a small backlog: reading trails publishing, so the broker dies mid-ingest
    paced = {**SMALL_BATCHES, "max_rows": 100, "max_backlog_rows": 200}
    _, task = await daemon.start(env.settings(batch=paced, kafka={"max_poll_records": 50}))
    try:
        for r in range(n_rounds):
            before = await common.stored_total(env)
            await common.publish(env, parts[r], chunk=300)
            await env.close_producer()  # a fresh producer after the restart

            fraction = await common.part_way(env, before, sum(map(len, parts[r].values())), rng)
            down_s = rng.uniform(0.5, 3.0)
            uncommitted = await env.unsettled()
            env.kafka.kill()
            await asyncio.sleep(down_s)
            assert not task.done(), "the daemon must wait for the broker, not exit"
            env.kafka.start()  # same port, same storage
            landed.append(
                f"round {r}: killed {fraction:.0%} in ({uncommitted} uncommitted), down {down_s:.1f} s"
            )
        await common.publish(env, parts[-1], chunk=300)
        await daemon.drain(timeout_s=180)
    finally:
        codes = await daemon.stop_all()
    assert codes == [0]
    tally = await common.tally(env, w)
    assert await env.count("dead_letters") == 0
    print("\n".join(landed))
    common.record_and_check("Kafka broker restart (data kept)", n_rounds, tally, landed[0])


# ---- Redis restart with data loss ----------------------------------------------------------


@pytest.fixture
async def lossy_redis(env: TestEnv) -> AsyncIterator[tuple[TestEnv, common.RedisServer]]:
    """The test's environment on a redis-server of its own that comes back empty."""
    with common.redis_server() as server:
        client = aioredis.Redis.from_url(server.url)
        try:
            yield dataclasses.replace(env, redis=client, redis_url=server.url), server
        finally:
            await client.aclose()


Published = list[tuple[str, str, str, int]]  # (stream, entry id, kind, index in the workload)


async def xadd(env: TestEnv, part: dict[str, list[str]], first: dict[str, int]) -> Published:
    """Publish `part` (kind -> payloads, which are the workload's from index first[kind]);
    every entry with its id."""
    out: Published = []
    for kind, payloads in part.items():
        stream = env.stream(kind)
        for start in range(0, len(payloads), 300):
            async with env.redis.pipeline(transaction=False) as pipe:
                for p in payloads[start : start + 300]:
                    pipe.xadd(stream, {"data": p})
                ids = await pipe.execute()
            out += [(stream, i.decode(), kind, first[kind] + start + n) for n, i in enumerate(ids)]
            await asyncio.sleep(0.01)
    return out


def _id(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq)


async def delivered(env: TestEnv) -> dict[str, tuple[int, int]]:
    """Per stream, the id of the last entry the group was delivered (0-0 when none)."""
    out = {}
    for stream in env.topics:
        out[stream] = (0, 0)
        if await env.redis.exists(stream):
            for group in await env.redis.xinfo_groups(stream):
                if group["name"].decode() == env.group:
                    out[stream] = _id(group["last-delivered-id"].decode())
    return out


async def settled(env: TestEnv, task: asyncio.Task[int]) -> bool:
    """Every entry of every stream delivered to the group and acknowledged. (A stream the
    group is missing from — Redis came back empty and the daemon has not recreated the group
    yet — is not settled while it holds entries.)"""
    assert not task.done(), f"the daemon exited: {task.result()}"
    for stream in env.topics:
        if not await env.redis.exists(stream):
            continue
        groups = {g["name"].decode(): g for g in await env.redis.xinfo_groups(stream)}
        group = groups.get(env.group)
        if group is None or group["pending"] or group["lag"] is None or group["lag"]:
            return False
    return True


async def cache_matches_postgres(env: TestEnv, settings: Settings) -> bool:
    """Every bot's snapshot in PostgreSQL is in the Redis cache, Decimal-equal."""
    rows = await env.fetch("SELECT bot_id, ts, seq, state FROM {s}.bot_state")
    async with StateCache(settings.redis, settings.state) as cache:
        for r in rows:
            cached = await cache.get(r["bot_id"])
            want = json.loads(r["state"], parse_float=Decimal)
            if cached is None or (cached.ts, cached.seq, cached.state) != (r["ts"], r["seq"], want):
                return False
    return bool(rows)


async def test_redis_restarts_empty_mid_ingest(lossy_redis: tuple[TestEnv, common.RedisServer]) -> None:
    env, server = lossy_redis
    n_rounds = rounds(3)
    w = common.mixed(1_000 * (n_rounds + 1), seed=47)
    keys = {kind: list(expected) for kind, expected in w.expected.items()}
    parts = common.slices(w, n_rounds + 1)
    rng, landed = random.Random(1947), []
    must: set[tuple[str, Any]] = set()  # delivered before a crash, or published after the last
    first = dict.fromkeys(w.payloads, 0)
    # small reads and a small backlog: reading trails publishing, so a crash finds entries
    # unread, delivered-unacknowledged and acknowledged
    settings = env.settings(
        batch={**SMALL_BATCHES, "max_rows": 100, "max_backlog_rows": 200},
        redis={"read_count": 50},
        metrics={"enabled": True, "port": free_port(), "lag_interval_s": 0.3},
    )
    daemon = Daemon(env)
    _, task = await daemon.start(settings)
    try:
        for r in range(n_rounds):
            before = await common.stored_total(env)
            sent = await xadd(env, parts[r], first)
            first = {kind: first[kind] + len(p) for kind, p in parts[r].items()}

            fraction = await common.part_way(env, before, sum(map(len, parts[r].values())), rng)
            down_s = rng.uniform(0.2, 2.0)
            read = await delivered(env)
            must |= {(kind, keys[kind][i]) for stream, e, kind, i in sent if _id(e) <= read[stream]}
            await asyncio.to_thread(server.kill)
            await asyncio.sleep(down_s)
            assert not task.done(), "the daemon must wait for Redis, not exit"
            await asyncio.to_thread(server.start)  # same port, empty
            await env.redis.connection_pool.disconnect()  # the test's client: no stale sockets
            landed.append(f"round {r}: killed {fraction:.0%} in, down {down_s:.1f} s")
        sent = await xadd(env, parts[-1], first)
        must |= {(kind, keys[kind][i]) for _, _, kind, i in sent}
        await wait_until(lambda: settled(env, task), 180, 0.2, "everything to be read and acknowledged")
        await wait_until(lambda: cache_matches_postgres(env, settings), 60, 0.3, "the cache to be refilled")
    finally:
        codes = await daemon.stop_all()
    assert codes == [0]
    assert await env.count("dead_letters") == 0
    tally = await common.tally(env, w)
    broker_lost = set(tally.missing)
    assert not broker_lost & must, sorted(broker_lost & must)[:5]  # only unread entries are gone
    # what tickvault lost: any other shortfall (an order's event missing, say)
    tickvault_lost = dataclasses.replace(tally, lost=tally.lost - len(broker_lost))
    print("\n".join(landed))
    gone, kept = len(broker_lost), len(must)
    detail = f"{gone} unread entries gone with Redis (its loss); {kept} read before or sent after: all stored"
    common.record_and_check("Redis restart, data lost (source + cache)", n_rounds, tickvault_lost, detail)


async def test_source_recreates_its_group_on_a_redis_that_came_back_empty(
    lossy_redis: tuple[TestEnv, common.RedisServer],
) -> None:
    """The recreation of the group after NOGROUP is retried like the read itself: the pool's
    idle connections died with the old server, so the first XGROUP CREATE on one of them
    fails with a connection error (which once escaped `read` and stopped the pipeline)."""
    env, server = lossy_redis
    settings = env.settings()
    stream = env.stream("kline")
    async with RedisStreamsSource(settings.redis, [stream]) as source:
        assert await source.read(10, 0.05) == []
        await asyncio.to_thread(server.kill)
        await asyncio.to_thread(server.start)  # same port, empty: no stream, no group
        await env.redis.connection_pool.disconnect()
        assert await source.read(10, 0.05) == []
        entry_id = (await env.add("kline", b'{"k": 1}')).encode()
        [message] = await source.read(10, 0.5)
        assert (message.entry_id, message.payload) == (entry_id.decode(), b'{"k": 1}')
        await source.ack([message])
        assert (await env.redis.xpending(stream, env.group))["pending"] == 0
