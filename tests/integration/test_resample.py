"""Klines at an interval that is not stored are computed from a stored lower one, over hot
and cold: first open, max high, min low, last close, sums; incomplete buckets are marked."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa

from tests.helpers import TestEnv
from tests.integration.test_archive import T0_MS, archive_settings, kline, roll, write
from tickvault.store import Store, migrate
from tickvault.vault import Vault

MINUTE, HOUR, DAY = 60_000, 3_600_000, 86_400_000
UTC0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
SYMBOLS = ("BTC-USDT", "ETH-USDT")
FIRST = T0_MS + DAY  # days 2 and 3 end up cold, day 4 stays hot
GONE = FIRST + 5 * HOUR + 17 * MINUTE  # BTC's 05:17 of day 2 never arrived
OPEN = FIRST + 2 * DAY + 3 * HOUR + 59 * MINUTE  # BTC's 03:59 of day 4 is still open


def at(ms: int) -> dt.datetime:
    return UTC0 + dt.timedelta(milliseconds=ms - T0_MS)


def minute(symbol: str, ms: int) -> dict[str, Any]:
    m = (ms - T0_MS) // MINUTE
    k = kline(symbol, ms, f"{100 + m % 50}.{m % 7}", closed=not (symbol == "BTC-USDT" and ms == OPEN))
    k |= {"interval": "1m", "open": f"{100 + m % 13}.5", "high": f"{190 + m % 9}", "low": f"{1 + m % 5}.25"}
    k |= {"volume": f"{m % 11}.001", "quote_volume": f"{m}.5", "trades": m % 17}
    if symbol == "ETH-USDT" and m % 600 == 0:
        del k["quote_volume"]  # a source candle without quote volume: that bucket's sum is unknown
    return k


def sent() -> list[dict[str, Any]]:
    times = [FIRST + i * MINUTE for i in range(3 * 1440)]
    return [minute(s, t) for s in SYMBOLS for t in times if (s, t) != ("BTC-USDT", GONE)]


def expected_hour(candles: list[dict[str, Any]], symbol: str, start: int) -> dict[str, Any]:
    inside = sorted((k for k in candles if k["symbol"] == symbol and start <= k["open_time"] < start + HOUR),
                    key=lambda k: k["open_time"])  # fmt: skip
    qv = [k.get("quote_volume") for k in inside]
    return {
        "symbol": symbol, "interval": "1h", "open_time": at(start), "close_time": at(start + HOUR - 1),
        "open": Decimal(inside[0]["open"]), "high": max(Decimal(k["high"]) for k in inside),
        "low": min(Decimal(k["low"]) for k in inside), "close": Decimal(inside[-1]["close"]),
        "volume": sum(Decimal(k["volume"]) for k in inside),
        "quote_volume": None if None in qv else sum(Decimal(q) for q in qv),
        "trades": sum(k["trades"] for k in inside),
        "closed": len(inside) == 60 and all(k["closed"] for k in inside),
    }  # fmt: skip


def values(rows: pa.Table) -> list[dict[str, Any]]:
    out = []
    for r in rows.to_pylist():
        r.pop("exchange")
        out.append({k: v.normalize() if isinstance(v, Decimal) else v for k, v in r.items()})
    return out


def normal(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v.normalize() if isinstance(v, Decimal) else v for k, v in r.items()} for r in rows]


async def test_hours_from_minutes_across_tiers(env: TestEnv, tmp_path: Path) -> None:
    settings = archive_settings(env, tmp_path / "cold")
    await migrate.upgrade(settings.postgres)
    candles = sent()
    async with Store(settings.postgres, writer=True) as store:
        await write(store, "kline", candles)
        await write(store, "kline", [kline("BTC-USDT", FIRST, "150") | {"interval": "4h"}])  # stored as is
    assert {o.status for o in await roll(settings, tables=["klines"])} == {"rolled"}
    async with Vault.connect(settings) as vault:
        hours = await vault.klines("okx", interval="1h", symbols=list(SYMBOLS))
        latest = await vault.klines("okx", "BTC-USDT", "1h", limit=3)
        window = await vault.klines("okx", "ETH-USDT", "1h", start=FIRST + 30 * MINUTE, end=FIRST + 3 * HOUR)
        stored_4h = await vault.klines("okx", "BTC-USDT", "4h")
        eth_4h = await vault.klines("okx", "ETH-USDT", "4h", limit=2, columns=["open_time", "closed"])
        series = await vault.kline_series()
    starts = [FIRST + h * HOUR for h in range(3 * 24)]
    want = [expected_hour(candles, s, h) for h in starts for s in SYMBOLS]
    assert values(hours) == normal(want)  # both tiers, time order, exact
    flags = {(r["symbol"], r["open_time"]): r["closed"] for r in hours.to_pylist()}
    assert flags[("BTC-USDT", at(FIRST + 5 * HOUR))] is False  # a missing minute
    assert flags[("BTC-USDT", at(OPEN - 59 * MINUTE))] is False  # an open minute
    assert sum(not v for v in flags.values()) == 2
    assert values(latest) == normal([expected_hour(candles, "BTC-USDT", h) for h in starts[-3:]])
    assert values(window) == normal([expected_hour(candles, "ETH-USDT", h) for h in starts[1:3]])
    assert stored_4h.num_rows == 1 and stored_4h.column("close").to_pylist() == [Decimal("150")]
    assert eth_4h.to_pylist() == [
        {"open_time": at(FIRST + 3 * DAY - 8 * HOUR), "closed": True},
        {"open_time": at(FIRST + 3 * DAY - 4 * HOUR), "closed": True},
    ]
    assert ("okx", "BTC-USDT", "1m") in series  # rolled entirely for days 2-3, hot for day 4


async def test_continuous_aggregates_answer_where_they_can(env: TestEnv, tmp_path: Path) -> None:
    """On TimescaleDB with a klines_1h view, a 1h read of a hot 1m series comes from the view:
    shown by deleting raw minutes of a materialized hour — the view still has the whole hour,
    a computation from the raw rows would not."""
    from tests.integration.test_archive_timescale import pause_jobs
    from tests.integration.test_partitions import require_timescale

    await require_timescale(env.dsn)
    settings = env.settings(
        postgres={"timescale": "on", "partition_interval_days": 1},
        archive={"root": str(tmp_path / "cold"), "hot_retention": "7d"},
        timescale={"kline_aggregates": ["1h"]},
    )
    await migrate.upgrade(settings.postgres, settings=settings)
    await pause_jobs(env)
    now = dt.datetime.now(dt.UTC).replace(minute=0, second=0, microsecond=0) - dt.timedelta(hours=4)
    first = T0_MS + int((now - UTC0).total_seconds() * 1000)
    candles = [minute("BTC-USDT", first + i * MINUTE) for i in range(3 * 60)]
    async with Store(settings.postgres, writer=True) as store:
        await write(store, "kline", candles)
    await env.fetch(
        "CALL refresh_continuous_aggregate($1::regclass, $2::timestamptz, $3::timestamptz)",
        f"{env.schema}.klines_1h", now, now + dt.timedelta(hours=3),
    )  # fmt: skip
    await env.fetch(
        "DELETE FROM {s}.klines WHERE open_time >= $1 AND open_time < $2",
        now + dt.timedelta(minutes=10), now + dt.timedelta(minutes=20),
    )  # fmt: skip
    async with Vault.connect(settings) as vault:
        hours = await vault.klines("okx", "BTC-USDT", "1h", start=now, end=now + dt.timedelta(hours=3))
    want = [expected_hour(candles, "BTC-USDT", first + h * HOUR) for h in range(3)]
    assert values(hours) == normal(want)  # hour 0 as materialized, with all 60 minutes
    assert hours.column("closed").to_pylist() == [True, True, True]
