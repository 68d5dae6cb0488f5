"""The read API (`Vault`) and the `query` CLI over data ingested through the daemon:
exact decimals, UTC-aware timestamps, [start, end) windows, filters and output formats."""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import io
import json
import os
import re
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import pytest

import tickvault
from tests.helpers import Daemon, TestEnv, record_vault
from tickvault.errors import ConfigError
from tickvault.records import BotState, Fill, Kline, Order
from tickvault.vault import Vault

T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z
MINUTE = 60_000
UTC0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
DECIMAL_FIELDS = ("open", "high", "low", "close", "volume", "quote_volume")


def plain(sent: str) -> str:
    """The canonical text of a decimal sent without an exponent: trailing zeros removed."""
    return sent.rstrip("0").rstrip(".") if "." in sent else sent


def utc(ms: int) -> dt.datetime:
    return UTC0 + dt.timedelta(milliseconds=ms - T0)


def candle(i: int) -> dict[str, Any]:
    """The i-th one-minute candle of binance BTCUSDT, every decimal as exact text."""
    base = Decimal("87012.123456789012") + i
    return {
        "exchange": "binance", "symbol": "BTCUSDT", "interval": "1m",
        "open_time": T0 + i * MINUTE, "close_time": T0 + i * MINUTE + 59_999,
        "open": str(base), "high": str(base + Decimal("10.000000000001")),
        "low": str(base - Decimal("5.5")), "close": f"{base + Decimal('1.25')}0",
        "volume": f"{i + 1}.500000000000000001", "quote_volume": f"1074381.{i}20",
        "trades": 800 + i, "closed": True,
    }  # fmt: skip


CANDLES = [candle(i) for i in range(10)]


def other_series() -> list[dict[str, Any]]:
    """Candles sharing open times with the main series but not its key."""
    out = []
    for exchange, symbol, interval, times in (
        ("binance", "ETHUSDT", "1m", [T0 + i * MINUTE for i in range(10)]),
        ("binance", "BTCUSDT", "5m", [T0, T0 + 5 * MINUTE]),
        ("okx", "BTCUSDT", "1m", [T0, T0 + MINUTE]),
    ):
        for t in times:
            out.append({
                "exchange": exchange, "symbol": symbol, "interval": interval, "open_time": t,
                "open": "3000.5", "high": "3001", "low": "2999", "close": "3000", "volume": "1",
            })  # fmt: skip
    return out


def order(order_id: str, status: str, updated_ms: int, seq: int, **extra: Any) -> dict[str, Any]:
    return {
        "order_id": order_id, "exchange": "binance", "symbol": "BTCUSDT", "side": "buy",
        "type": "limit", "status": status, "quantity": "0.050", "price": "87000.00",
        "filled_quantity": "0", "bot_id": "grid-1", "strategy": "grid", "updated_at": updated_ms,
        "seq": seq, **extra,
    }  # fmt: skip


O1_UPDATES = [
    order("O1", "new", T0 + 1000, 1, client_order_id="grid-7f3a", created_at="2026-01-01T00:00:01Z"),
    order("O1", "partially_filled", T0 + 2000, 2, filled_quantity="0.020", avg_fill_price="87000.00"),
    order("O1", "filled", T0 + 3000, 3, filled_quantity="0.050", avg_fill_price="87000.1250000001"),
]
ORDERS = [
    *O1_UPDATES,
    O1_UPDATES[1],  # redelivered: not a new event
    order("O2", "open", T0 + 1500, 1, bot_id="grid-2"),
    order("O3", "canceled", T0 + 2500, 1, symbol="ETHUSDT", price="3000.5"),
    order("O1", "open", T0 + 4000, 1, exchange="okx"),  # same order id, other exchange
]


def fill(fill_id: str, order_id: str, ts_ms: int, **extra: Any) -> dict[str, Any]:
    return {
        "fill_id": fill_id, "order_id": order_id, "exchange": "binance", "symbol": "BTCUSDT",
        "side": "buy", "quantity": "0.020", "price": "87000.00", "fee": "0.0000200",
        "fee_asset": "BTC", "liquidity": "maker", "bot_id": "grid-1", "strategy": "grid",
        "ts": ts_ms, **extra,
    }  # fmt: skip


