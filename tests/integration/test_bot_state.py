"""Bot state against real PostgreSQL and Redis: the Redis cache (compare-and-set, fallback,
refill), the history table (dedup, retention), writes from bots, and exact decimals."""

from __future__ import annotations

import datetime as dt
import json
import random
from decimal import Decimal
from typing import Any

import pytest
from prometheus_client import REGISTRY

from tests.helpers import Daemon, TestEnv, free_port, wait_until
from tickvault import state as cache_module
from tickvault.errors import RecordError
from tickvault.settings import Settings
from tickvault.state import Snapshot, StateCache
from tickvault.store import Store, migrate
from tickvault.vault import Vault

T0_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z


def snapshot(bot: str, ts_ms: int, seq: int | None, **state: Any) -> str:
    message: dict[str, Any] = {"bot_id": bot, "ts": ts_ms, "state": state}
    if seq is not None:
        message["seq"] = seq
    return json.dumps(message)


def failures(operation: str) -> float:
    return REGISTRY.get_sample_value("tickvault_state_cache_failures_total", {"operation": operation}) or 0.0


async def cached(env: TestEnv, bot: str) -> dict[bytes, bytes]:
    found: dict[bytes, bytes] = await env.redis.hgetall(f"t{env.tag}.bot_state:{bot}")
    return found


async def migrated(settings: Settings) -> None:
    await migrate.upgrade(settings.postgres)


async def test_cache_holds_the_newest_and_is_refilled_after_a_flush(env: TestEnv, daemon: Daemon) -> None:
    await daemon.start()
    messages = [snapshot("b1", T0_MS + i, None, i=i) for i in range(20)]
    random.Random(3).shuffle(messages)
    await env.publish("bot_state", messages)
    await daemon.drain()
    entry = await cached(env, "b1")  # written after the commit, before the acknowledgement
    assert json.loads(entry[b"state"]) == {"i": 19}

    await env.redis.delete(f"t{env.tag}.bot_state:b1")  # Redis flushed: the key is gone
    async with Vault.connect(env.settings()) as vault:
        state = await vault.load_bot_state("b1")
        [from_postgres] = await vault.bot_states("b1")
    assert state == from_postgres
    assert state is not None and state.state == {"i": 19}
    assert await cached(env, "b1") == entry  # refilled on the miss, same rank and value


async def test_daemon_start_refills_every_bot(env: TestEnv, daemon: Daemon) -> None:
    settings = env.settings(state={"cache": False})
    await migrated(settings)
    async with Vault.connect(settings) as vault:  # no cache: PostgreSQL only
        for i in range(25):
            assert await vault.save_bot_state(f"bot-{i:02d}", {"n": i}, ts=T0_MS + i)
    assert not [k async for k in env.redis.scan_iter(match=f"t{env.tag}.bot_state:*")]

    await daemon.start(env.settings(state={"refill_batch_rows": 10}))  # pages of 10 bots

    async def all_cached() -> bool:
        return len([k async for k in env.redis.scan_iter(match=f"t{env.tag}.bot_state:*")]) == 25

    await wait_until(all_cached, 30, 0.1, "the start refill")
    assert json.loads((await cached(env, "bot-07"))[b"state"]) == {"n": 7}


async def test_two_daemons_racing_end_with_the_newest_everywhere(env: TestEnv, daemon: Daemon) -> None:
    rng = random.Random(11)
    bots = [f"race-{i}" for i in range(12)]
    messages = [
        snapshot(bot, T0_MS + rng.randrange(50) * 1000, rng.choice([None, 0, 1, 2]), who=bot, k=k)
        for bot in bots
        for k in range(40)
    ]
    rng.shuffle(messages)
    # small batches, so both daemons write many batches of the same bots side by side
    settings = {"batch": {"max_rows": 7, "max_age_s": 0.01}}
    await daemon.start(env.settings(redis={"consumer": "c1"}, **settings))
    await daemon.start(env.settings(redis={"consumer": "c2"}, **settings))
    for i in range(0, len(messages), 40):
        await env.publish("bot_state", messages[i : i + 40])
    await daemon.drain()

    decoded = [json.loads(m) for m in messages]
    async with Vault.connect(env.settings()) as vault:
        stored = {s.bot_id: s for s in await vault.bot_states()}
        cache = vault._cache
        assert cache is not None
        for bot in bots:
            mine = [m for m in decoded if m["bot_id"] == bot]
            # the rule (ts, seq; a missing seq counts as -1); equal (ts, seq) fall to version
            top = max((m["ts"], -1 if m.get("seq") is None else m["seq"]) for m in mine)
            got = stored[bot]
            assert (int(got.ts.timestamp() * 1000), -1 if got.seq is None else got.seq) == top
            assert await cache.get(bot) == stored[bot], bot


