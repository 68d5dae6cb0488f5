"""The documented time range and the unit rule, end to end through the daemon.

Fills and klines at both ends of the range (1970-01-01T00:00:00Z and 9999-12-31, in epoch
milliseconds and ISO-8601) are stored and read back equal, on native partitions and on
TimescaleDB (skipped where the extension is not usable). One past each end, and integers
in another unit, become `invalid` dead letters naming the field and the range, never
`db_rejected`.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any, Final

import asyncpg

from tests.helpers import Daemon, TestEnv, record_vault
from tests.integration.test_bad_input import fill, kline
from tests.integration.test_partitions import require_timescale
from tickvault.settings import Settings
from tickvault.store import migrate
from tickvault.store.partitions import NativePartitioner

FIRST_MS: Final = 0
LAST_MS: Final = 253_402_300_799_999
FIRST: Final = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
LAST: Final = dt.datetime(9999, 12, 31, 23, 59, 59, 999000, tzinfo=dt.UTC)
LAST_ISO: Final = "9999-12-31T23:59:59.999999Z"
LAST_US: Final = dt.datetime.max.replace(tzinfo=dt.UTC)
OUTSIDE: Final[tuple[int | str, ...]] = (
    -1, LAST_MS + 1, "1969-12-31T23:59:59.999999Z", "9999-12-31T23:59:59.999999-00:01",
)  # fmt: skip
MS_RANGE: Final = "0..253402300799999 (1970-01-01T00:00:00Z..9999-12-31T23:59:59.999Z)"
ISO_RANGE: Final = "1970-01-01T00:00:00Z..9999-12-31T23:59:59.999999Z"


def js(obj: dict[str, Any]) -> str:
    return json.dumps(obj)


def edge_kline(open_time: int | str) -> str:
    return js(kline(0, open_time=open_time, close_time=None, symbol=f"E{open_time}"))


async def letters(env: TestEnv) -> dict[tuple[str, str], tuple[str, str]]:
    """Dead letters by (kind, raw value of the time field): (category, reason)."""
    rows = await env.fetch("SELECT kind, category, reason, payload FROM {s}.dead_letters")
    out = {}
    for row in rows:
        message = json.loads(row["payload"])
        value = message["ts"] if row["kind"] == "fill" else message["open_time"]
        out[(row["kind"], str(value))] = (row["category"], row["reason"])
    return out


async def store_the_edges(env: TestEnv, daemon: Daemon, settings: Settings) -> None:
    """Publish both ends of the range and one past each; check what is stored and refused."""
    await daemon.start(settings)
    await env.publish("fill", [js(fill(i, ts=ts)) for i, ts in enumerate((FIRST_MS, LAST_MS, LAST_ISO))])
    await env.publish("fill", [js(fill(10 + i, ts=ts)) for i, ts in enumerate(OUTSIDE)])
    await env.publish("kline", [edge_kline(t) for t in (FIRST_MS, LAST_MS, LAST_ISO, -1, LAST_MS + 1)])
    await daemon.drain()

    async with record_vault(settings) as vault:
        fills = await vault.fills(start=0)
        klines = [
            k for t in (FIRST_MS, LAST_MS, LAST_ISO) for k in await vault.klines("binance", f"E{t}", "1m")
        ]
    assert [(f.fill_id, f.ts) for f in fills] == [("f-0", FIRST), ("f-1", LAST), ("f-2", LAST_US)]
    assert [k.open_time for k in klines] == [FIRST, LAST, LAST_US]

    to_ms = "timestamps are epoch milliseconds"
    assert await letters(env) == {
        ("fill", "-1"): ("invalid", f"invalid fill: ts: epoch milliseconds outside {MS_RANGE}"),
        ("fill", str(LAST_MS + 1)): (
            "invalid",
            f"invalid fill: ts: looks like epoch microseconds; {to_ms}, {MS_RANGE}",
        ),
        ("fill", OUTSIDE[2]): ("invalid", f"invalid fill: ts: outside {ISO_RANGE}"),
        ("fill", OUTSIDE[3]): ("invalid", f"invalid fill: ts: outside {ISO_RANGE}"),
        ("kline", "-1"): ("invalid", f"invalid kline: open_time: epoch milliseconds outside {MS_RANGE}"),
        ("kline", str(LAST_MS + 1)): (
            "invalid",
            f"invalid kline: open_time: looks like epoch microseconds; {to_ms}, {MS_RANGE}",
        ),
    }


async def test_both_ends_of_the_range_are_stored_on_native_partitions(env: TestEnv, daemon: Daemon) -> None:
    settings = env.settings(postgres={"timescale": "off"}, source={"min_epoch_ms": 0})
    await store_the_edges(env, daemon, settings)
    rows = await env.fetch("SELECT tableoid::regclass::text AS part FROM {s}.fills ORDER BY ts")
    # the first partition starts at the epoch; the last one (7-day buckets from 1970) starts
    # 9999-12-30 and is unbounded above: its end would be after the end of Python's datetime
    assert [r["part"] for r in rows] == [
        f"{env.schema}.fills_p19700101",
        f"{env.schema}.fills_p99991230",
        f"{env.schema}.fills_p99991230",
    ]
    bounds = await env.fetch(
        "SELECT pg_get_expr(c.relpartbound, c.oid) AS bound FROM pg_class c JOIN pg_namespace n "
        "ON n.oid = c.relnamespace WHERE n.nspname = $1 AND c.relname = 'fills_p99991230'",
        env.schema,
    )
    assert [r["bound"] for r in bounds] == ["FOR VALUES FROM ('9999-12-30 00:00:00+00') TO (MAXVALUE)"]


async def test_both_ends_of_the_range_are_stored_on_timescaledb(env: TestEnv, daemon: Daemon) -> None:
    await require_timescale(env.dsn)
    settings = env.settings(postgres={"timescale": "on"}, source={"min_epoch_ms": 0})
    await store_the_edges(env, daemon, settings)


async def test_integers_in_another_unit_are_refused_naming_the_unit(env: TestEnv, daemon: Daemon) -> None:
    await daemon.start()
    seconds, ms, us, ns = 1_735_689_600, 1_735_689_600_000, 1_735_689_600_000_000, 1_735_689_600_000_000_000
    await env.publish("fill", [js(fill(i, ts=ts)) for i, ts in enumerate((seconds, ms, us, ns))])
    # cryptofeed's float epoch seconds (a JSON number with a fraction)
    await env.publish("fill", [js(fill(4, ts=1735689600.123))])
    await env.publish("kline", [edge_kline(seconds), edge_kline("1970-01-02T00:00:00Z")])
    await daemon.drain()

    rows = await env.fetch("SELECT fill_id, ts FROM {s}.fills")
    assert [(r["fill_id"], r["ts"]) for r in rows] == [("f-1", dt.datetime(2025, 1, 1, tzinfo=dt.UTC))]
    # ISO-8601 strings are unambiguous: the floor does not apply to them
    rows = await env.fetch("SELECT open_time FROM {s}.klines")
    assert [r["open_time"] for r in rows] == [dt.datetime(1970, 1, 2, tzinfo=dt.UTC)]
    to_ms = "timestamps are epoch milliseconds"
    as_seconds = (
        f"looks like epoch seconds; {to_ms}, from 100000000000 (1973-03-03T09:46:40Z) "
        "unless source.min_epoch_ms is lowered"
    )
    assert await letters(env) == {
        ("fill", str(seconds)): ("invalid", f"invalid fill: ts: {as_seconds}"),
        ("kline", str(seconds)): ("invalid", f"invalid kline: open_time: {as_seconds}"),
        ("fill", str(us)): (
            "invalid",
            f"invalid fill: ts: looks like epoch microseconds; {to_ms}, {MS_RANGE}",
        ),
        ("fill", str(ns)): (
            "invalid",
            f"invalid fill: ts: looks like epoch nanoseconds; {to_ms}, {MS_RANGE}",
        ),
        ("fill", "1735689600.123"): (
            "invalid",
            "invalid fill: ts: a number with a fraction or exponent looks like epoch seconds; "
            "timestamps are integer epoch milliseconds or ISO-8601 strings",
        ),
    }


async def test_a_lowered_floor_stores_epoch_seconds_as_the_milliseconds_they_are(
    env: TestEnv, daemon: Daemon
) -> None:
    # the setting is the user's word that small integers are old dates, not seconds
    await daemon.start(env.settings(source={"min_epoch_ms": 0}))
    await env.publish("fill", [js(fill(0, ts=1_735_689_600))])
    await daemon.drain()
    rows = await env.fetch("SELECT ts FROM {s}.fills")
    assert [r["ts"] for r in rows] == [dt.datetime(1970, 1, 21, 2, 8, 9, 600000, tzinfo=dt.UTC)]
    assert await env.count("dead_letters") == 0


async def test_partitions_made_ahead_stop_at_the_last_one(env: TestEnv) -> None:
    settings = env.settings(postgres={"timescale": "off"})
    await migrate.upgrade(settings.postgres)
    conn = await asyncpg.connect(env.dsn)
    try:
        # two intervals ahead of 9999-12-25 would start in the year 10000
        await NativePartitioner(env.schema, 7, 2).ensure_ahead(conn, dt.datetime(9999, 12, 25, tzinfo=dt.UTC))
    finally:
        await conn.close()
    rows = await env.fetch(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
        "WHERE i.inhparent = to_regclass($1) ORDER BY 1",
        f"{env.schema}.fills",
    )
    assert [r[0] for r in rows] == ["fills_default", "fills_p99991223", "fills_p99991230"]