FILLS = [
    fill("F1", "O1", T0 + 2000),
    fill("F2", "O1", T0 + 3000, quantity="0.030", price="87000.2083333333333", fee="-0.000001"),
    fill("F3", "O2", T0 + 2500, bot_id="grid-2"),
    fill("F4", "O1", T0 + 4000, exchange="okx"),
]

# raw JSON numbers, so the state's decimals only stay exact if nothing goes through float
NEWEST_STATE_TEXT = (
    '{"position": 0.050000000000000000001, "grid": [86500.5, 87000, 87500.250], '
    '"risk": {"pnl": -12.340, "max_dd": 1E-7}, "paused": false, "note": "keep", "last": null}'
)
NEWEST_STATE = {
    "position": Decimal("0.050000000000000000001"),
    "grid": [Decimal("86500.5"), 87000, Decimal("87500.25")],  # canonical: trailing zeros removed
    "risk": {"pnl": Decimal("-12.34"), "max_dd": Decimal("1E-7")},
    "paused": False,
    "note": "keep",
    "last": None,
}
BOT_STATES = [
    json.dumps({"bot_id": "grid-1", "ts": T0 + 1000, "seq": 1, "state": {"v": 1}}),
    f'{{"bot_id": "grid-1", "ts": {T0 + 5000}, "seq": 3, "state": {NEWEST_STATE_TEXT}}}',
    json.dumps({"bot_id": "grid-1", "ts": T0 + 3000, "seq": 2, "state": {"v": 2}}),  # late, older
    json.dumps({"bot_id": "grid-2", "ts": T0 + 2000, "seq": 7, "state": {"v": 7}}),
]


@pytest.fixture
async def loaded(env: TestEnv, daemon: Daemon) -> AsyncIterator[TestEnv]:
    """Everything above ingested through an in-process daemon, which is then stopped."""
    await daemon.start()
    await env.publish("kline", [json.dumps(c) for c in [*CANDLES[5:], *other_series(), *CANDLES[:5]]])
    await env.publish("order", [json.dumps(o) for o in ORDERS])
    await env.publish("fill", [json.dumps(f) for f in FILLS])
    await env.publish("bot_state", BOT_STATES)
    await daemon.drain()
    assert await daemon.stop_all() == [0]
    assert await env.count("dead_letters") == 0
    yield env


def assert_candles(klines: list[Kline], indexes: list[int]) -> None:
    assert [type(k) for k in klines] == [Kline] * len(indexes)
    assert [k.open_time for k in klines] == [utc(CANDLES[i]["open_time"]) for i in indexes]
    for k, i in zip(klines, indexes, strict=True):
        expected = CANDLES[i]
        assert (k.exchange, k.symbol, k.interval) == ("binance", "BTCUSDT", "1m")
        for name in DECIMAL_FIELDS:
            value = getattr(k, name)
            assert isinstance(value, Decimal), name
            assert value == Decimal(expected[name]), name
            assert value.as_tuple() == Decimal(plain(expected[name])).as_tuple(), name
        assert k.close_time == utc(expected["close_time"])
        assert k.trades == expected["trades"]
        assert k.closed is True
        for t in (k.open_time, k.close_time):
            assert t is not None
            assert t.tzinfo is not None
            assert t.utcoffset() == dt.timedelta(0)


def test_vault_is_importable_from_the_package() -> None:
    """DESIGN.md: `from tickvault import Vault`."""
    assert getattr(tickvault, "Vault", None) is Vault
    assert "Vault" in tickvault.__all__


# ---------------------------------------------------------------- klines


async def test_klines_whole_series_exact_and_in_time_order(loaded: TestEnv) -> None:
    async with record_vault(loaded.settings()) as vault:
        klines = await vault.klines("binance", "BTCUSDT", "1m")
    assert_candles(klines, list(range(10)))


