"""`tickvault.publish.Publisher`: bots publish validated records to the daemon's Redis streams
or Kafka topics in the native format; what they publish is stored exactly, and a bad record
raises at the caller before anything is sent."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from tests.helpers import SOURCES, Daemon, TestEnv, wait_until
from tickvault.errors import ConfigError, RecordError
from tickvault.publish import Publisher
from tickvault.record_schemas import EXAMPLES
from tickvault.records import Fill, Kline
from tickvault.vault import Vault

pytestmark = pytest.mark.parametrize("source", SOURCES, indirect=True)
T0 = 1_767_225_600_000


def kline(i: int) -> dict[str, object]:
    return EXAMPLES["kline"] | {
        "open_time": T0 + i * 60_000, "close_time": T0 + i * 60_000 + 59_999,
        "close": f"87055.{i}00000000000001", "volume": Decimal("12.3450"),
    }  # fmt: skip


async def test_published_records_are_stored_exactly(env: TestEnv, daemon: Daemon) -> None:
    settings = env.settings()
    await daemon.start(settings)
    fill = Fill.model_validate(EXAMPLES["fill"])  # a record object, as well as dicts
    async with Publisher.connect(settings, batch=3) as pub:
        assert await pub.klines([kline(i) for i in range(10)]) == 10
        assert await pub.fills([fill]) == 1
        assert await pub.orders([EXAMPLES["order"]]) == 1
        assert await pub.balances([EXAMPLES["balance"]]) == 1
        assert await pub.signals([EXAMPLES["signal"]]) == 1
        assert await pub.bot_state([EXAMPLES["bot_state"]]) == 1
        assert await pub.send("kline", [kline(10)], topic=env.stream("mixed")) == 1  # any topic

    async def stored() -> bool:
        return await env.count("klines") == 11 and await env.count("signals") == 1

    await wait_until(stored, 60, what="published messages to be stored")
    async with Vault.connect(settings) as vault:
        klines = await vault.klines("binance", "BTCUSDT", "1m")
        fills = await vault.fills()
        state = await vault.load_bot_state("grid-btc-1")
        signals = await vault.signals()
    assert klines.column("close").to_pylist() == [Decimal(f"87055.{i}00000000000001") for i in range(11)]
    assert klines.column("volume").to_pylist()[0] == Decimal("12.345")
    assert klines.column("open_time").to_pylist()[0] == dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    assert fills.column("fee").to_pylist() == [Decimal("0.00002")]
    assert state is not None and state.state["position"] == "0.020"
    assert signals.column("action").to_pylist() == ["buy"]
    assert await env.count("dead_letters") == 0


async def test_a_bad_record_raises_at_the_caller_and_nothing_is_sent(env: TestEnv) -> None:
    settings = env.settings()
    async with Publisher.connect(settings) as pub:
        with pytest.raises(RecordError, match=r"^item 1: invalid kline: message: high < low"):
            await pub.klines([kline(0), kline(1) | {"high": "1", "low": "2"}])
        with pytest.raises(RecordError, match=r"^item 0: invalid fill: price: float is not exact"):
            await pub.fills([EXAMPLES["fill"] | {"price": 87000.5}])
        with pytest.raises(RecordError, match="item 0: a Kline, not a fill or a mapping"):
            await pub.fills([Kline.model_validate(EXAMPLES["kline"])])
        with pytest.raises(ConfigError, match="unknown kind 'candle'"):
            await pub.send("candle", [{}])
    only = env.settings(source={"topics": {env.stream("kline"): "kline"}})
    async with Publisher.connect(only) as pub:
        with pytest.raises(ConfigError, match="no stream or topic of kind fill"):
            await pub.fills([EXAMPLES["fill"]])
    assert await env.unsettled() == 0 and await env.pending() == 0
    if env.source == "redis":
        assert (
            await env.redis.xlen(env.stream("kline")) == 0
            if await env.redis.exists(env.stream("kline"))
            else True
        )