async def test_cache_write_failure_never_fails_ingest_and_is_repaired(env: TestEnv, daemon: Daemon) -> None:
    key = f"t{env.tag}.bot_state:b1"
    await env.redis.set(key, "not a hash")  # every write of b1 now fails in Redis (WRONGTYPE)
    before = failures("write")
    await daemon.start()
    await env.publish("bot_state", [snapshot("b1", T0_MS, 1, v="1.10")])
    await daemon.drain()  # acknowledged: PostgreSQL has it though Redis refused
    assert [r["state"] for r in await env.fetch("SELECT state::text FROM {s}.bot_state")] == ['{"v": "1.10"}']
    assert failures("write") > before

    await env.redis.delete(key)  # Redis healthy again: the daemon's refill catches up

    async def repaired() -> bool:
        return (await cached(env, "b1")).get(b"state") == b'{"v": "1.10"}'

    await wait_until(repaired, 30, 0.1, "the failed bot to be refilled")


async def test_redis_down_reads_fall_back_and_writes_land_in_postgres(env: TestEnv) -> None:
    down = env.settings(redis={"url": f"redis://127.0.0.1:{free_port()}/0"})  # nothing listens
    await migrated(down)
    before = failures("read") + failures("write")
    async with Vault.connect(down) as vault:
        assert await vault.save_bot_state("b1", {"cash": Decimal("100.50")}, ts=T0_MS, seq=3)
        state = await vault.load_bot_state("b1")
        assert state is not None and state.state == {"cash": Decimal("100.5")} and state.seq == 3
        assert await vault.load_bot_state("nobody") is None
    assert failures("read") + failures("write") > before
    assert await cached(env, "b1") == {}

    async with Vault.connect(env.settings()) as vault:  # Redis back: a miss refills the key
        assert await vault.load_bot_state("b1") == state
    assert (await cached(env, "b1"))[b"state"] == b'{"cash": 100.50}'


async def test_compare_and_set_rejects_an_older_snapshot(env: TestEnv) -> None:
    settings = env.settings()
    t = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)

    def snap(ts: dt.datetime, seq: int | None, version_ms: int, state: str) -> Snapshot:
        return Snapshot("b1", ts, seq, state, version_ms, 0, "0" * 32)

    newer = snap(t, 2, 5, '{"n": 2}')
    async with StateCache(settings.redis, settings.state) as cache:
        assert await cache.put([newer]) == 1
        assert await cache.put([snap(t, 1, 9, '{"n": 1}')]) == 0  # lower seq, later version
        assert await cache.put([snap(t - dt.timedelta(microseconds=1), 9, 9, '{"n": 0}')]) == 0
        assert await cache.put([snap(t, None, 9, '{"n": -1}')]) == 0  # no seq ranks below 0
        assert await cache.put([newer]) == 0  # the same snapshot again changes nothing
        assert (await cache.get("b1")) == newer.record()
        assert await cache.put([snap(t, 2, 6, '{"n": 3}')]) == 1  # equal (ts, seq): version decides
        got = await cache.get("b1")
    assert got is not None and got.state == {"n": 3}


async def test_redis_and_postgres_paths_give_identical_exact_records(env: TestEnv) -> None:
    settings = env.settings()
    await migrated(settings)
    state = {
        "position": Decimal("0.020"), "tiny": Decimal("1E-8"), "big": Decimal("1E+4"),
        "int": 86500, "float": 1.5, "levels": [Decimal("86500.10"), 87000], "flag": False,
        "nested": {"pnl": Decimal("-12.3400"), "none": None}, "text": "tab\there",
    }  # fmt: skip
    async with Vault.connect(settings) as vault:
        assert await vault.save_bot_state("b1", state, ts="2026-01-01T00:00:00.123456+00:00")
        cache = vault._cache
        assert cache is not None
        from_redis = await cache.get("b1")
        [from_postgres] = await vault.bot_states("b1")
        loaded = await vault.load_bot_state("b1")
    assert from_redis == from_postgres == loaded
    assert from_redis is not None
    assert from_redis.state["position"] == Decimal("0.02") and str(from_redis.state["position"]) == "0.02"
    assert str(from_redis.state["tiny"]) == "1E-8" and from_redis.state["big"] == 10000
    assert str(from_redis.state["nested"]["pnl"]) == "-12.34"
    assert from_redis.ts == dt.datetime(2026, 1, 1, 0, 0, 0, 123456, tzinfo=dt.UTC)