WINDOWS: dict[str, tuple[dt.datetime | int | str, dt.datetime | int | str]] = {
    "datetime": (utc(T0 + 2 * MINUTE), utc(T0 + 5 * MINUTE)),
    "epoch_ms": (T0 + 2 * MINUTE, T0 + 5 * MINUTE),
    "iso_offsets": ("2026-01-01T02:02:00+02:00", "2025-12-31T19:05:00-05:00"),
    "iso_utc": ("2026-01-01T00:02:00Z", "2026-01-01T00:05:00.000+00:00"),
    "mixed": (utc(T0 + 2 * MINUTE).astimezone(dt.timezone(dt.timedelta(hours=9))), T0 + 5 * MINUTE),
}


async def test_klines_window_is_start_inclusive_end_exclusive(loaded: TestEnv) -> None:
    """The same [2m, 5m) window given as aware datetimes, epoch ms and ISO strings."""
    async with record_vault(loaded.settings()) as vault:
        for start, end in WINDOWS.values():
            assert_candles(await vault.klines("binance", "BTCUSDT", "1m", start=start, end=end), [2, 3, 4])
            assert_candles(await vault.klines("binance", "BTCUSDT", "1m", start=start), list(range(2, 10)))
            assert_candles(await vault.klines("binance", "BTCUSDT", "1m", end=end), [0, 1, 2, 3, 4])


async def test_klines_between_candles_and_empty_windows(loaded: TestEnv) -> None:
    async with record_vault(loaded.settings()) as vault:
        off_grid = await vault.klines("binance", "BTCUSDT", "1m", T0 + 2 * MINUTE + 1, T0 + 4 * MINUTE + 1)
        after = await vault.klines("binance", "BTCUSDT", "1m", start=T0 + 10 * MINUTE)
    assert_candles(off_grid, [3, 4])
    assert after == []


async def test_klines_refuses_naive_or_bad_bounds(loaded: TestEnv) -> None:
    async with record_vault(loaded.settings()) as vault:
        for bad in ("2026-01-01T00:02:00", dt.datetime(2026, 1, 1, 0, 2), "not a time"):
            with pytest.raises(ConfigError, match="start"):
                await vault.klines("binance", "BTCUSDT", "1m", start=bad)
            with pytest.raises(ConfigError, match="end"):
                await vault.klines("binance", "BTCUSDT", "1m", end=bad)
        assert len(await vault.klines("binance", "BTCUSDT", "1m")) == 10  # still usable afterwards


async def test_klines_other_series_not_mixed_in(loaded: TestEnv) -> None:
    async with record_vault(loaded.settings()) as vault:
        eth = await vault.klines("binance", "ETHUSDT", "1m")
        five = await vault.klines("binance", "BTCUSDT", "5m")
        okx = await vault.klines("okx", "BTCUSDT", "1m", start=T0, end=T0 + 10 * MINUTE)
        none = await vault.klines("kraken", "BTCUSDT", "1m")
    assert [(k.symbol, k.open_time) for k in eth] == [("ETHUSDT", utc(T0 + i * MINUTE)) for i in range(10)]
    assert [(k.interval, k.open_time) for k in five] == [("5m", utc(T0)), ("5m", utc(T0 + 5 * MINUTE))]
    assert [(k.exchange, k.open_time) for k in okx] == [("okx", utc(T0)), ("okx", utc(T0 + MINUTE))]
    assert {str(k.open) for k in [*eth, *five, *okx]} == {"3000.5"}
    assert none == []


async def test_klines_limit_alone_gives_latest_in_ascending_order(loaded: TestEnv) -> None:
    async with record_vault(loaded.settings()) as vault:
        latest = await vault.klines("binance", "BTCUSDT", "1m", limit=3)
        latest_before = await vault.klines("binance", "BTCUSDT", "1m", end=T0 + 5 * MINUTE, limit=2)
        first_from = await vault.klines("binance", "BTCUSDT", "1m", start=T0 + MINUTE, limit=3)
        more_than_all = await vault.klines("binance", "BTCUSDT", "1m", limit=50)
    assert_candles(latest, [7, 8, 9])
    assert_candles(latest_before, [3, 4])
    assert_candles(first_from, [1, 2, 3])
    assert_candles(more_than_all, list(range(10)))


