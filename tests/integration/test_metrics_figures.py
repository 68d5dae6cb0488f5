"""The figures of /metrics beyond counting messages: rows that changed nothing, latency,
freshness and its cap, store retries by cause, dependency probes, the pool, build info and
the bot-state cache's writes, each against a daemon ingesting for real.

The registry is process-global, so counters are compared between a scrape before and one
after; the freshness gauge is reset by each daemon's start.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import importlib.metadata
import json
import platform
import time
from typing import Any

import asyncpg
import pytest
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from tests.helpers import (
    SOURCES,
    Daemon,
    PrivatePostgres,
    Samples,
    TestEnv,
    free_port,
    http_get,
    sample,
    wait_until,
)
from tests.integration.test_failures import outage_env  # noqa: F401 - a fixture
from tickvault.metrics import RETRY_CAUSES
from tickvault.record_schemas import EXAMPLES
from tickvault.state import Snapshot, StateCache

NEWEST = "tickvault_newest_event_timestamp_seconds"
UP = "tickvault_dependency_up"


async def scrape(port: int) -> Samples:
    status, text = await asyncio.to_thread(http_get, port, "/metrics")
    assert status == 200
    families = text_string_to_metric_families(text)
    return {(s.name, frozenset(s.labels.items())): s.value for f in families for s in f.samples}


def metrics_on(port: int, **extra: Any) -> dict[str, Any]:
    return {"enabled": True, "port": port, "host": "127.0.0.1", "lag_interval_s": 0.2, **extra}


def trade(i: int, ts_ms: int, symbol: str = "BTCUSDT") -> str:
    return json.dumps({**EXAMPLES["trade"], "trade_id": str(i), "ts": ts_ms, "symbol": symbol})


def order(order_id: str, updated_ms: int) -> str:
    return json.dumps(
        {**EXAMPLES["order"], "order_id": order_id, "updated_at": updated_ms, "created_at": None}
    )


def kline(symbol: str, open_ms: int, **fields: Any) -> str:
    """A 1m candle (EXAMPLES), unless `fields` say otherwise."""
    return json.dumps(
        {**EXAMPLES["kline"], "symbol": symbol, "open_time": open_ms, "close_time": None, **fields}
    )


def newest(samples: Samples, kind: str) -> dict[tuple[str, str], float]:
    """(exchange, symbol) → the freshness gauge of `kind`."""
    out = {}
    for (name, labels), v in samples.items():
        got = dict(labels)
        if name == NEWEST and got["kind"] == kind:
            out[(got["exchange"], got["symbol"])] = v
    return out


@pytest.mark.parametrize("source", SOURCES, indirect=True)
async def test_duplicates_latency_and_freshness(env: TestEnv, daemon: Daemon) -> None:
    """Trades keep the first-published message, so publishing them again changes nothing:
    rows_unchanged grows by the duplicates. Latency histograms observe the committed batches;
    the freshness gauge holds the newest trade time per symbol, whatever order they came in."""
    port = free_port()
    await daemon.start(env.settings(metrics=metrics_on(port)))
    before = await scrape(port)
    base_ms = 1_767_225_600_000
    times = {"BTCUSDT": [base_ms + 5_000, base_ms + 9_000, base_ms + 1_000], "ETHUSDT": [base_ms + 7_000]}
    trades = [trade(i, ts, symbol) for i, (symbol, ts) in enumerate(_flat(times))]
    await env.publish("trade", trades)
    await env.publish("order", [order("o1", base_ms + 8_000), order("o2", base_ms + 3_000)])
    await daemon.drain()
    await env.publish("trade", trades)  # the same messages again, later: stored rows stay
    await daemon.drain()
    after = await scrape(port)
    assert await env.count("trades") == 4

    def moved(name: str, **labels: str) -> float:
        return sample(after, name, **labels) - sample(before, name, **labels)

    assert moved("tickvault_rows_written_total", table="trades") == 4
    assert moved("tickvault_rows_unchanged_total", table="trades") == 4
    assert moved("tickvault_messages_consumed_total", kind="trade", source=env.source) == 8
    assert moved("tickvault_messages_accepted_total", kind="trade", source=env.source) == 8

    events = moved("tickvault_event_latency_seconds_count", kind="trade")
    publishes = moved("tickvault_publish_latency_seconds_count", kind="trade", source=env.source)
    assert events >= 2 and publishes >= 2  # at least one sampled record per committed batch
    assert moved("tickvault_event_latency_seconds_bucket", kind="trade", le="+Inf") == events
    # the events are from January 2026, the messages were published seconds ago: each latency
    # is measured from its own clock
    event_mean = moved("tickvault_event_latency_seconds_sum", kind="trade") / events
    publish_mean = moved("tickvault_publish_latency_seconds_sum", kind="trade", source=env.source) / publishes
    oldest_s = (dt.datetime.now(dt.UTC).timestamp() * 1000 - base_ms) / 1000
    assert event_mean > publish_mean >= 0
    assert event_mean <= oldest_s + 60  # no observation older than the oldest trade

    assert newest(after, "trade") == {
        ("binance", "BTCUSDT"): (base_ms + 9_000) / 1000,
        ("binance", "ETHUSDT"): (base_ms + 7_000) / 1000,
    }
    assert newest(after, "order") == {("binance", "BTCUSDT"): (base_ms + 8_000) / 1000}
    assert await daemon.stop_all() == [0]


def _flat(times: dict[str, list[int]]) -> list[tuple[str, int]]:
    return [(symbol, ts) for symbol, stamps in times.items() for ts in stamps]


async def test_freshness_cap_folds_later_pairs_into_other(env: TestEnv, daemon: Daemon) -> None:
    """With metrics.max_symbol_series = 2 the first two pairs keep their series; later pairs
    share symbol="_other" of their exchange, which holds the newest of them; pairs of an
    exchange seen only after the cap share exchange="_other", however many exchanges come.
    A 1m candle's time is its close, a minute after its open_time."""
    port = free_port()
    await daemon.start(env.settings(metrics=metrics_on(port, max_symbol_series=2)))
    base_ms = 1_767_225_600_000
    await env.publish("kline", [kline("AAAUSDT", base_ms), kline("BBBUSDT", base_ms + 60_000)])
    await daemon.drain()

    async def two() -> bool:
        return len(newest(await scrape(port), "kline")) == 2

    await wait_until(two, 30, 0.1, "two kline series")
    await env.publish("kline", [kline("CCCUSDT", base_ms + 180_000), kline("DDDUSDT", base_ms + 120_000)])
    await env.publish("kline", [kline("AAAUSDT", base_ms + 240_000), kline("CCCUSDT", base_ms - 60_000)])
    later = [kline("BTCUSDT", base_ms + 300_000, exchange=x) for x in ("okx", "bybit", "kraken")]
    await env.publish("kline", later)
    await daemon.drain()
    assert newest(await scrape(port), "kline") == {
        ("binance", "AAAUSDT"): (base_ms + 300_000) / 1000,
        ("binance", "BBBUSDT"): (base_ms + 120_000) / 1000,
        ("binance", "_other"): (base_ms + 240_000) / 1000,
        ("_other", "_other"): (base_ms + 360_000) / 1000,
    }
    assert await daemon.stop_all() == [0]