async def test_history_keeps_each_distinct_snapshot_once(env: TestEnv, daemon: Daemon) -> None:
    await daemon.start()
    first, second = snapshot("b1", T0_MS, 1, n=1), snapshot("b1", T0_MS, 1, n=2)
    await env.publish("bot_state", [first, first, second, snapshot("b1", T0_MS + 1, None, n=3)])
    await daemon.drain()
    await env.publish("bot_state", [first, second])  # redelivered copies add nothing
    await daemon.drain()
    async with Vault.connect(env.settings()) as vault:
        assert not await vault.save_bot_state("b1", {"n": 2}, ts=T0_MS, seq=1)  # older than the latest
        history = await vault.bot_state_history("b1")
        latest_two = await vault.bot_state_history("b1", limit=2)
        windowed = await vault.bot_state_history("b1", start=T0_MS + 1)
    assert sorted(h.state["n"] for h in history[:2]) == [1, 2] and history[2].state == {"n": 3}
    assert await env.count("bot_state_history") == 3
    assert latest_two == history[1:]
    assert [h.state for h in windowed] == [{"n": 3}]


async def test_daemon_prunes_history_past_retention(env: TestEnv, daemon: Daemon) -> None:
    now_ms = int(dt.datetime.now(dt.UTC).timestamp() * 1000)
    old = [snapshot("b1", now_ms - (40 + i) * 86_400_000, None, i=i) for i in range(5)]
    await daemon.start(env.settings(state={"history_retention": "off"}))
    await env.publish("bot_state", [*old, snapshot("b1", now_ms, None, i="new")])
    await daemon.drain()
    assert await daemon.stop_all() == [0]
    assert await env.count("bot_state_history") == 6  # "off" keeps everything

    await daemon.start(env.settings(state={"history_retention": "30d"}))

    async def pruned() -> bool:
        return await env.count("bot_state_history") == 1

    await wait_until(pruned, 30, 0.1, "old history to be pruned")
    async with Vault.connect(env.settings()) as vault:
        assert [h.state for h in await vault.bot_state_history("b1")] == [{"i": "new"}]
        latest = await vault.load_bot_state("b1")
    assert latest is not None and latest.state == {"i": "new"}  # the latest row is never pruned


@pytest.mark.parametrize(
    ("state", "reason"),
    [
        ([1, 2], "state must be a JSON object"),
        ({"x": float("nan")}, "state.x: non-finite number"),
        ({"x": [Decimal("Infinity")]}, "state.x[0]: non-finite number"),
        ({"x": {1, 2}}, "state.x: set is not a JSON value"),
        ({"big": "x" * 200}, "exceeds the 100-byte limit"),
        ({"nul": "a\u0000b"}, "invalid bot_state"),  # PostgreSQL's jsonb refuses NUL
    ],
)
async def test_save_bot_state_refuses_bad_input(env: TestEnv, state: Any, reason: str) -> None:
    settings = env.settings(state={"max_bytes": 100})
    await migrated(settings)
    async with Vault.connect(settings) as vault:
        with pytest.raises(RecordError, match=reason.replace("[", r"\[")):
            await vault.save_bot_state("b1", state)
        with pytest.raises(RecordError, match="seq"):
            await vault.save_bot_state("b1", {}, seq=-1)
    assert await env.count("bot_state") == 0 and await env.count("bot_state_history") == 0


async def test_a_stream_state_over_the_limit_is_dead_lettered(env: TestEnv, daemon: Daemon) -> None:
    await daemon.start(env.settings(state={"max_bytes": 64}))
    await env.publish("bot_state", [snapshot("b1", T0_MS, None, s="x" * 100), snapshot("b2", T0_MS, None)])
    await daemon.drain()
    [letter] = await env.fetch("SELECT category, reason FROM {s}.dead_letters")
    assert letter["category"] == "invalid" and "exceeds the 64-byte limit" in letter["reason"]
    assert [r["bot_id"] for r in await env.fetch("SELECT bot_id FROM {s}.bot_state")] == ["b2"]


