"""One read over hot and cold: `Vault` reads return Arrow tables spanning PostgreSQL and the
cold tier, one row per key under the roll's rules, in time order, exact.

The workload of test_archive (5 days of 1h klines for 3 symbols, fills, order events) is
rolled all but the last two days, so every read below crosses the tiers.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from tests.helpers import TestEnv
from tests.integration.test_archive import (
    DAYS,
    SYMBOLS,
    T0_MS,
    archive_settings,
    fill,
    kline,
    load,
    roll,
    workload,
    write,
)
from tickvault.archive import table
from tickvault.errors import ColdFileError, ConfigError
from tickvault.settings import Settings
from tickvault.store import Store
from tickvault.vault import Vault

HOUR = 3_600_000
UTC0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
DEC = pa.decimal128(38, 18)
TIME = pa.timestamp("us", tz="UTC")


def at(ms: int) -> dt.datetime:
    return UTC0 + dt.timedelta(milliseconds=ms - T0_MS)


async def rolled(env: TestEnv, root: Path) -> tuple[Settings, dict[str, list[dict[str, Any]]]]:
    settings = archive_settings(env, root)
    sent = await load(settings)
    outcomes = await roll(settings)
    assert {o.status for o in outcomes} == {"rolled"} and len(outcomes) == 9
    return settings, sent


def closes(rows: pa.Table) -> list[tuple[str, dt.datetime, Decimal]]:
    return [(r["symbol"], r["open_time"], r["close"].normalize()) for r in rows.to_pylist()]


async def test_klines_span_both_tiers_exactly_in_time_order(env: TestEnv, tmp_path: Path) -> None:
    settings, sent = await rolled(env, tmp_path / "cold")
    async with Vault.connect(settings) as vault:
        btc = await vault.klines("okx", "BTC-USDT", "1h")
        everything = await vault.klines("okx", interval="1h", symbols=list(SYMBOLS))
    assert btc.schema == pa.schema(
        [("exchange", pa.string()), ("symbol", pa.string()), ("interval", pa.string()), ("open_time", TIME),
         ("close_time", TIME), ("open", DEC), ("high", DEC), ("low", DEC), ("close", DEC), ("volume", DEC),
         ("quote_volume", DEC), ("trades", pa.int64()), ("closed", pa.bool_())]
    )  # fmt: skip
    want = sorted(
        ((k["symbol"], at(k["open_time"]), Decimal(k["close"]).normalize()) for k in sent["kline"]),
        key=lambda r: (r[1], r[0]),
    )
    assert closes(everything) == want  # 3 cold days + 2 hot days, each candle once, time order
    assert closes(btc) == [r for r in want if r[0] == "BTC-USDT"]
    first = btc.slice(0, 1).to_pylist()[0]
    assert first["high"] == Decimal("200.000000000000000001") and first["volume"] == Decimal(
        "12345678901234567890"
    )
    assert first["open_time"].utcoffset() == dt.timedelta(0)


async def test_columns_symbols_floats_and_limits_across_tiers(env: TestEnv, tmp_path: Path) -> None:
    settings, _ = await rolled(env, tmp_path / "cold")
    async with Vault.connect(settings) as vault:
        two = await vault.klines(
            "okx", interval="1h", symbols=["SOL-USDT", "BTC-USDT"], columns=["open_time", "close"]
        )
        floats = await vault.klines("okx", "ETH-USDT", "1h", columns="symbol,close", floats=True)
        latest = await vault.klines("okx", "ETH-USDT", "1h", limit=3)
        crossing = await vault.klines("okx", "ETH-USDT", "1h", end=T0_MS + 3 * 24 * HOUR + 2 * HOUR, limit=4)
        first = await vault.klines("okx", "ETH-USDT", "1h", start=T0_MS + 5 * HOUR, limit=2)
        fills = await vault.fills(exchange="okx", start=T0_MS + 2 * 24 * HOUR, end=T0_MS + 4 * 24 * HOUR)
    assert two.column_names == ["open_time", "close"] and two.num_rows == 2 * DAYS * 24
    assert floats.schema == pa.schema([("symbol", pa.string()), ("close", pa.float64())])
    last = T0_MS + (DAYS * 24 - 1) * HOUR
    assert latest.column("open_time").to_pylist() == [at(last - 2 * HOUR), at(last - HOUR), at(last)]
    # the 4 candles before day 4's 02:00: two cold (day 3's last hours), two hot
    boundary = T0_MS + 3 * 24 * HOUR
    assert crossing.column("open_time").to_pylist() == [at(boundary + h * HOUR) for h in (-2, -1, 0, 1)]
    assert first.column("open_time").to_pylist() == [at(T0_MS + 5 * HOUR), at(T0_MS + 6 * HOUR)]
    sent_fills = [f for f in workload()["fill"] if 2 * 24 * HOUR <= f["ts"] - T0_MS < 4 * 24 * HOUR]
    assert fills.column("fill_id").to_pylist() == [f["fill_id"] for f in sent_fills]


async def test_a_key_in_both_tiers_comes_back_once_under_the_roll_rules(env: TestEnv, tmp_path: Path) -> None:
    settings, _ = await rolled(env, tmp_path / "cold")
    day1 = T0_MS + HOUR
    async with Store(settings.postgres, writer=True) as store:
        # late rows for the rolled day 1, hot until the next roll: an open candle for a closed
        # cold one (must lose), a replacement closed candle (must win), a new candle, a fill
        # published again with other values (the first-published, cold, wins)
        await write(store, "kline", [kline("BTC-USDT", day1, "199", closed=False)], version_ms=2)
        await write(store, "kline", [kline("ETH-USDT", day1, "151.5")], version_ms=2)
        await write(store, "kline", [kline("XRP-USDT", day1, "1.25")], version_ms=2)
        await write(store, "fill", [fill(0, T0_MS) | {"price": "1.5"}], version_ms=2)
    async with Vault.connect(settings) as vault:
        at_day1 = await vault.klines(
            "okx", interval="1h", symbols=[*SYMBOLS, "XRP-USDT"], start=day1, end=day1 + HOUR
        )
        fills = await vault.fills(exchange="okx", end=T0_MS + 1)
    assert {(s, c) for s, _, c in closes(at_day1)} == {
        ("BTC-USDT", Decimal("151.1")), ("ETH-USDT", Decimal("151.5")), ("SOL-USDT", Decimal("151.1")),
        ("XRP-USDT", Decimal("1.25")),
    }  # fmt: skip
    assert fills.num_rows == 1 and fills.column("price").to_pylist() == [Decimal("87000.05")]


async def test_rows_between_a_commit_and_its_drop_are_read_once(env: TestEnv, tmp_path: Path) -> None:
    settings = archive_settings(env, tmp_path / "cold")
    await load(settings)
    async with Vault.connect(settings) as vault:
        before = await vault.klines("okx", interval="1h", symbols=list(SYMBOLS))
    # the cold table gets day 1 as a roll commits it, while the partition is still hot
    rows = before.filter(pc.less(before.column("open_time"), pa.scalar(at(T0_MS + 24 * HOUR), TIME)))
    full = await _with_versions(env, rows)
    catalog = table.open_catalog(settings)
    try:
        from tickvault.archive import hot

        cols = await _columns(env, hot)
        cold = table.open_table(catalog, env.schema, "klines", "open_time", cols)
        where = table.time_range("open_time", at(T0_MS).isoformat(), at(T0_MS + 24 * HOUR).isoformat())
        schema = table.arrow_schema(cols)
        table.overwrite(cold, full.select(schema.names).cast(schema), where)
    finally:
        table.close_catalog(catalog)
    await env.fetch(
        "INSERT INTO {s}.archive_log (table_name, range_start, range_end, files, rows, bytes, checksum) "
        "VALUES ('klines', '2026-01-01T00:00Z', '2026-01-02T00:00Z', 1, 72, 1, '')"
    )
    async with Vault.connect(settings) as vault:
        after = await vault.klines("okx", interval="1h", symbols=list(SYMBOLS))
    assert after.equals(before)


async def _columns(env: TestEnv, hot: Any) -> Any:
    import asyncpg

    conn = await asyncpg.connect(env.dsn)
    try:
        return await hot.columns(conn, env.schema, "klines")
    finally:
        await conn.close()


async def _with_versions(env: TestEnv, rows: pa.Table) -> pa.Table:
    """The hot rows of `rows`' keys with every cold column (versions included)."""
    import asyncpg

    from tickvault.reads import hot as hot_reads
    from tickvault.reads.columns import SPECS

    conn = await asyncpg.connect(env.dsn)
    try:
        spec = SPECS["klines"]
        cols = (*spec.columns, "version_ms", "version_seq")
        q = hot_reads.Query(spec, cols, {}, at(T0_MS), at(T0_MS + 24 * HOUR))
        return await hot_reads.read(conn, env.schema, q)
    finally:
        await conn.close()