# ---------------------------------------------------------------- orders


def ids(records: list[Order] | list[Fill]) -> list[tuple[str, str]]:
    return [(r.exchange, r.order_id if isinstance(r, Order) else r.fill_id) for r in records]


async def test_orders_filters_and_time_order(loaded: TestEnv) -> None:
    async with record_vault(loaded.settings()) as vault:
        everything = await vault.orders()
        binance = await vault.orders(exchange="binance")
        btc = await vault.orders(exchange="binance", symbol="BTCUSDT")
        grid1 = await vault.orders(bot_id="grid-1")
        grid2 = await vault.orders(bot_id="grid-2")
        open_ = await vault.orders(status="open")
        canceled = await vault.orders(status="canceled")
        window = await vault.orders(start=T0 + 1500, end=T0 + 3000)
        nothing = await vault.orders(exchange="binance", status="new")
    assert ids(everything) == [("binance", "O2"), ("binance", "O3"), ("binance", "O1"), ("okx", "O1")]
    assert ids(binance) == [("binance", "O2"), ("binance", "O3"), ("binance", "O1")]
    assert ids(btc) == [("binance", "O2"), ("binance", "O1")]
    assert ids(grid1) == [("binance", "O3"), ("binance", "O1"), ("okx", "O1")]
    assert ids(grid2) == [("binance", "O2")]
    assert ids(open_) == [("binance", "O2"), ("okx", "O1")]
    assert ids(canceled) == [("binance", "O3")]
    assert ids(window) == [("binance", "O2"), ("binance", "O3")]
    assert nothing == []  # O1 was "new" once, but its current state is "filled"


async def test_orders_return_current_state(loaded: TestEnv) -> None:
    async with record_vault(loaded.settings()) as vault:
        [o1] = await vault.orders(exchange="binance", symbol="BTCUSDT", bot_id="grid-1", status="filled")
    assert isinstance(o1, Order)
    assert (o1.order_id, o1.status, o1.seq) == ("O1", "filled", 3)
    assert str(o1.filled_quantity) == "0.05"  # sent as "0.050": canonical, trailing zeros removed
    assert str(o1.quantity) == "0.05"
    assert str(o1.price) == "87000"
    assert o1.avg_fill_price == Decimal("87000.1250000001")
    assert str(o1.avg_fill_price) == "87000.1250000001"
    assert o1.updated_at == utc(T0 + 3000)
    assert o1.updated_at.utcoffset() == dt.timedelta(0)
    # fields only the first update carried are kept in the current state
    assert o1.client_order_id == "grid-7f3a"
    assert o1.created_at == utc(T0 + 1000)


async def test_order_history_every_update_oldest_first(loaded: TestEnv) -> None:
    async with record_vault(loaded.settings()) as vault:
        history = await vault.order_history("binance", "O1")
        okx = await vault.order_history("okx", "O1")
        unknown = await vault.order_history("binance", "nope")
    assert all(isinstance(o, Order) for o in history)
    assert [(o.status, o.seq, o.updated_at) for o in history] == [
        ("new", 1, utc(T0 + 1000)),
        ("partially_filled", 2, utc(T0 + 2000)),
        ("filled", 3, utc(T0 + 3000)),
    ]
    assert [str(o.filled_quantity) for o in history] == ["0", "0.02", "0.05"]
    assert [o.avg_fill_price for o in history] == [None, Decimal("87000.00"), Decimal("87000.1250000001")]
    assert {o.exchange for o in history} == {"binance"}
    assert [(o.exchange, o.status) for o in okx] == [("okx", "open")]
    assert unknown == []


# ---------------------------------------------------------------- fills


