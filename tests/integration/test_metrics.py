"""The Prometheus endpoint of a running daemon: /metrics, /healthz, /readyz.

The registry is process-global, so counters are compared between a scrape before and one
after publishing.
"""

from __future__ import annotations

import asyncio
import json

import asyncpg
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.helpers import SOURCES, Daemon, Samples, TestEnv, free_port, http_get, wait_until
from tests.helpers import sample as value
from tickvault.record_schemas import EXAMPLES


async def get(port: int, path: str) -> tuple[int, str]:
    return await asyncio.to_thread(http_get, port, path)


async def scrape(port: int) -> tuple[Samples, dict[str, str]]:
    """Samples by (name, labels), and each family's type."""
    status, text = await get(port, "/metrics")
    assert status == 200
    families = list(text_string_to_metric_families(text))
    samples = {(s.name, frozenset(s.labels.items())): s.value for f in families for s in f.samples}
    return samples, {f.name: f.type for f in families}


def kline(i: int) -> str:
    return json.dumps({**EXAMPLES["kline"], "open_time": 1_767_225_600_000 + i * 60_000, "close_time": None})


async def test_metrics_count_what_the_daemon_did(env: TestEnv, daemon: Daemon) -> None:
    port = free_port()
    await daemon.start(env.settings(metrics={"enabled": True, "port": port, "host": "127.0.0.1"}))
    before, _ = await scrape(port)

    await env.publish("kline", [kline(i) for i in range(5)] + [b"{oops", b"[1]"])
    await env.publish("kline", [kline(i) for i in range(5, 8)])
    await env.publish("order", [json.dumps({**EXAMPLES["order"], "side": "hold"})])
    await env.publish("mixed", [json.dumps({**EXAMPLES["fill"], "kind": "fill"}), b'{"kind": "quote"}'])
    await daemon.drain()
    after, types = await scrape(port)
    assert await env.count("klines") == 8

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert moved("tickvault_messages_consumed_total", kind="kline") == 10
    assert moved("tickvault_messages_consumed_total", kind="kline", source="redis") == 10
    assert (
        moved("tickvault_messages_rejected_total", kind="kline", source="kafka", reason="invalid_json") == 0
    )
    assert moved("tickvault_messages_consumed_total", kind="order") == 1
    assert moved("tickvault_messages_consumed_total", kind="mixed") == 2
    assert moved("tickvault_messages_accepted_total", kind="kline") == 8
    assert moved("tickvault_messages_accepted_total", kind="fill") == 1
    assert moved("tickvault_messages_accepted_total", kind="order") == 0
    assert (
        moved("tickvault_messages_rejected_total", kind="kline", source="redis", reason="invalid_json") == 1
    )
    assert moved("tickvault_messages_rejected_total", kind="kline", reason="not_object") == 1
    assert moved("tickvault_messages_rejected_total", kind="order", reason="invalid") == 1
    assert moved("tickvault_messages_rejected_total", kind="mixed", reason="unknown_kind") == 1
    assert moved("tickvault_rows_written_total", table="klines") == 8
    assert moved("tickvault_rows_written_total", table="fills") == 1
    assert moved("tickvault_dead_letters_total", reason="invalid_json") == 1
    assert moved("tickvault_dead_letters_total", reason="not_object") == 1
    assert moved("tickvault_dead_letters_total", reason="invalid") == 1
    assert moved("tickvault_dead_letters_total", reason="unknown_kind") == 1

    # every flush of klines is timed: the +Inf bucket counts flushes, and at least one happened
    flushes = moved("tickvault_flush_duration_seconds_bucket", kind="kline", le="+Inf")
    assert flushes >= 1
    assert moved("tickvault_flush_duration_seconds_count", kind="kline") == flushes
    assert moved("tickvault_flush_duration_seconds_bucket", kind="dead_letter", le="+Inf") >= 1
    assert moved("tickvault_batch_rows_sum", kind="kline") == 8
    assert value(after, "tickvault_backlog_rows") == 0
    assert value(after, "tickvault_ready") == 1
    assert types["tickvault_messages_consumed"] == "counter"
    assert types["tickvault_flush_duration_seconds"] == "histogram"
    assert types["tickvault_backlog_rows"] == "gauge"

    assert await daemon.stop_all() == [0]


async def test_health_endpoints(env: TestEnv, daemon: Daemon) -> None:
    port = free_port()
    await daemon.start(env.settings(metrics={"enabled": True, "port": port, "host": "127.0.0.1"}))
    assert await get(port, "/healthz") == (200, "ok\n")
    assert await get(port, "/readyz") == (200, "ready\n")
    assert (await get(port, "/nope"))[0] == 404
    assert await daemon.stop_all() == [0]
    # the endpoint closes with the daemon
    with pytest.raises(OSError, match="refused"):
        await get(port, "/healthz")


@pytest.mark.parametrize("source", SOURCES, indirect=True)
async def test_lag_is_reported_per_topic_partition_and_kept_current(env: TestEnv, daemon: Daemon) -> None:
    """While PostgreSQL cannot take the klines (the test holds a lock on the table), the
    published klines show as lag; once the lock goes, the lag falls back to zero."""
    port = free_port()
    metrics = {"enabled": True, "port": port, "host": "127.0.0.1", "lag_interval_s": 0.1}
    await daemon.start(env.settings(metrics=metrics))
    topic = env.stream("kline")

    async def lag() -> dict[str, float]:
        samples, _ = await scrape(port)
        return {
            dict(labels)["partition"]: v
            for (name, labels), v in samples.items()
            if name == "tickvault_source_lag_messages"
            and ("topic", topic) in labels
            and ("group", env.group) in labels
            and ("source", env.source) in labels
        }

    conn = await asyncpg.connect(env.dsn)
    try:
        locked = conn.transaction()
        await locked.start()
        await conn.execute(f'LOCK TABLE "{env.schema}".klines IN ACCESS EXCLUSIVE MODE')
        await env.publish("kline", [kline(i) for i in range(40)])

        async def all_lagging() -> bool:
            return sum((await lag()).values()) == 40

        await wait_until(all_lagging, 30, 0.1, "lag of the 40 unwritten klines")
        by_partition = await lag()
        if env.source == "kafka":
            assert by_partition == {"0": 10, "1": 10, "2": 10, "3": 10}  # published round-robin
        else:
            assert by_partition == {"": 40}
        await locked.rollback()
    finally:
        await conn.close()

    async def caught_up() -> bool:
        return set((await lag()).values()) == {0}

    await wait_until(caught_up, 30, 0.1, "lag back to zero")
    assert await env.count("klines") == 40
    assert await daemon.stop_all() == [0]