async def test_a_kline_s_time_is_its_close_or_now_while_open(env: TestEnv, daemon: Daemon) -> None:
    """A 1h candle published when it closed is fresh then, not an hour old; an open candle's
    updates are as fresh as their commit (its close, next month, is still ahead)."""
    port = free_port()
    await daemon.start(env.settings(metrics=metrics_on(port)))
    before = await scrape(port)
    closed_open_ms = 1_767_225_600_000
    hour_ms = 3_600_000
    published_s = time.time()
    now = dt.datetime.fromtimestamp(published_s, dt.UTC)
    this_month_ms = int(now.replace(day=1, hour=0, minute=0, second=0, microsecond=0).timestamp() * 1000)
    await env.publish(
        "kline",
        [
            kline("BTCUSDT", closed_open_ms, interval="1h"),
            kline("ETHUSDT", this_month_ms, interval="1M", closed=False),
            kline("SOLUSDT", closed_open_ms, interval="1M"),
        ],
    )
    await daemon.drain()
    samples = await scrape(port)
    scraped_s = time.time()
    got = newest(samples, "kline")
    assert got[("binance", "BTCUSDT")] == (closed_open_ms + hour_ms) / 1000
    assert got[("binance", "SOLUSDT")] == dt.datetime(2026, 2, 1, tzinfo=dt.UTC).timestamp()
    assert published_s <= got[("binance", "ETHUSDT")] <= scraped_s
    # latency from the close: the open candle's is 0 (its close is ahead), not the minutes
    # since its open_time; the closed ones' are months
    bucket = "tickvault_event_latency_seconds_bucket"
    zero = sample(samples, bucket, kind="kline", le="0.01") - sample(before, bucket, kind="kline", le="0.01")
    assert zero == 1
    assert await daemon.stop_all() == [0]