async def test_fills_filters_and_window(loaded: TestEnv) -> None:
    async with record_vault(loaded.settings()) as vault:
        everything = await vault.fills()
        grid1 = await vault.fills(bot_id="grid-1")
        grid2 = await vault.fills(bot_id="grid-2")
        of_o1 = await vault.fills(order_id="O1")
        of_binance_o1 = await vault.fills(exchange="binance", order_id="O1")
        window = await vault.fills(start=utc(T0 + 2000), end="2026-01-01T00:00:03+00:00")
        window_bot = await vault.fills(bot_id="grid-1", start=T0 + 2001)
        nothing = await vault.fills(symbol="ETHUSDT")
    assert ids(everything) == [("binance", "F1"), ("binance", "F3"), ("binance", "F2"), ("okx", "F4")]
    assert ids(grid1) == [("binance", "F1"), ("binance", "F2"), ("okx", "F4")]
    assert ids(grid2) == [("binance", "F3")]
    assert ids(of_o1) == [("binance", "F1"), ("binance", "F2"), ("okx", "F4")]
    assert ids(of_binance_o1) == [("binance", "F1"), ("binance", "F2")]
    assert ids(window) == [("binance", "F1"), ("binance", "F3")]
    assert ids(window_bot) == [("binance", "F2"), ("okx", "F4")]
    assert nothing == []


async def test_fills_values_exact(loaded: TestEnv) -> None:
    async with record_vault(loaded.settings()) as vault:
        f1, f2 = await vault.fills(exchange="binance", order_id="O1")
    assert isinstance(f2, Fill)
    assert (str(f1.quantity), str(f1.price), str(f1.fee)) == ("0.02", "87000", "0.00002")
    assert (str(f2.quantity), str(f2.price), str(f2.fee)) == ("0.03", "87000.2083333333333", "-0.000001")
    assert f2.price == Decimal("87000.2083333333333")
    assert (f2.side, f2.liquidity, f2.fee_asset, f2.bot_id) == ("buy", "maker", "BTC", "grid-1")
    assert f2.ts == utc(T0 + 3000)
    assert f2.ts.utcoffset() == dt.timedelta(0)


# ---------------------------------------------------------------- bot state


def assert_exact(actual: Any, expected: Any) -> None:
    """Equal, with the same types and the same decimal text at every level."""
    assert type(actual) is type(expected), (actual, expected)
    if isinstance(expected, dict):
        assert actual.keys() == expected.keys()
        for key in expected:
            assert_exact(actual[key], expected[key])
    elif isinstance(expected, list):
        assert len(actual) == len(expected)
        for a, e in zip(actual, expected, strict=True):
            assert_exact(a, e)
    else:
        assert actual == expected
        if isinstance(expected, Decimal):
            assert str(actual) == str(expected)


async def test_load_bot_state_newest_snapshot_with_exact_decimals(loaded: TestEnv) -> None:
    async with record_vault(loaded.settings()) as vault:
        state = await vault.load_bot_state("grid-1")
        other = await vault.load_bot_state("grid-2")
        unknown = await vault.load_bot_state("never-sent")
    assert isinstance(state, BotState)
    assert (state.bot_id, state.ts, state.seq) == ("grid-1", utc(T0 + 5000), 3)
    assert state.ts.utcoffset() == dt.timedelta(0)
    assert isinstance(state.state, dict)
    assert_exact(state.state, NEWEST_STATE)
    assert other is not None
    assert (other.ts, other.seq, other.state) == (utc(T0 + 2000), 7, {"v": 7})
    assert unknown is None


# ---------------------------------------------------------------- query CLI


@dataclass
class Result:
    code: int
    out: str
    err: str


def _run(args: list[str], environ: dict[str, str]) -> Result:
    base = {k: v for k, v in os.environ.items() if not k.startswith("TICKVAULT_")}
    proc = subprocess.run(
        [sys.executable, "-m", "tickvault", "query", *args],
        env={**base, **environ},
        capture_output=True,
        timeout=60,
        check=False,
    )
    return Result(proc.returncode, proc.stdout.decode(), proc.stderr.decode())


