"""The cold tier on TimescaleDB: chunks rolled like native partitions (compressed or not),
the compression policy, and the continuous aggregates of klines, which rolling must not
empty. Every test skips where TimescaleDB is not usable (`require_timescale`).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import random
from collections import defaultdict
from collections.abc import Awaitable, Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import TestEnv
from tests.integration.test_archive import (
    SYMBOLS,
    T0_MS,
    cold_rows,
    everything,
    everything_hot,
    kline,
    load,
    roll,
    write,
)
from tests.integration.test_partitions import require_timescale
from tickvault.archive import roller
from tickvault.errors import ConfigError
from tickvault.settings import Settings
from tickvault.store import Store, migrate
from tickvault.store.schema import TIME_TABLES

MINUTE = dt.timedelta(minutes=1)


def ts_settings(env: TestEnv, root: Path, **timescale: Any) -> Settings:
    return env.settings(
        postgres={"timescale": "on", "partition_interval_days": 1},
        archive={"root": str(root), "hot_retention": timescale.pop("hot_retention", "2d")},
        timescale=timescale,
    )


async def chunks(env: TestEnv, table: str) -> list[tuple[dt.datetime, bool]]:
    rows = await env.fetch(
        "SELECT range_start, is_compressed FROM timescaledb_information.chunks "
        "WHERE hypertable_schema = $1 AND hypertable_name = $2 ORDER BY 1",
        env.schema,
        table,
    )
    return [(r[0], r[1]) for r in rows]


async def jobs(env: TestEnv, proc: str) -> dict[str, dict[str, Any]]:
    rows = await env.fetch(
        "SELECT hypertable_name, job_id, config::text AS config, schedule_interval "
        "FROM timescaledb_information.jobs WHERE hypertable_schema = $1 AND proc_name = $2",
        env.schema,
        proc,
    )
    return {r["hypertable_name"]: dict(r) for r in rows}


async def test_chunks_roll_like_partitions_and_late_rows_merge(env: TestEnv, tmp_path: Path) -> None:
    await require_timescale(env.dsn)
    settings = ts_settings(env, tmp_path / "cold", compress_after="3650d")  # enabled, never due
    await migrate.upgrade(settings.postgres, settings=settings)
    await pause_jobs(env)
    sent = await load(settings)
    before = await everything_hot(env)
    dry = await roll(settings, dry_run=True)
    assert {o.status for o in dry} == {"would roll"} and len(dry) == 9
    assert all(o.partition.schema == "_timescaledb_internal" for o in dry)
    assert await everything_hot(env) == before

    outcomes = await roll(settings)
    assert {o.status for o in outcomes} == {"rolled"}
    assert {(o.partition.table.name, o.partition.start.day) for o in outcomes} == {
        (t, d) for t in ("klines", "fills", "order_events") for d in (1, 2, 3)
    }
    assert await everything(env, settings) == before  # no row lost, none doubled
    assert len(cold_rows(settings, "klines")) == 3 * 24 * len(SYMBOLS) < len(sent["kline"])
    for name in ("klines", "fills", "order_events"):
        assert [start.day for start, _ in await chunks(env, name)] == [4, 5]
    assert len(await env.fetch("SELECT * FROM {s}.archive_log")) == 9

    # late rows for a rolled day create a new chunk; this one is compressed before the roll,
    # so the cold rows are merged back into a compressed chunk
    day1 = T0_MS + 3_600_000
    async with Store(settings.postgres, writer=True) as store:
        await write(store, "kline", [kline("BTC-USDT", day1, "199", closed=False)], version_ms=2)
        await write(store, "kline", [kline("XRP-USDT", day1, "1.25")], version_ms=2)
    await env.fetch(
        "SELECT compress_chunk(c) FROM show_chunks($1::regclass, older_than => $2::timestamptz) c",
        f"{env.schema}.klines",
        dt.datetime(2026, 1, 2, tzinfo=dt.UTC),
    )
    assert (await chunks(env, "klines"))[0] == (dt.datetime(2026, 1, 1, tzinfo=dt.UTC), True)
    again = await roll(settings, tables=["klines"])
    assert [(o.status, o.partition.start.day, o.merged_rows) for o in again] == [
        ("rolled", 1, 24 * len(SYMBOLS))
    ]
    cold = cold_rows(settings, "klines").to_pylist()
    at = dt.datetime(2026, 1, 1, 1, tzinfo=dt.UTC)
    assert {r["symbol"]: r["close"] for r in cold if r["open_time"] == at} == {
        "BTC-USDT": Decimal("151.1"), "ETH-USDT": Decimal("151.1"), "SOL-USDT": Decimal("151.1"),
        "XRP-USDT": Decimal("1.25"),
    }  # fmt: skip
    assert len({(r["symbol"], r["open_time"]) for r in cold}) == len(cold) == 3 * 24 * len(SYMBOLS) + 1
    assert [start.day for start, _ in await chunks(env, "klines")] == [4, 5]


async def test_compression_policy_compresses_old_chunks_that_then_roll(env: TestEnv, tmp_path: Path) -> None:
    await require_timescale(env.dsn)
    settings = ts_settings(env, tmp_path / "cold", compress_after="2d")
    await migrate.upgrade(settings.postgres, settings=settings)
    await pause_jobs(env)
    policies = await jobs(env, "policy_compression")
    assert sorted(policies) == sorted(t.name for t in TIME_TABLES)  # trades, balances, signals too
    assert all('"compress_after": "2 days"' in p["config"] for p in policies.values())

    await load(settings)
    before = await everything_hot(env)
    for p in policies.values():  # the policy's own work, run now rather than on its schedule
        await env.fetch(f"CALL run_job({int(p['job_id'])})")
    for name in ("klines", "fills", "order_events"):
        states = await chunks(env, name)
        assert len(states) == 5 and all(compressed for _, compressed in states), name
    assert await everything_hot(env) == before  # read back through decompression: identical

    outcomes = await roll(settings)
    assert {o.status for o in outcomes} == {"rolled"} and len(outcomes) == 9
    assert await everything(env, settings) == before

    changed = ts_settings(env, tmp_path / "cold", compress_after="3d")
    await migrate.apply_timescale(changed)
    assert all(
        '"compress_after": "3 days"' in p["config"] for p in (await jobs(env, "policy_compression")).values()
    )
    await migrate.apply_timescale(ts_settings(env, tmp_path / "cold", compress_after="off"))
    assert await jobs(env, "policy_compression") == {}


async def pause_jobs(env: TestEnv) -> None:
    """Unschedule the test schema's policies, as the test's admin (see pause_schema_jobs)."""
    await pause_schema_jobs(env.fetch, env.schema)


async def pause_schema_jobs(fetch: Callable[..., Awaitable[Any]], schema: str) -> None:
    """Unschedule `schema`'s policies (tests run their work with run_job instead) and wait for
    a run the scheduler started at their creation to end; as the role `fetch` (a connection's
    or TestEnv's) signs in as."""
    await fetch(
        "SELECT alter_job(job_id, scheduled => false) FROM timescaledb_information.jobs "
        "WHERE hypertable_schema = $1",
        schema,
    )
    for _ in range(300):
        running = await fetch(
            "SELECT 1 FROM timescaledb_information.job_stats WHERE hypertable_schema = $1 "
            "AND job_status = 'Running'",
            schema,
        )
        if not running:
            return
        await asyncio.sleep(0.1)
    raise AssertionError("a policy job of the schema is still running")


async def refresh(env: TestEnv, view: str) -> None:
    await env.fetch(f"CALL refresh_continuous_aggregate('{env.schema}.{view}', NULL, NULL)")


def candles(start: dt.datetime, minutes: int, symbols: tuple[str, ...]) -> list[dict[str, Any]]:
    """1m candles with random prices, a gap (symbol 0, 05:10-05:14), an open candle (symbol 1,
    07:30) and a missing quote_volume (symbol 0, 09:00)."""
    rng = random.Random(7)
    out = []
    for s_index, symbol in enumerate(symbols):
        for m in range(minutes):
            at = start + m * MINUTE
            if s_index == 0 and at.hour == 5 and 10 <= at.minute < 15 and at.day == start.day:
                continue
            low = Decimal(rng.randint(1000, 2000)) / 10
            o, c = low + Decimal(rng.randint(0, 50)) / 10, low + Decimal(rng.randint(0, 50)) / 10
            out.append({
                "exchange": "okx", "symbol": symbol, "interval": "1m", "open_time": at.isoformat(),
                "open": str(o), "high": str(max(o, c) + Decimal("0.5")), "low": str(low), "close": str(c),
                "volume": f"{rng.randint(1, 10**6)}.{rng.randint(0, 999):03d}",
                "quote_volume": None if (s_index == 0 and at.hour == 9 and at.minute == 0) else "12.5",
                "trades": rng.randint(0, 90),
                "closed": not (s_index == 1 and at.hour == 7 and at.minute == 30 and at.day == start.day),
            })  # fmt: skip
    return [{k: v for k, v in c.items() if v is not None} for c in out]


def expected(
    sent: list[dict[str, Any]], width: dt.timedelta
) -> dict[tuple[str, dt.datetime], tuple[Any, ...]]:
    """The aggregate computed in Python: buckets aligned to the epoch (1d, 1h)."""
    groups: dict[tuple[str, dt.datetime], list[dict[str, Any]]] = defaultdict(list)
    epoch = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
    for c in sent:
        at = dt.datetime.fromisoformat(c["open_time"])
        groups[(c["symbol"], epoch + (at - epoch) // width * width)].append(c | {"at": at})
    out = {}
    for key, rows in groups.items():
        rows.sort(key=lambda r: r["at"])
        qv = [r.get("quote_volume") for r in rows]
        out[key] = (
            Decimal(rows[0]["open"]), max(Decimal(r["high"]) for r in rows),
            min(Decimal(r["low"]) for r in rows), Decimal(rows[-1]["close"]),
            sum(Decimal(r["volume"]) for r in rows),
            None if None in qv else sum(Decimal(q) for q in qv if q is not None),
            sum(r["trades"] for r in rows), len(rows), all(r["closed"] for r in rows),
            len(rows) == width // MINUTE and all(r["closed"] for r in rows),
        )  # fmt: skip
    return out


async def aggregate(env: TestEnv, view: str) -> dict[tuple[str, dt.datetime], tuple[Any, ...]]:
    rows = await env.fetch(
        "SELECT symbol, open_time, open, high, low, close, volume, quote_volume, trades, candles, "  # noqa: S608
        f"closed, complete FROM {{s}}.{view}"
    )
    return {
        (r[0], r[1]): tuple(v.normalize() if isinstance(v, Decimal) else v for v in tuple(r)[2:])
        for r in rows
    }


def normal(
    values: dict[tuple[str, dt.datetime], tuple[Any, ...]],
) -> dict[tuple[str, dt.datetime], tuple[Any, ...]]:
    return {k: tuple(x.normalize() if isinstance(x, Decimal) else x for x in v) for k, v in values.items()}


async def test_kline_aggregates_equal_a_python_computation(env: TestEnv, tmp_path: Path) -> None:
    await require_timescale(env.dsn)
    settings = ts_settings(env, tmp_path / "cold", kline_aggregates=["1h", "1d"], hot_retention="7d")
    await migrate.upgrade(settings.postgres, settings=settings)
    await pause_jobs(env)
    policies = await jobs(env, "policy_refresh_continuous_aggregate")
    assert sorted(policies) == ["klines_1d", "klines_1h"]
    assert '"start_offset": "7 days"' in policies["klines_1d"]["config"]
    assert policies["klines_1h"]["schedule_interval"] == dt.timedelta(hours=1)

    start = dt.datetime(2026, 3, 2, tzinfo=dt.UTC)
    sent = candles(start, 27 * 60, ("BTC-USDT", "ETH-USDT"))  # a day and 3 hours: the last day is partial
    async with Store(settings.postgres, writer=True) as store:
        await write(store, "kline", sent)
        await write(
            store, "kline", [kline("BTC-USDT", int(start.timestamp() * 1000), "1")]
        )  # 1h: not a source
    for view in ("klines_1h", "klines_1d"):
        await refresh(env, view)
    hourly, daily = await aggregate(env, "klines_1h"), await aggregate(env, "klines_1d")
    assert hourly == normal(expected(sent, dt.timedelta(hours=1)))
    assert daily == normal(expected(sent, dt.timedelta(days=1)))
    incomplete = {k for k, v in hourly.items() if not v[-1]}
    assert incomplete == {
        ("BTC-USDT", start + dt.timedelta(hours=5)),  # 5 candles missing
        ("ETH-USDT", start + dt.timedelta(hours=7)),  # one still open
    }
    assert hourly[("BTC-USDT", start + dt.timedelta(hours=9))][5] is None  # a candle without quote volume
    assert {k for k, v in daily.items() if v[-1]} == set()  # day 1: gap and open candle; day 2: 3 hours


async def test_rolling_does_not_empty_the_aggregates(env: TestEnv, tmp_path: Path) -> None:
    await require_timescale(env.dsn)
    settings = ts_settings(env, tmp_path / "cold", kline_aggregates=["1h", "1d"], hot_retention="3d")
    await migrate.upgrade(settings.postgres, settings=settings)
    await pause_jobs(env)
    today = dt.datetime.now(dt.UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    sent = candles(today - dt.timedelta(days=6), 5 * 1440, ("BTC-USDT",))
    async with Store(settings.postgres, writer=True) as store:
        await write(store, "kline", sent)
    for view in ("klines_1h", "klines_1d"):
        await refresh(env, view)
    before = {v: await aggregate(env, v) for v in ("klines_1h", "klines_1d")}
    assert len(before["klines_1d"]) == 5 and before["klines_1d"] == normal(
        expected(sent, dt.timedelta(days=1))
    )

    outcomes = await roller.roll(settings, tables=["klines"])  # by the clock: 3 of 5 days are old
    assert outcomes is not None and [o.status for o in outcomes] == ["rolled"] * 3
    assert len(await chunks(env, "klines")) == 2
    policies = await jobs(env, "policy_refresh_continuous_aggregate")
    for p in policies.values():  # what the refresh policies do next, run now
        await env.fetch(f"CALL run_job({int(p['job_id'])})")
    assert {v: await aggregate(env, v) for v in before} == before

    # rolling at 1 day would drop chunks the refresh window still covers: they stay hot
    sooner = await roller.roll(settings, tables=["klines"], older_than_s=86_400)
    assert sooner == [] and len(await chunks(env, "klines")) == 2
    for p in policies.values():
        await env.fetch(f"CALL run_job({int(p['job_id'])})")
    assert {v: await aggregate(env, v) for v in before} == before
    rolled_until = today - dt.timedelta(days=3)
    assert len(cold_rows(settings, "klines")) == sum(
        dt.datetime.fromisoformat(c["open_time"]) < rolled_until for c in sent
    )


async def test_aggregate_window_shorter_than_two_buckets_is_refused(env: TestEnv, tmp_path: Path) -> None:
    await require_timescale(env.dsn)
    settings = ts_settings(env, tmp_path / "cold", kline_aggregates=["1d", "1w"], hot_retention="7d")
    with pytest.raises(ConfigError, match=r"1w: .* needs archive.hot_retention >= 21d"):
        await migrate.upgrade(settings.postgres, settings=settings)
    assert await jobs(env, "policy_refresh_continuous_aggregate") == {}  # nothing half-applied
