"""Positions, the trading summary and orders read back through Vault over both tiers, matching
the hand-computed example of tests/trading_example.py: fills written shuffled, redelivered
and contradicted by later copies, then mostly rolled to the cold tier."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import random
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

import tickvault
from tests.helpers import TestEnv
from tests.integration.test_archive import archive_settings, roll, write
from tests.integration.test_query_output import cli, environ
from tests.trading_example import (
    ALL_SUMMARY,
    BTC_BEFORE_F7,
    BTC_POSITION,
    BTC_SUMMARY,
    BTC_WINDOW_SUMMARY,
    ETH_POSITION,
    FILLS,
    T0_MS,
    at,
    btc_ms,
)
from tickvault.cli import main
from tickvault.settings import Settings
from tickvault.store import Store, migrate
from tickvault.trading.command import summary_row
from tickvault.vault import Vault

HOUR_MS = 3_600_000


def order(order_id: str, status: str, filled: str, minute: int, bot_id: str = "grid-1") -> dict[str, Any]:
    return {
        "order_id": order_id, "exchange": "binance", "symbol": "BTCUSDT", "side": "buy", "type": "limit",
        "status": status, "quantity": "0.5", "price": "110", "filled_quantity": filled, "bot_id": bot_id,
        "created_at": T0_MS, "updated_at": btc_ms(2) + minute * 60_000,
    }  # fmt: skip


ORDERS = [
    order("o1", "new", "0", 0), order("o1", "filled", "0.5", 1),
    order("o2", "new", "0", 0), order("o2", "partially_filled", "0.3", 1),
    order("o2", "partially_filled", "0.5", 2),  # both its fills (f2, f3) in, still open
    order("o5", "open", "0", 0), order("o5", "canceled", "0", 3),
    order("o9", "new", "0", 4),
    order("q1", "open", "0", 5, bot_id="grid-2"),
]  # fmt: skip


async def stored(env: TestEnv, root: Path) -> Settings:
    """The example's fills and orders written out of order, twice over, with later copies that
    must not count, then every day but the last two rolled to the cold tier."""
    settings = archive_settings(env, root)
    await migrate.upgrade(settings.postgres)
    shuffled = random.Random(15)
    first = FILLS[:]
    shuffled.shuffle(first)
    async with Store(settings.postgres, writer=True) as store:
        await write(store, "fill", first[:6] + first[:2], version_ms=5)  # a repeat inside a batch
        await write(store, "fill", first[6:], version_ms=6)
        again = FILLS[:]
        shuffled.shuffle(again)
        await write(store, "fill", again, version_ms=7)  # every fill redelivered
        # later-published copies with other values: the first-published fill stands
        await write(store, "fill", [FILLS[1] | {"price": "999"}, FILLS[7] | {"quantity": "5"}], version_ms=8)
        await write(store, "order", ORDERS[::-1], version_ms=5)
    outcomes = await roll(settings)
    assert {o.status for o in outcomes} == {"rolled"}
    async with Store(settings.postgres, writer=True) as store:
        # after the roll: a redelivery of a cold fill, and a copy of one with a later ts (a
        # second stored row; it counts once, at its first ts)
        late = [FILLS[1], FILLS[3] | {"ts": FILLS[3]["ts"] + HOUR_MS}]
        await write(store, "fill", late, version_ms=9)
    return settings


async def test_positions_and_summary_match_the_hand_computed_example_across_tiers(
    env: TestEnv, tmp_path: Path
) -> None:
    settings = await stored(env, tmp_path / "cold")
    hot = {r["fill_id"] for r in await env.fetch("SELECT fill_id FROM {s}.fills")}
    assert hot == {"f2", "f4", "f6", "f7", "f8", "f9", "e2"}  # f1..f5 and e1 rolled, two late copies
    async with Vault.connect(settings) as vault:
        assert (await vault.positions()).to_pylist() == [BTC_POSITION, ETH_POSITION]
        assert (await vault.positions(bot_id="grid-1", symbol="ETH-USDT")).to_pylist() == [ETH_POSITION]
        assert (await vault.positions(bot_id="grid-2")).num_rows == 0
        past = await vault.positions(exchange="binance", symbol="BTCUSDT", as_of=at(btc_ms(7)))
        assert past.to_pylist() == [BTC_BEFORE_F7]  # f1..f6: short 0.3 @ 125, f1..f5 cold
        assert summary_row(await vault.trading_summary("grid-1", symbol="BTCUSDT")) == BTC_SUMMARY
        assert summary_row(await vault.trading_summary()) == ALL_SUMMARY
        window = await vault.trading_summary(symbol="BTCUSDT", start=btc_ms(5), end=at(btc_ms(8)))
        assert summary_row(window) == BTC_WINDOW_SUMMARY
        mean = summary_row(await vault.trading_summary(strategy="mean"))
    assert (mean["fills"], mean["round_trips"], mean["net_pnl"]) == (2, 1, Decimal("9.91"))
    with tickvault.connect(settings) as sync:
        assert sync.positions(symbol="BTCUSDT").to_pylist() == [BTC_POSITION]
        assert summary_row(sync.trading_summary(bot_id="grid-1")) == ALL_SUMMARY


async def test_open_orders_and_one_order_whole(env: TestEnv, tmp_path: Path) -> None:
    settings = await stored(env, tmp_path / "cold")
    async with Vault.connect(settings) as vault:
        open_now = await vault.open_orders(bot_id="grid-1")
        everyone = await vault.open_orders(symbol="BTCUSDT")
        o2 = await vault.order("binance", "o2")
        fills_only = await vault.order("binance", "o4")  # f5's order: no order message stored
        missing = await vault.order("binance", "nope")
    assert open_now.column("order_id").to_pylist() == ["o2", "o9"]  # oldest update first
    assert open_now.column("status").to_pylist() == ["partially_filled", "new"]
    assert sorted(everyone.column("order_id").to_pylist()) == ["o2", "o9", "q1"]
    assert o2 is not None and o2.current is not None
    assert (o2.current["status"], o2.current["filled_quantity"]) == ("partially_filled", Decimal("0.5"))
    assert o2.history.column("status").to_pylist() == ["new", "partially_filled", "partially_filled"]
    assert o2.fills.column("fill_id").to_pylist() == ["f2", "f3"]  # one hot, one cold
    assert o2.fills.column("price").to_pylist() == [Decimal(110), Decimal(110)]  # not the later 999
    assert fills_only is not None and fills_only.current is None and fills_only.fills.num_rows == 1
    assert missing is None
    with tickvault.connect(settings) as sync:
        detail = sync.order("binance", "o1")
        assert detail is not None and detail.current is not None and detail.current["status"] == "filled"
        assert sync.open_orders(bot_id="grid-2").column("order_id").to_pylist() == ["q1"]


async def test_summary_command(
    env: TestEnv, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    environ(env, tmp_path / "cold", monkeypatch)
    await stored(env, tmp_path / "cold")
    args = ["summary", "--bot-id", "grid-1", "--symbol", "BTCUSDT"]
    code, out, err = await cli([*args, "--format", "jsonl"], capsys)
    assert code == 0 and err == ""
    got = json.loads(out, parse_float=Decimal)
    assert got["net_pnl"] == Decimal("17.651") and got["profit_factor"] == Decimal("144.666666666666666667")
    assert got["other_fees"] == {"BNB": Decimal("0.01"), "BTC": Decimal("0.0002")}
    assert got["first_fill_at"] == "2026-01-01T12:00:00Z" and got["fills"] == 9
    code, out, _ = await cli(
        [*args, "--format", "csv", "--start", str(btc_ms(5)), "--end", str(btc_ms(8))], capsys
    )
    [header, row] = list(csv.reader(io.StringIO(out)))
    values = dict(zip(header, row, strict=True))
    assert (values["fills"], values["realized_pnl"], values["average_loss"]) == ("3", "11.5", "")
    code, out, _ = await cli(args, capsys)
    lines = dict(line.split(None, 1) for line in out.splitlines()[1:])
    assert lines["max_drawdown"].strip() == "0.513" and lines["round_trips"].strip() == "2"
    code, _, err = await cli(["summary", "--bot-id", "nobody"], capsys)
    assert code == 0 and "no fills match" in err
    with pytest.raises(SystemExit) as exited:
        await asyncio.to_thread(main, [*args, "--start", "2026-01-02"])  # no offset
    assert exited.value.code == 2 and "argument --start" in capsys.readouterr().err