async def test_a_damaged_cold_file_fails_the_read_naming_it(env: TestEnv, tmp_path: Path) -> None:
    settings, _ = await rolled(env, tmp_path / "cold")
    [victim] = sorted((tmp_path / "cold").rglob("open_time_day=2026-01-02/*.parquet"))
    victim.unlink()
    async with Vault.connect(settings) as vault:
        hot_only = await vault.klines("okx", "BTC-USDT", "1h", start=T0_MS + 3 * 24 * HOUR)
        with pytest.raises(ColdFileError, match=f"cold data file .*{victim.name} is missing"):
            await vault.klines("okx", "BTC-USDT", "1h")
    assert hot_only.num_rows == 2 * 24  # a window the damage does not touch still reads


async def test_bad_read_arguments_are_one_clear_error(env: TestEnv, tmp_path: Path) -> None:
    settings, _ = await rolled(env, tmp_path / "cold")
    async with Vault.connect(settings) as vault:
        for call, message in (
            (
                vault.klines("okx", "BTC-USDT", "1h", columns=["close", "nope"]),
                "unknown column 'nope' for klines",
            ),
            (vault.klines("okx", interval="1h", symbols=[]), "symbols must be a non-empty list"),
            (vault.klines("okx", "BTC-USDT", "1h", symbols=["ETH-USDT"]), "either symbol or symbols"),
            (vault.klines("okx", interval="1h"), "give a symbol"),
            (vault.fills(start=T0_MS, end=T0_MS), "is not after start"),
            (vault.fills(start=dt.datetime(2026, 1, 1)), "start"),
        ):
            with pytest.raises(ConfigError, match=message):
                await call
        assert (await vault.klines("okx", "NOPE-USDT", "1h")).num_rows == 0  # the honest answer