def test_rank_orders_as_the_writer_rule() -> None:
    t = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    ranks = [
        Snapshot("b", t, None, "{}", 9, 9, "f" * 32),
        Snapshot("b", t, 0, "{}", 0, 0, "0" * 32),
        Snapshot("b", t, 0, "{}", 0, 1, "0" * 32),
        Snapshot("b", t, 0, "{}", 1, 0, "0" * 32),
        Snapshot("b", t, 0, "{}", 1, 0, "a" * 32),
        Snapshot("b", t, 2**63 - 1, "{}", 0, 0, "0" * 32),
        Snapshot("b", t + dt.timedelta(microseconds=1), None, "{}", 0, 0, "0" * 32),
    ]
    assert [s.rank for s in ranks] == sorted(s.rank for s in ranks)
    assert len({len(s.rank) for s in ranks}) == 1


async def test_many_snapshots_in_one_call_are_chunked(env: TestEnv) -> None:
    settings = env.settings()
    t = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    rows = [Snapshot(f"m{i}", t, None, "{}", 0, 0, "0" * 32) for i in range(cache_module.CHUNK_KEYS + 3)]
    async with StateCache(settings.redis, settings.state) as cache:
        assert await cache.put(rows) == len(rows)
        assert await cache.get(f"m{len(rows) - 1}") == rows[-1].record()


async def test_store_write_returns_only_rows_that_became_latest(env: TestEnv) -> None:
    settings = env.settings()
    await migrated(settings)
    async with Vault.connect(settings) as vault:
        assert await vault.save_bot_state("b1", {"n": 2}, ts=T0_MS + 5)
        assert not await vault.save_bot_state("b1", {"n": 1}, ts=T0_MS)
    async with Store(settings.postgres) as store:
        rows = await cache_module.latest(store, ["b1"])
    assert [json.loads(r.state) for r in rows] == [{"n": 2}]


async def test_cli_state_get_list_history(env: TestEnv) -> None:
    from tests.integration.test_cli import tickvault

    settings = env.settings()
    await migrated(settings)
    async with Vault.connect(settings) as vault:
        await vault.save_bot_state("grid-1", {"pos": Decimal("0.020")}, ts=T0_MS, seq=1)
        await vault.save_bot_state("grid-1", {"pos": Decimal("0.030")}, ts=T0_MS + 1000, seq=2)
        await vault.save_bot_state("grid-2", {"pos": 1}, ts=T0_MS)

    got = await tickvault(env, "state", "get", "grid-1", "--format", "jsonl")
    assert got.code == 0, got.lines
    assert [json.loads(line) for line in got.out] == [
        {"bot_id": "grid-1", "ts": "2026-01-01T00:00:01Z", "seq": 2, "state": {"pos": 0.03}}
    ]
    assert got.out[0].endswith('"state":{"pos":0.03}}')  # exact and positional, never a float repr
    assert got.err == ["1 bot state"]

    listed = await tickvault(env, "state", "list", "--format", "csv")
    assert listed.code == 0, listed.lines
    assert listed.out[0] == "bot_id,ts,seq,state"
    assert [line.split(",")[0] for line in listed.out[1:]] == ["grid-1", "grid-2"]

    hist = await tickvault(env, "state", "history", "grid-1", "--limit", "1")
    assert hist.code == 0, hist.lines
    assert len(hist.out) == 2 and '{"pos":0.03}' in hist.out[1] and hist.err == ["1 snapshot"]
    hist = await tickvault(env, "state", "history", "grid-1", "--start", str(T0_MS), "--end", str(T0_MS + 1))
    assert len(hist.out) == 2 and '{"pos":0.02}' in hist.out[1]

    missing = await tickvault(env, "state", "get", "grid-3")
    assert missing.code == 1
    error = "tickvault: error: no bot state stored for bot_id grid-3; close matches: grid-1, grid-2"
    assert missing.err == [error]
    usage = await tickvault(env, "state", "history")
    assert usage.code == 2 and "state history --help" in usage.err[-1]