@pytest.mark.parametrize("source", SOURCES, indirect=True)
async def test_dependencies_pool_and_build_info(env: TestEnv, daemon: Daemon) -> None:
    """Every dependency the daemon uses is probed and up; the pool and the build are shown;
    the dependency series go with the daemon."""
    port = free_port()
    await daemon.start(env.settings(metrics=metrics_on(port)))
    expected = {"postgres": 1.0, "redis": 1.0} | ({"kafka": 1.0} if env.source == "kafka" else {})

    async def probed() -> bool:
        return dependencies(await scrape(port)) == expected

    await wait_until(probed, 30, 0.1, f"dependencies {expected}")
    await env.publish("trade", [trade(1, 1_767_225_600_000)])
    await daemon.drain()
    samples = await scrape(port)
    size = sample(samples, "tickvault_db_pool_size_connections")
    in_use = sample(samples, "tickvault_db_pool_in_use_connections")
    assert ("tickvault_db_pool_in_use_connections", frozenset()) in samples
    assert 1 <= size <= env.settings().postgres.pool_max_size
    assert 0 <= in_use <= size
    for cause in RETRY_CAUSES:  # known label values are there from the start
        assert ("tickvault_store_retries_total", frozenset({("cause", cause)})) in samples
    for table in ("klines", "orders", "order_events", "bot_state_history", "trades"):
        assert ("tickvault_rows_unchanged_total", frozenset({("table", table)})) in samples
    version = importlib.metadata.version("tickvault")
    assert sample(samples, "tickvault_build_info", version=version, python=platform.python_version()) == 1
    assert await daemon.stop_all() == [0]

    async def gone() -> bool:
        return dependencies(await _registry()) == {}

    await wait_until(gone, 10, 0.05, "the dependency series to go with the daemon")


async def _registry() -> Samples:
    """The process's registry without an endpoint (the daemon's is closed)."""
    return {(s.name, frozenset(s.labels.items())): s.value for f in REGISTRY.collect() for s in f.samples}


def dependencies(samples: Samples) -> dict[str, float]:
    return {dict(labels)["dependency"]: v for (name, labels), v in samples.items() if name == UP}


@pytest.mark.parametrize("source", ["kafka"], indirect=True)
async def test_unreachable_redis_is_reported_down(env: TestEnv, daemon: Daemon) -> None:
    """Reading Kafka, the daemon keeps ingesting while the Redis of its bot-state cache does
    not answer (a closed port), and reports it down."""
    port = free_port()
    closed = f"redis://127.0.0.1:{free_port()}/0"
    await daemon.start(env.settings(metrics=metrics_on(port), redis={"url": closed}))

    async def probed() -> bool:
        return dependencies(await scrape(port)) == {"postgres": 1.0, "redis": 0.0, "kafka": 1.0}

    await wait_until(probed, 30, 0.1, "redis down, postgres and kafka up")
    await env.publish("trade", [trade(1, 1_767_225_600_000)])
    await daemon.drain()
    assert await env.count("trades") == 1
    assert await daemon.stop_all() == [0]


