"""Kafka only: broker restart mid-ingest, subscription by regex, `check` and `dlq replay`."""

from __future__ import annotations

import asyncio
import json
import logging

import asyncpg
import pytest

from tests.helpers import Daemon, TestEnv, free_port, wait_until
from tests.integration import workload
from tests.integration.test_cli import tickvault
from tests.integration.test_failures import _klines_between, assert_exactly_once
from tickvault.record_schemas import EXAMPLES

pytestmark = pytest.mark.parametrize("source", ["kafka"], indirect=True)


async def test_broker_restart_mid_ingest(durable_kafka: TestEnv) -> None:
    env = durable_kafka
    assert env.kafka is not None
    w = workload.build(klines=8_000, orders=1_000, fills=1_000, states=200, seed=9)
    half = {kind: len(p) // 2 for kind, p in w.payloads.items()}
    daemon = Daemon(env)
    _, task = await daemon.start(env.settings(batch={"max_rows": 500, "max_age_s": 0.05}))
    try:
        for kind, payloads in w.payloads.items():
            await env.publish(kind, payloads[: half[kind]])
        await wait_until(lambda: _klines_between(env, 1, 7_999), 60, 0.02, "first rows")

        env.kafka.kill()
        await asyncio.sleep(3)
        assert not task.done(), "the daemon must wait for the broker, not exit"
        env.kafka.start()  # same port, same storage

        for kind, payloads in w.payloads.items():
            await env.publish(kind, payloads[half[kind] :])
        await daemon.drain(timeout_s=120)
    finally:
        codes = await daemon.stop_all()
    assert codes == [0]
    await assert_exactly_once(env, w)


async def test_topics_chosen_by_pattern(env: TestEnv, daemon: Daemon) -> None:
    """One topic per exchange and symbol, as feed adapters publish them, read through one regex;
    a topic outside the pattern is not read."""
    assert env.kafka is not None
    names = [f"t{env.tag}-candles-BINANCE-BTC-USDT", f"t{env.tag}-candles-KRAKEN-ETH-USD"]
    other = f"t{env.tag}-trades-BINANCE-BTC-USDT"
    await env.kafka.create_topics([*names, other], 1)
    pattern = {rf"t{env.tag}-candles-[A-Z]+-[A-Z]+-[A-Z]+": "kline"}
    await daemon.start(env.settings(source={"topics": {}, "patterns": pattern}))

    sent = []
    for i, topic in enumerate(names):
        candle = {**EXAMPLES["kline"], "symbol": topic.split("-", 3)[3], "open_time": 1_767_225_600_000 + i}
        sent.append(candle)
        await env.producer_send(topic, json.dumps(candle).encode())
    await env.producer_send(other, json.dumps(EXAMPLES["fill"]).encode())

    async def landed() -> bool:
        return await env.count("klines") == 2

    await wait_until(landed, 60, 0.2, "klines from both pattern topics")
    rows = await env.fetch("SELECT symbol FROM {s}.klines ORDER BY symbol")
    assert [r["symbol"] for r in rows] == ["BTC-USDT", "ETH-USD"]
    await asyncio.sleep(1)
    assert await env.count("fills") == 0
    assert await env.count("dead_letters") == 0
    assert await daemon.stop_all() == [0]


async def test_check_reports_kafka(env: TestEnv) -> None:
    settings = env.overrides()
    result = await tickvault(env, "migrate")
    assert result.code == 0, result.lines
    result = await tickvault(env, "check")
    assert (result.code, result.lines) == (0, [result.lines[0]])
    assert "kafka source reachable" in result.lines[0]

    down = {**settings["kafka"], "bootstrap_servers": f"127.0.0.1:{free_port()}"}
    result = await tickvault(env, "check", kafka=down)
    assert result.code == 1
    assert len(result.lines) == 1 and result.lines[0].startswith("unhealthy: kafka unreachable"), result.lines


async def test_dlq_replay_republishes_to_the_kafka_topic(env: TestEnv, daemon: Daemon) -> None:
    await daemon.start()
    bad = json.dumps({**EXAMPLES["kline"], "volume": "-1"}).encode()
    [entry_id] = await env.send("kline", [bad])
    await daemon.drain()
    rows = await env.fetch("SELECT id, source, entry_id, payload FROM {s}.dead_letters")
    assert [(r["source"], r["entry_id"], bytes(r["payload"])) for r in rows] == [("kafka", entry_id, bad)]

    result = await tickvault(env, "dlq", "replay", "--all")
    assert (result.code, result.lines) == (0, ["replayed 1 dead letter"])

    async def redelivered() -> bool:
        return await env.count("dead_letters") == 2

    await wait_until(redelivered, 60, 0.2, "the replayed message to come back")
    rows = await env.fetch("SELECT entry_id, payload, replayed_at FROM {s}.dead_letters ORDER BY id")
    assert rows[0]["replayed_at"] is not None and rows[1]["replayed_at"] is None
    assert rows[1]["entry_id"] != entry_id and bytes(rows[1]["payload"]) == bad
    assert await daemon.stop_all() == [0]


async def test_full_backlog_pauses_without_leaving_the_group(
    env: TestEnv, daemon: Daemon, caplog: pytest.LogCaptureFixture
) -> None:
    """PostgreSQL stalls (the test locks the klines table) for three times
    max_poll_interval_ms while the backlog is full: the consumer pauses its partitions but
    keeps polling, so it is never dropped from the group, and it finishes when writes resume."""
    caplog.set_level(logging.INFO, logger="tickvault.sources.kafka")
    settings = env.settings(
        batch={"max_rows": 100, "max_age_s": 0.05, "max_backlog_rows": 200},
        kafka={"max_poll_interval_ms": 2000, "max_poll_records": 100},
    )
    await daemon.start(settings)
    w = workload.build(klines=4_000, orders=0, fills=0, states=0, seed=4)
    conn = await asyncpg.connect(env.dsn)
    try:
        locked = conn.transaction()
        await locked.start()
        await conn.execute(f'LOCK TABLE "{env.schema}".klines IN ACCESS EXCLUSIVE MODE')
        await env.publish("kline", w.payloads["kline"])
        await asyncio.sleep(6)
        assert await env.unsettled() == 4_000  # nothing committed while the table is locked
        await locked.rollback()
    finally:
        await conn.close()
    await daemon.drain(timeout_s=60)
    assert await daemon.stop_all() == [0]
    await assert_exactly_once(env, w)
    revoked = [r.getMessage() for r in caplog.records if "partitions revoked" in r.getMessage()]
    assert revoked == [], revoked
