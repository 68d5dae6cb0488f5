"""Public trades: stored exactly through the daemon (Redis and Kafka) and Vault.save_trades,
once per key whatever is redelivered or re-sent (the first-published copy wins), bad ones
dead-lettered with reasons, rolled to the cold tier and read back over both tiers by the
Vault, the sync facade and `tickvault query trades`."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

import tickvault
from tests.helpers import SOURCES, Daemon, TestEnv
from tests.integration.test_archive import archive_settings, roll
from tests.integration.test_query_output import cli, environ
from tickvault.errors import ConfigError, RecordError
from tickvault.store import migrate
from tickvault.vault import Vault

T0_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z
DAY = 86_400_000
UTC0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
SYMBOLS = ("BTCUSDT", "ETHUSDT")


def at(ms: int) -> dt.datetime:
    return UTC0 + dt.timedelta(milliseconds=ms - T0_MS)


def trade(i: int, symbol: str = "BTCUSDT", **extra: Any) -> dict[str, Any]:
    """The i-th trade: a distinct key, decimals of many scales, the optional fields varied."""
    body: dict[str, Any] = {
        "exchange": "binance", "symbol": symbol, "trade_id": str(4_460_000_000 + i),
        "price": f"87012.{i:02d}5000", "quantity": f"0.{i:03d}000000000000001", "ts": T0_MS + i * DAY // 8,
    }  # fmt: skip
    if i % 3:
        body["side"] = "BUY" if i % 2 else "sell"
    if i % 4:
        body["quote_quantity"] = f"{i}.10"
    return body | extra


def stored(t: dict[str, Any]) -> dict[str, Any]:
    """What a read gives back for a sent trade: the same values, decimals canonical."""
    quote = t.get("quote_quantity")
    side = t.get("side")
    return {
        "exchange": t["exchange"], "symbol": t["symbol"], "trade_id": t["trade_id"],
        "price": Decimal(t["price"]).normalize(), "quantity": Decimal(t["quantity"]).normalize(),
        "side": None if side is None else side.lower(),
        "quote_quantity": None if quote is None else Decimal(quote).normalize(), "ts": at(t["ts"]),
    }  # fmt: skip


def plain(table: pa.Table) -> list[dict[str, Any]]:
    return [
        {k: v.normalize() if isinstance(v, Decimal) else v for k, v in r.items()} for r in table.to_pylist()
    ]


BAD: tuple[tuple[dict[str, Any] | bytes, str], ...] = (
    (trade(90, price="0"), "price: must be greater than zero"),
    (trade(91, quantity="-1"), "quantity: must be greater than zero"),
    (trade(92, side="hold"), "side: Input should be 'buy' or 'sell'"),
    (trade(93, trade_id=4460000093), "trade_id: Input should be a valid string"),
    (trade(94, quote_quantity="NaN"), "quote_quantity: must be finite"),
    (trade(95, ts="2026-01-01T00:00:00"), "ts: "),
    ({k: v for k, v in trade(96).items() if k != "trade_id"}, "trade_id: Field required"),
    (trade(97, price="1e40"), "price: does not fit decimal(38, 18)"),
    (b'{"exchange": "binance", "symbol": "BTCUSDT", "price": NaN}', "NaN"),
)


def payload(message: dict[str, Any] | bytes) -> bytes:
    return message if isinstance(message, bytes) else json.dumps(message).encode()


@pytest.mark.parametrize("source", SOURCES, indirect=True)
async def test_daemon_stores_trades_exactly_once_and_dead_letters_bad_ones(
    env: TestEnv, daemon: Daemon
) -> None:
    await daemon.start()
    good = [trade(i, symbol=SYMBOLS[i % 2]) for i in range(13)]
    first = [json.dumps(t) for t in good]
    first[12] = first[12].replace('"87012.125000"', "87012.125000")  # a JSON number: exact too
    later_copies = [
        json.dumps(trade(i, symbol=SYMBOLS[i % 2], price="1.5", side="sell")) for i in range(0, 12, 3)
    ]
    await env.publish("trade", [*first, *later_copies, *first])  # re-sent copies, then every one again
    await env.publish("trade", [payload(m) for m, _ in BAD])
    mixed = {**trade(20, symbol="SOLUSDT"), "kind": "trade"}
    await env.publish("mixed", [json.dumps(mixed)])
    await daemon.drain()

    async with Vault.connect(env.settings()) as vault:
        trades = await vault.trades("binance", symbols=list(SYMBOLS))
        sol = await vault.trades(symbol="SOLUSDT")
    assert plain(trades) == [stored(t) for t in good]  # the first-published copies, time order
    assert plain(sol) == [stored(trade(20, symbol="SOLUSDT"))]
    assert await env.count("trades") == len(good) + 1
    rows = await env.fetch(
        "SELECT price::text AS p, quantity::text AS q FROM {s}.trades WHERE trade_id = $1",
        good[1]["trade_id"],
    )
    assert (rows[0]["p"], rows[0]["q"]) == (good[1]["price"], good[1]["quantity"])  # scale kept as sent

    letters = await env.fetch("SELECT kind, category, reason, payload FROM {s}.dead_letters ORDER BY id")
    assert len(letters) == len(BAD)
    for (message, fragment), letter in zip(
        sorted(BAD, key=lambda b: payload(b[0])),
        sorted(letters, key=lambda r: bytes(r["payload"])),
        strict=True,
    ):
        assert bytes(letter["payload"]) == payload(message)
        assert letter["kind"] == "trade"
        assert fragment in letter["reason"], (fragment, letter["reason"])


async def test_save_trades_shares_the_rules_and_reads_filter(env: TestEnv) -> None:
    settings = env.settings()
    await migrate.upgrade(settings.postgres)
    sent = [trade(i, symbol=SYMBOLS[i % 2]) for i in range(8)]
    async with Vault.connect(settings) as vault:
        assert await vault.save_trades(sent) == 8
        assert await vault.save_trades([trade(0, price="2"), trade(8)]) == 1  # only the new key
        with pytest.raises(RecordError, match=r"^item 1: invalid trade: price: must be greater than zero"):
            await vault.save_trades([trade(9), trade(10, price="-3")])
        everything = await vault.trades()
        eth = await vault.trades("binance", "ETHUSDT", start=T0_MS + DAY // 8, end=T0_MS + DAY)
        first_two = await vault.trades(symbols=list(SYMBOLS), limit=2, columns=["ts", "price"])
        as_floats = await vault.trades(symbol="BTCUSDT", columns="price,quantity", floats=True)
        with pytest.raises(ConfigError, match="unknown column 'fee'"):
            await vault.trades(columns=["fee"])
    assert plain(everything) == [stored(t) for t in [*sent, trade(8)]]  # trade(9) was not written
    assert plain(eth) == [stored(t) for t in sent if t["symbol"] == "ETHUSDT"]
    assert first_two.column_names == ["ts", "price"] and first_two.num_rows == 2
    assert first_two.column("price").to_pylist()[0] == Decimal("87012.005")
    assert as_floats.schema.field("price").type == pa.float64()
    assert as_floats.column("quantity").to_pylist()[1] == pytest.approx(0.002)


async def test_trades_roll_and_read_back_over_both_tiers(
    env: TestEnv, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = archive_settings(env, tmp_path / "cold")
    await migrate.upgrade(settings.postgres)
    sent = [trade(i, symbol=SYMBOLS[i % 2]) for i in range(40)]  # 5 days, 8 a day
    async with Vault.connect(settings) as vault:
        await vault.save_trades(sent)
        before = await vault.trades()
    outcomes = await roll(settings, tables=["trades"])
    assert {o.status for o in outcomes} == {"rolled"} and len(outcomes) == 3  # days 1-3
    assert await env.count("trades") == 16  # days 4 and 5 stay hot
    async with Vault.connect(settings) as vault:
        after = await vault.trades()
        # a later copy of a rolled trade lands hot: the cold, first-stored one still wins
        assert await vault.save_trades([trade(2, price="9.99")]) == 1
        again = await vault.trades()
        window = await vault.trades("binance", "ETHUSDT", start=T0_MS + 2 * DAY, end=T0_MS + 4 * DAY)
    assert after.equals(before) and again.equals(before)
    assert plain(before) == [stored(t) for t in sent]
    expected_window = [stored(t) for t in sent[16:32] if t["symbol"] == "ETHUSDT"]
    assert plain(window) == expected_window  # day 3 cold, day 4 hot
    with tickvault.connect(settings) as sync_vault:
        assert sync_vault.trades(symbols=list(SYMBOLS)).equals(before)

    environ(env, tmp_path / "cold", monkeypatch)
    args = ["query", "trades", "--exchange", "binance", "--symbols", ",".join(SYMBOLS), "--format", "csv"]
    code, out, err = await cli(args, capsys)
    assert code == 0 and err.strip() == "40 trades"
    rows = list(csv.DictReader(io.StringIO(out)))
    assert [r["trade_id"] for r in rows] == [t["trade_id"] for t in sent]
    assert rows[1]["price"] == "87012.015" and rows[2]["side"] == "sell"
    code, _, err = await cli(["query", "trades", "--symbol", "XRPUSDT"], capsys)
    assert code == 1 and "no trades stored for symbol XRPUSDT" in err
    with pytest.raises(SystemExit) as usage:  # a filter trades do not take: a usage error
        await cli(["query", "trades", "--bot-id", "x"], capsys)
    assert usage.value.code == 2 and "--bot-id does not apply to trades" in capsys.readouterr().err