async def query(env: TestEnv, *args: str) -> Result:
    return await asyncio.to_thread(_run, list(args), env.environ())


def iso_z(ms: int) -> str:
    return utc(ms).isoformat().replace("+00:00", "Z")


KLINE_ARGS = ("klines", "--exchange", "binance", "--symbol", "BTCUSDT", "--interval", "1m")


async def test_query_klines_csv_exact_text(loaded: TestEnv) -> None:
    result = await query(loaded, *KLINE_ARGS, "--format", "csv")
    assert result.code == 0, result.err
    rows = list(csv.reader(io.StringIO(result.out)))
    assert rows[0] == list(Kline.COLUMNS)
    assert len(rows) == 11
    for row, expected in zip(rows[1:], CANDLES, strict=True):
        values = dict(zip(rows[0], row, strict=True))
        assert values["exchange"] == "binance"
        assert values["symbol"] == "BTCUSDT"
        assert values["interval"] == "1m"
        assert values["open_time"] == iso_z(expected["open_time"])
        assert values["close_time"] == iso_z(expected["close_time"])
        for name in DECIMAL_FIELDS:
            assert values[name] == plain(expected[name]), name
        assert values["trades"] == str(expected["trades"])
        assert values["closed"] == "True"
    assert result.err.strip().splitlines()[-1] == "10 klines"


async def test_query_klines_jsonl_round_trips_exact_values(loaded: TestEnv) -> None:
    result = await query(loaded, *KLINE_ARGS, "--format", "jsonl")
    assert result.code == 0, result.err
    lines = result.out.splitlines()
    assert len(lines) == 10
    for line, expected in zip(lines, CANDLES, strict=True):
        obj = json.loads(line, parse_float=Decimal)
        assert set(obj) == set(Kline.COLUMNS)
        assert obj["open_time"] == iso_z(expected["open_time"])
        assert obj["close_time"] == iso_z(expected["close_time"])
        for name in DECIMAL_FIELDS:
            assert isinstance(obj[name], Decimal), name
            assert obj[name] == Decimal(expected[name]), name
            assert str(obj[name]) == plain(expected[name]), name
        assert obj["trades"] == expected["trades"]
        assert obj["closed"] is True


async def test_query_klines_window_and_limit(loaded: TestEnv) -> None:
    window, latest = await asyncio.gather(
        query(
            loaded, *KLINE_ARGS, "--format", "csv",
            "--start", "2026-01-01T02:02:00+02:00", "--end", "2026-01-01T00:05:00Z",
        ),
        query(loaded, *KLINE_ARGS, "--format", "csv", "--limit", "2"),
    )  # fmt: skip
    assert window.code == 0, window.err
    assert latest.code == 0, latest.err
    open_time = Kline.COLUMNS.index("open_time")
    assert [r[open_time] for r in list(csv.reader(io.StringIO(window.out)))[1:]] == [
        iso_z(T0 + i * MINUTE) for i in (2, 3, 4)
    ]
    assert [r[open_time] for r in list(csv.reader(io.StringIO(latest.out)))[1:]] == [
        iso_z(T0 + i * MINUTE) for i in (8, 9)
    ]


async def test_query_klines_epoch_ms_bounds(loaded: TestEnv) -> None:
    """`--start`/`--end` are documented as "ISO-8601 with offset or epoch ms"."""
    result = await query(
        loaded, *KLINE_ARGS, "--format", "csv", "--start", str(T0 + 2 * MINUTE), "--end", str(T0 + 5 * MINUTE)
    )
    assert result.code == 0, result.err
    open_time = Kline.COLUMNS.index("open_time")
    assert [r[open_time] for r in list(csv.reader(io.StringIO(result.out)))[1:]] == [
        iso_z(T0 + i * MINUTE) for i in (2, 3, 4)
    ]


