"""Acceptance: two daemon processes in one consumer group share the load; SIGKILL one
mid-ingest and the survivor takes over, with every message stored exactly once.

Kafka: a 4-partition topic, each daemon owns some partitions (seen in its lag metric), and
the survivor gets the dead one's partitions at the next rebalance. Redis Streams: both
consumers are delivered entries, and the survivor claims the dead one's pending entries.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
from collections.abc import Iterable
from pathlib import Path

import pytest

from tests.helpers import (
    SOURCES,
    TestEnv,
    free_port,
    http_get,
    kill_process,
    sample,
    scrape,
    spawn_daemon,
    stop_process,
    wait_until,
)
from tests.integration import workload
from tests.integration.test_exactly_once import stored_rows
from tests.integration.test_failures import _klines_between, _settled, assert_exactly_once

pytestmark = [pytest.mark.slow, pytest.mark.parametrize("source", SOURCES, indirect=True)]
LAG = "tickvault_source_lag_messages"


def owned_partitions(port: int, topic: str) -> set[str]:
    """Partitions of `topic` a daemon reports lag for, i.e. owns right now."""
    try:
        samples = scrape(port)
    except OSError:
        return set()
    return {
        dict(labels)["partition"] for (name, labels) in samples if name == LAG and ("topic", topic) in labels
    }


def consumed(port: int) -> float:
    try:
        return sample(scrape(port), "tickvault_messages_consumed_total", kind="kline")
    except OSError:
        return 0.0


def spawn(env: TestEnv, log: Path, name: str, port: int) -> subprocess.Popen[bytes]:
    return spawn_daemon(
        env,
        log,
        redis={"consumer": name},
        kafka={"client_id": name},
        batch={"max_rows": 500, "max_age_s": 0.05, "max_backlog_rows": 5_000},
        metrics={"enabled": True, "host": "127.0.0.1", "port": port, "lag_interval_s": 0.3},
    )


async def test_two_daemons_share_the_group_and_the_survivor_takes_over(env: TestEnv, tmp_path: Path) -> None:
    w = workload.build(klines=40_000, orders=4_000, fills=4_000, states=1_000, seed=21)
    first = {kind: p[: len(p) // 4] for kind, p in w.payloads.items()}
    rest = {kind: p[len(p) // 4 :] for kind, p in w.payloads.items()}
    for kind, payloads in first.items():
        await env.publish(kind, payloads)

    ports = {"a": free_port(), "b": free_port()}
    procs = {name: spawn(env, tmp_path / f"{name}.log", name, port) for name, port in ports.items()}
    try:
        await wait_until(lambda: _ready(ports.values()), 60, 0.1, "both daemons to be ready")
        for kind, payloads in first.items():
            await env.publish(kind, payloads)
        topic = env.stream("kline")
        if env.source == "kafka":

            async def split() -> bool:
                a, b = [await asyncio.to_thread(owned_partitions, ports[n], topic) for n in "ab"]
                return bool(a) and bool(b) and not a & b and a | b == {"0", "1", "2", "3"}

            await wait_until(split, 60, 0.2, "both daemons to own kline partitions")
        else:

            async def both_read() -> bool:
                return all([await asyncio.to_thread(consumed, ports[n]) > 0 for n in "ab"])

            await wait_until(both_read, 60, 0.2, "both consumers to be delivered entries")

        publishing = asyncio.create_task(_publish(env, rest))
        await wait_until(lambda: _klines_between(env, 15_000, 40_000), 60, 0.02, "ingest under way")
        await _kill(env, procs["b"], "b")
        await publishing

        await wait_until(lambda: _settled(env), 180, 0.3, "the survivor to finish the dead one's share")
        if env.source == "kafka":  # the survivor owns every partition now
            assert await asyncio.to_thread(owned_partitions, ports["a"], topic) == {"0", "1", "2", "3"}
        assert stop_process(procs["a"]) == 0
    finally:
        for proc in procs.values():
            kill_process(proc)
    await assert_exactly_once(env, w)
    stored = await stored_rows(env, "kline")
    assert stored == w.expected["kline"]


async def _publish(env: TestEnv, payloads: dict[str, list[str]]) -> None:
    """Publish in steps of 2,000 with a pause after each, so ingest runs while publishing
    and the kill lands mid-stream however fast or slow the machine is."""
    for kind, items in payloads.items():
        for i in range(0, len(items), 2_000):
            await env.publish(kind, items[i : i + 2_000])
            await asyncio.sleep(0.25)


def _ready_one(port: int) -> bool:
    try:
        return http_get(port, "/readyz")[0] == 200
    except OSError:
        return False


async def _ready(ports: Iterable[int]) -> bool:
    return all([await asyncio.to_thread(_ready_one, port) for port in ports])


async def _kill(env: TestEnv, proc: subprocess.Popen[bytes], consumer: str) -> None:
    """SIGKILL the daemon; on Redis at a moment it holds entries only a claim can finish."""
    if env.source == "redis":
        await _freeze_holding_entries(env, proc, consumer)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait(10) == -signal.SIGKILL
    if env.source == "redis":
        assert await _pending_of(env, consumer) > 0


async def _freeze_holding_entries(env: TestEnv, proc: subprocess.Popen[bytes], consumer: str) -> None:
    """SIGSTOP the daemon at a moment it holds unacknowledged entries (on a loaded machine it
    may have acknowledged all it read when looked at once), so a SIGKILL leaves them pending."""
    for _ in range(500):
        proc.send_signal(signal.SIGSTOP)
        if await _pending_of(env, consumer) > 0:
            return
        proc.send_signal(signal.SIGCONT)
        await asyncio.sleep(0.01)
    raise AssertionError(f"{consumer} never held unacknowledged entries")


async def _pending_of(env: TestEnv, consumer: str) -> int:
    total = 0
    for stream in env.topics:
        for c in await env.redis.xinfo_consumers(stream, env.group):
            if c["name"] in (consumer, consumer.encode()):
                total += int(c["pending"])
    return total
