"""Balances and signals: two more message kinds, stored exactly through the daemon and through
the Vault's save_* writes (one code path), dead-lettered with reasons when bad, rolled to the
cold tier and read back over both tiers."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import Daemon, TestEnv
from tests.integration.test_archive import archive_settings, roll
from tickvault.errors import RecordError
from tickvault.record_schemas import EXAMPLES
from tickvault.records import dump_json
from tickvault.store import migrate
from tickvault.vault import Vault

T0_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z
DAY = 86_400_000
UTC0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def at(ms: int) -> dt.datetime:
    return UTC0 + dt.timedelta(milliseconds=ms - T0_MS)


def balance(i: int, **extra: Any) -> dict[str, Any]:
    return {
        "account": "grid-1", "exchange": "binance", "asset": "USDT", "free": f"1000.{i:03d}00000000000001",
        "locked": "0.5", "ts": T0_MS + i * DAY // 4, **extra,
    }  # fmt: skip


def signal(i: int, **extra: Any) -> dict[str, Any]:
    return {
        "bot_id": "grid-1", "strategy": "grid", "exchange": "binance", "symbol": "BTCUSDT",
        "ts": T0_MS + i * DAY // 4, "action": "buy" if i % 2 else "SELL", "strength": f"0.{i}5",
        "metadata": {"level": Decimal(f"87000.{i}0"), "why": "crossed", "tags": [1, 2.50]}, **extra,
    }  # fmt: skip


def plain(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v.normalize() if isinstance(v, Decimal) else v for k, v in r.items()} for r in rows]


async def test_daemon_stores_them_exactly_and_dead_letters_bad_ones(env: TestEnv, daemon: Daemon) -> None:
    await daemon.start()
    good_balances = [balance(i) for i in range(4)]
    good_signals = [signal(i) for i in range(4)]
    bad = {
        "balance": [balance(9, free="-1"), balance(9, asset="US DT"), balance(9, free="1e40")],
        "signal": [signal(9, action="moon"), signal(9, metadata=[1]), signal(9, strength="NaN"),
                   {k: v for k, v in signal(9).items() if k != "strategy"}],
    }  # fmt: skip
    dumps = dump_json  # Decimals as exact JSON numbers
    await env.publish("balance", [dumps(b) for b in [*good_balances, *bad["balance"]]])
    await env.publish("signal", [dumps(s) for s in [*good_signals, *bad["signal"]]])
    await daemon.drain()
    async with Vault.connect(env.settings()) as vault:
        balances = await vault.balances(account="grid-1")
        signals = await vault.signals(bot_id="grid-1", symbols=["BTCUSDT"])
    assert plain(balances.to_pylist()) == [
        {"account": "grid-1", "exchange": "binance", "asset": "USDT", "free": Decimal(b["free"]).normalize(),
         "locked": Decimal("0.5"), "ts": at(b["ts"])} for b in good_balances
    ]  # fmt: skip
    assert signals.column("action").to_pylist() == ["sell", "buy", "sell", "buy"]
    assert [json.loads(m) for m in signals.column("metadata").to_pylist()][1] == {
        "level": 87000.1, "why": "crossed", "tags": [1, 2.5]
    }  # fmt: skip
    stored = await env.fetch("SELECT metadata::text AS m FROM {s}.signals ORDER BY ts LIMIT 2")
    assert '"level": 87000.10' in stored[1]["m"]  # exact digits in jsonb
    letters = await env.fetch("SELECT kind, category, reason FROM {s}.dead_letters ORDER BY id")
    reasons = sorted(r["reason"] for r in letters)
    assert len(letters) == 7 and {r["category"] for r in letters} == {"invalid"}
    for text in (
        "free: must not be negative", "asset: String should match pattern", "does not fit decimal(38, 18)",
        "action: Input should be 'buy', 'sell', 'hold' or 'close'", "metadata", "must be finite",
        "strategy: Field required",
    ):  # fmt: skip
        assert any(text in r for r in reasons), (text, reasons)


async def test_saves_share_the_daemons_rules_and_are_all_or_nothing(env: TestEnv) -> None:
    settings = env.settings()
    await migrate.upgrade(settings.postgres)
    async with Vault.connect(settings) as vault:
        assert await vault.save_balances([balance(0), balance(1)]) == 2
        first = await env.fetch("SELECT ts, free, ingested_at, version_ms FROM {s}.balances ORDER BY ts")
        # the same again: a later "publish" of equal values, only the version moves
        assert await vault.save_balances([balance(0), balance(1)]) == 2
        again = await env.fetch("SELECT ts, free, ingested_at, version_ms FROM {s}.balances ORDER BY ts")
        assert [r[:3] for r in again] == [r[:3] for r in first]
        assert all(a["version_ms"] >= f["version_ms"] for a, f in zip(again, first, strict=True))
        assert await vault.save_balances([balance(1, free="7")]) == 1  # later published wins
        assert await vault.save_signals([signal(0)]) == 1
        assert await vault.save_klines([EXAMPLES["kline"]]) == 1
        assert await vault.save_orders([EXAMPLES["order"]]) >= 1
        assert await vault.save_fills([EXAMPLES["fill"]]) == 1
        assert await vault.save_fills([EXAMPLES["fill"] | {"price": "1"}]) == 0  # first stored fill wins
        with pytest.raises(RecordError, match=r"^item 1: invalid balance: free: must not be negative"):
            await vault.save_balances([balance(5), balance(6, free="-2")])
        with pytest.raises(RecordError, match="item 0: a fill, not a kline"):
            await vault.save_klines([EXAMPLES["fill"] | {"kind": "fill"}])
        balances = await vault.balances()
        klines = await vault.klines("binance", "BTCUSDT", "1m")
        fills = await vault.fills()
        orders = await vault.orders()
    assert balances.column("free").to_pylist()[1] == Decimal(7)
    assert balances.num_rows == 2  # balance(5) was not written: the call failed as a whole
    assert klines.column("close").to_pylist() == [Decimal("87055.25")]
    assert fills.column("price").to_pylist() == [Decimal("87000")]
    assert orders.column("status").to_pylist() == ["partially_filled"]


async def test_balances_and_signals_roll_and_read_back_over_both_tiers(env: TestEnv, tmp_path: Path) -> None:
    settings = archive_settings(env, tmp_path / "cold")
    await migrate.upgrade(settings.postgres)
    sent_balances = [balance(i) for i in range(20)]  # 5 days, 4 a day
    sent_signals = [signal(i) for i in range(20)]
    async with Vault.connect(settings) as vault:
        await vault.save_balances(sent_balances)
        await vault.save_signals(sent_signals)
        before = (await vault.balances(), await vault.signals())
    outcomes = await roll(settings, tables=["balances", "signals"])
    assert {o.status for o in outcomes} == {"rolled"} and len(outcomes) == 6  # days 1-3 of each
    assert await env.count("balances") == 8  # days 4 and 5 stay hot
    async with Vault.connect(settings) as vault:
        after = (await vault.balances(), await vault.signals())
    assert after[0].equals(before[0]) and after[1].equals(before[1])