async def test_query_klines_naive_start_is_an_error(loaded: TestEnv) -> None:
    result = await query(loaded, *KLINE_ARGS, "--start", "2026-01-01T00:02:00")
    assert result.code == 2  # a malformed argument is a usage error
    assert result.out == ""
    assert result.err.splitlines() == [
        "tickvault: error: argument --start: '2026-01-01T00:02:00': timestamp has no UTC offset; "
        "naive timestamps are ambiguous (see 'tickvault query --help')"
    ]


async def test_query_bot_state_jsonl_state_is_an_object(loaded: TestEnv) -> None:
    one, every, unknown = await asyncio.gather(
        query(loaded, "bot_state", "--bot-id", "grid-1", "--format", "jsonl"),
        query(loaded, "bot_state", "--format", "jsonl"),
        query(loaded, "bot_state", "--bot-id", "never-sent", "--format", "jsonl"),
    )
    assert one.code == 0, one.err
    [line] = one.out.splitlines()
    obj = json.loads(line, parse_float=Decimal)
    assert (obj["bot_id"], obj["ts"], obj["seq"]) == ("grid-1", iso_z(T0 + 5000), 3)
    assert isinstance(obj["state"], dict)
    assert_exact(obj["state"], NEWEST_STATE)
    assert every.code == 0, every.err
    states = [json.loads(line, parse_float=Decimal) for line in every.out.splitlines()]
    assert [(s["bot_id"], s["seq"]) for s in states] == [("grid-1", 3), ("grid-2", 7)]
    assert states[1]["state"] == {"v": 7}
    assert unknown.code == 1
    assert unknown.out == ""
    assert unknown.err.splitlines() == ["tickvault: error: no bot states stored for bot_id never-sent"]


async def test_query_orders_and_fills_filters(loaded: TestEnv) -> None:
    orders, fills = await asyncio.gather(
        query(loaded, "orders", "--exchange", "binance", "--bot-id", "grid-1", "--format", "jsonl"),
        query(loaded, "fills", "--bot-id", "grid-2", "--format", "jsonl"),
    )
    assert orders.code == 0, orders.err
    assert fills.code == 0, fills.err
    got = [json.loads(line, parse_float=Decimal) for line in orders.out.splitlines()]
    assert [(o["order_id"], o["status"]) for o in got] == [("O3", "canceled"), ("O1", "filled")]
    assert str(got[1]["avg_fill_price"]) == "87000.1250000001"
    assert got[1]["updated_at"] == iso_z(T0 + 3000)
    assert [json.loads(line)["fill_id"] for line in fills.out.splitlines()] == ["F3"]


async def test_query_klines_without_exchange_fails_with_one_line(loaded: TestEnv) -> None:
    result = await query(loaded, "klines", "--symbol", "BTCUSDT", "--format", "csv")
    assert result.code != 0
    assert result.out == ""
    err = [line for line in result.err.splitlines() if line.strip()]
    assert len(err) == 1, err
    assert err[0].startswith("tickvault: error:")
    assert "--exchange" in err[0]


async def test_query_klines_table_is_aligned_with_header(loaded: TestEnv) -> None:
    result = await query(loaded, *KLINE_ARGS, "--limit", "3")
    assert result.code == 0, result.err
    lines = result.out.splitlines()
    assert len(lines) == 4
    header = lines[0]
    assert header.split() == list(Kline.COLUMNS)
    starts = [m.start() for m in re.finditer(r"\S+", header)]
    assert len({len(line) for line in lines}) == 1  # every column padded to one width
    for line, i in zip(lines[1:], (7, 8, 9), strict=True):
        for start in starts[1:]:
            assert line[start - 2 : start] == "  ", (line, start)
            assert line[start] != " ", (line, start)
        cells = [line[a:b].strip() for a, b in zip(starts, [*starts[1:], len(line)], strict=True)]
        values = dict(zip(Kline.COLUMNS, cells, strict=True))
        assert values["open_time"] == iso_z(CANDLES[i]["open_time"])
        for name in DECIMAL_FIELDS:
            assert values[name] == plain(CANDLES[i][name]), name