async def test_store_retry_counted_by_cause(env: TestEnv, daemon: Daemon) -> None:
    """A write whose connection is terminated while it waits for a lock is retried on a new
    connection, counted under cause="connection", and stored once."""
    port = free_port()
    await daemon.start(env.settings(metrics=metrics_on(port)))
    before = await scrape(port)
    conn = await asyncpg.connect(env.dsn)
    try:
        locked = conn.transaction()
        await locked.start()
        await conn.execute(f'LOCK TABLE "{env.schema}".trades IN ACCESS EXCLUSIVE MODE')
        await env.publish("trade", [trade(i, 1_767_225_600_000 + i) for i in range(3)])
        waiting = (
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
            "AND application_name = 'tickvault' AND wait_event_type = 'Lock'"
        )

        async def blocked() -> bool:
            return bool(await conn.fetch(waiting))

        await wait_until(blocked, 30, 0.1, "the daemon's write to wait for the lock")
        for row in await conn.fetch(waiting):
            await conn.execute("SELECT pg_terminate_backend($1)", row["pid"])

        async def retried() -> bool:
            after = await scrape(port)
            return sample(after, "tickvault_store_retries_total", cause="connection") > sample(
                before, "tickvault_store_retries_total", cause="connection"
            )

        await wait_until(retried, 30, 0.1, "a retry with cause connection")
        await locked.rollback()
    finally:
        await conn.close()
    await daemon.drain()
    assert await env.count("trades") == 3
    assert await daemon.stop_all() == [0]


async def test_state_cache_writes_applied_and_stale(env: TestEnv, daemon: Daemon) -> None:
    """A snapshot older than the one in the cache is refused by the compare-and-set: stale."""
    settings = env.settings()
    port = free_port()
    newer = dt.datetime(2026, 6, 1, tzinfo=dt.UTC)
    async with StateCache(settings.redis, settings.state) as cache:
        before = await _registry()
        await cache.put([Snapshot("bot-x", newer, None, "{}", 0, 0, "0" * 32)])  # another writer
    await daemon.start(env.settings(metrics=metrics_on(port)))
    old = {"bot_id": "bot-x", "ts": 1_767_225_604_000, "state": {}}
    fresh = {"bot_id": "bot-y", "ts": 1_767_225_604_000, "state": {}}
    await env.publish("bot_state", [json.dumps(old), json.dumps(fresh)])
    await daemon.drain()

    async def counted() -> bool:
        after = await scrape(port)
        stale = _moved(before, after, outcome="stale")
        return stale == 1 and _moved(before, after, outcome="applied") == 2

    await wait_until(counted, 30, 0.1, "one stale write (bot-x) and two applied (the test's, bot-y)")
    assert await daemon.stop_all() == [0]


def _moved(before: Samples, after: Samples, **labels: str) -> float:
    name = "tickvault_state_cache_writes_total"
    return sample(after, name, **labels) - sample(before, name, **labels)


async def test_postgres_outage_is_reported_down_then_up(
    outage_env: TestEnv,  # noqa: F811 - the fixture imported above
    private_pg: PrivatePostgres,
) -> None:
    """The probe of PostgreSQL reads 0 while its server is stopped and 1 once it is back."""
    env = outage_env
    daemon = Daemon(env)
    port = free_port()
    await daemon.start(env.settings(metrics=metrics_on(port)))
    try:

        async def postgres_is(value: float) -> bool:
            return dependencies(await scrape(port)).get("postgres") == value

        await wait_until(lambda: postgres_is(1.0), 30, 0.1, "postgres up")
        await asyncio.to_thread(private_pg.stop)
        await wait_until(lambda: postgres_is(0.0), 30, 0.1, "postgres down")
        assert dependencies(await scrape(port))["redis"] == 1.0
        await asyncio.to_thread(private_pg.start)
        await wait_until(lambda: postgres_is(1.0), 60, 0.1, "postgres up again")
    finally:
        codes = await daemon.stop_all()
    assert codes == [0]
