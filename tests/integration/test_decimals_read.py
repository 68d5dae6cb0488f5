"""Decimals read back in one canonical form (README "Decimals"): the exact value, positional,
trailing zeros removed — from the Vault and from every `query` format — while PostgreSQL keeps
what was sent. The issue's example: a fill of 10000 at 100000 with a fee of 0.00000001 used to
print as `1E+4,1.0E+5,1E-8` because asyncpg decodes numeric 10000 as Decimal('1E+4')."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from decimal import Decimal

import pytest

from tests.helpers import Daemon, TestEnv, record_vault
from tests.integration.test_cli import tickvault
from tickvault.record_schemas import EXAMPLES

ISSUE_FILL = (
    '{"fill_id":"F1","order_id":"O1","exchange":"binance","symbol":"BTCUSDT","side":"buy",'
    '"quantity":"10000","price":"100000","fee":"0.00000001","ts":1767225600000}'
)
# the same values as JSON numbers in exponent form: stored and read back the same way
EXPONENT_FILL = (
    '{"fill_id":"F2","order_id":"O1","exchange":"binance","symbol":"BTCUSDT","side":"sell",'
    '"quantity":1E+4,"price":1.0E+5,"fee":1e-8,"ts":1767225601000}'
)
KLINE = json.dumps(EXAMPLES["kline"])  # open 87012.50, high 87100.00, ... as the README shows
STATE = '{"bot_id":"b1","ts":1767225600000,"state":{"position":1E+4,"pnl":87012.50,"fee":1e-8,"n":[0.000]}}'
FILL_HEADER = (
    "fill_id,order_id,exchange,symbol,side,quantity,price,fee,fee_asset,liquidity,bot_id,strategy,ts"
)


@pytest.fixture
async def stored(env: TestEnv, daemon: Daemon) -> AsyncIterator[TestEnv]:
    await daemon.start()
    await env.publish("fill", [ISSUE_FILL, EXPONENT_FILL])
    await env.publish("kline", [KLINE])
    await env.publish("bot_state", [STATE])
    await daemon.drain()
    assert await daemon.stop_all() == [0]
    assert await env.count("dead_letters") == 0
    yield env


async def test_postgresql_keeps_what_was_sent(stored: TestEnv) -> None:
    """Storage does not change: numeric holds the digits and the scale that were sent."""
    fills = await stored.fetch("SELECT quantity::text, price::text, fee::text FROM {s}.fills ORDER BY ts")
    assert [tuple(r) for r in fills] == [("10000", "100000", "0.00000001")] * 2
    [kline] = await stored.fetch("SELECT open::text, high::text, volume::text FROM {s}.klines")
    assert tuple(kline) == ("87012.50", "87100.00", "12.345")


async def test_vault_returns_the_stored_digits_never_a_positive_exponent(stored: TestEnv) -> None:
    async with record_vault(stored.settings()) as vault:
        fills = await vault.fills()
        [kline] = await vault.klines("binance", "BTCUSDT", "1m")
        state = await vault.load_bot_state("b1")
    assert [f.fill_id for f in fills] == ["F1", "F2"]
    for f in fills:
        assert f.quantity.as_tuple() == Decimal("10000").as_tuple()
        assert f.price.as_tuple() == Decimal("100000").as_tuple()
        assert f.fee.as_tuple() == Decimal("0.00000001").as_tuple()
    expected = {
        "open": "87012.5", "high": "87100", "low": "86990.1", "close": "87055.25",
        "volume": "12.345", "quote_volume": "1074381.62",
    }  # fmt: skip
    for name, text in expected.items():
        value = getattr(kline, name)
        assert value.as_tuple() == Decimal(text).as_tuple(), name
        assert format(value, "f") == text, name
    assert state is not None
    assert state.state == {"position": 10000, "pnl": Decimal("87012.5"), "fee": Decimal("1E-8"), "n": [0]}
    assert state.state["pnl"].as_tuple() == Decimal("87012.5").as_tuple()
    assert state.state["n"][0].as_tuple() == Decimal(0).as_tuple()


async def test_query_fills_csv_is_positional(stored: TestEnv) -> None:
    result = await tickvault(stored, "query", "fills", "--format", "csv")
    assert result.code == 0, result.lines
    assert result.out == [
        FILL_HEADER,
        "F1,O1,binance,BTCUSDT,buy,10000,100000,0.00000001,,,,,2026-01-01T00:00:00Z",
        "F2,O1,binance,BTCUSDT,sell,10000,100000,0.00000001,,,,,2026-01-01T00:00:01Z",
    ]
    assert result.err == ["2 fills"]


async def test_query_fills_jsonl_writes_positional_json_numbers(stored: TestEnv) -> None:
    result = await tickvault(stored, "query", "fills", "--bot-id", "nobody", "--format", "jsonl")
    assert result.code == 1  # (a filter that matches nothing at all)
    result = await tickvault(stored, "query", "fills", "--symbol", "BTCUSDT", "--format", "jsonl")
    assert result.code == 0, result.lines
    assert result.out[0] == (
        '{"fill_id":"F1","order_id":"O1","exchange":"binance","symbol":"BTCUSDT","side":"buy",'
        '"quantity":10000,"price":100000,"fee":0.00000001,"fee_asset":null,"liquidity":null,'
        '"bot_id":null,"strategy":null,"ts":"2026-01-01T00:00:00Z"}'
    )
    assert [json.loads(line, parse_float=Decimal)["fee"] for line in result.out] == [Decimal("1E-8")] * 2


async def test_query_fills_table_is_positional(stored: TestEnv) -> None:
    result = await tickvault(stored, "query", "fills", "--limit", "1")
    assert result.code == 0, result.lines
    assert result.out == [
        "fill_id  order_id  exchange  symbol   side  quantity  price   fee         fee_asset  liquidity  "
        "bot_id  strategy  ts                  ",
        "F1       O1        binance   BTCUSDT  buy   10000     100000  0.00000001                       "
        "                   2026-01-01T00:00:00Z",
    ]
    assert result.err == ["1 fill"]


async def test_query_klines_prints_the_readme_example(stored: TestEnv) -> None:
    args = ("query", "klines", "--exchange", "binance", "--symbol", "BTCUSDT")
    table, csv = await tickvault(stored, *args), await tickvault(stored, *args, "--format", "csv")
    assert table.code == 0, table.lines
    assert table.out == [
        "exchange  symbol   interval  open_time             close_time                   open     high   "
        "low      close     volume  quote_volume  trades  closed",
        "binance   BTCUSDT  1m        2026-01-01T00:00:00Z  2026-01-01T00:00:59.999000Z  87012.5  87100  "
        "86990.1  87055.25  12.345  1074381.62    842     True  ",
    ]
    assert table.err == ["1 kline"]
    assert csv.out[1] == (
        "binance,BTCUSDT,1m,2026-01-01T00:00:00Z,2026-01-01T00:00:59.999000Z,"
        "87012.5,87100,86990.1,87055.25,12.345,1074381.62,842,True"
    )


async def test_query_bot_state_numbers_are_positional(stored: TestEnv) -> None:
    # jsonb orders keys by length, then bytewise
    state = '{"n":[0],"fee":0.00000001,"pnl":87012.5,"position":10000}'
    jsonl = await tickvault(stored, "query", "bot_state", "--format", "jsonl")
    assert jsonl.code == 0, jsonl.lines
    assert jsonl.out == ['{"bot_id":"b1","ts":"2026-01-01T00:00:00Z","seq":null,"state":' + state + "}"]
    assert jsonl.err == ["1 bot state"]
    csv = await tickvault(stored, "query", "bot_state", "--format", "csv")
    assert csv.code == 0, csv.lines
    assert csv.out == ["bot_id,ts,seq,state", 'b1,2026-01-01T00:00:00Z,,"' + state.replace('"', '""') + '"']
