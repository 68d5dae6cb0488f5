"""What stops a drop: a change to the partition between its read and its drop (the
fingerprint), and a committed cold copy that differs from what was read (the verify).

Each test steps in at that moment through the roller's own functions (`hot.read`,
`table.overwrite`), against real PostgreSQL and a real Iceberg table.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
import pyarrow as pa
import pytest

from tests.helpers import TestEnv
from tests.integration.test_archive import (
    DAY_MS,
    T0_MS,
    archive_settings,
    cold_rows,
    everything_hot,
    kline,
    load,
    partitions_of,
    roll,
    write,
)
from tickvault import metrics
from tickvault.archive import hot, table
from tickvault.settings import Settings
from tickvault.store import Store

CHANGES = {  # a write between the read of day 2's klines partition and its drop, and its verdict
    "version_only": "changed",  # the same candle published again: only version_ms/version_seq move
    "insert": "changed",
    "delete": "changed",
    "older_version": "rolled",  # ON CONFLICT … WHERE false: no new row version, no change
    "vacuum_freeze": "rolled",  # freezing keeps xmin and ctid
}


@pytest.mark.parametrize("change", CHANGES)
async def test_a_change_between_the_read_and_the_drop_keeps_the_partition(
    env: TestEnv, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, change: str
) -> None:
    settings = archive_settings(env, tmp_path / "cold")
    await load(settings)
    day2 = T0_MS + DAY_MS
    read = hot.read

    async def read_then_change(conn: Any, p: hot.Partition, cols: Any) -> Any:
        result = await read(conn, p, cols)
        if p.start.day == 2:
            await _change(env, settings, p.name, change, day2)
        return result

    monkeypatch.setattr(hot, "read", read_then_change)
    outcomes = await roll(settings, tables=["klines"])
    assert [(o.partition.start.day, o.status) for o in outcomes] == [
        (1, "rolled"),
        (2, CHANGES[change]),
        (3, "rolled"),
    ]
    kept = [p for p in await partitions_of(env, "klines") if p.endswith("0102")]
    logged = await env.fetch(
        "SELECT range_start FROM {s}.archive_log WHERE range_start = $1", outcomes[1].partition.start
    )
    assert (len(kept), len(logged)) == ((1, 0) if CHANGES[change] == "changed" else (0, 1))
    monkeypatch.setattr(hot, "read", read)
    assert {o.status for o in await roll(settings, tables=["klines"])} <= {"rolled"}
    versions = {(r["symbol"], r["version_ms"]) for r in cold_rows(settings, "klines").to_pylist()
                if r["open_time"] == dt.datetime(2026, 1, 2, tzinfo=dt.UTC)}  # fmt: skip
    assert ("BTC-USDT", 2) in versions if change == "version_only" else ("BTC-USDT", 1) in versions
    assert (("XRP-USDT", 2) in versions) == (change == "insert")


async def _change(env: TestEnv, settings: Settings, partition: str, change: str, at_ms: int) -> None:
    sql = {
        "vacuum_freeze": f"VACUUM FREEZE {env.schema}.{partition}",
        "delete": f"DELETE FROM {env.schema}.klines WHERE symbol = 'SOL-USDT' "  # noqa: S608
        f"AND open_time = to_timestamp({at_ms // 1000})",
    }
    if change in sql:
        conn = await asyncpg.connect(env.dsn)
        try:
            await conn.execute(sql[change])
        finally:
            await conn.close()
        return
    symbol, version_ms = {"version_only": ("BTC-USDT", 2), "insert": ("XRP-USDT", 2)}.get(
        change, ("BTC-USDT", 0)
    )
    async with Store(settings.postgres, writer=True) as store:  # the BTC candle's very values
        await write(store, "kline", [kline(symbol, at_ms, f"{150 + 24 % 7}.24")], version_ms=version_ms)


@pytest.mark.parametrize("damage", ["one_row_less", "one_value_changed"])
async def test_a_committed_copy_that_differs_from_the_read_keeps_everything_hot(
    env: TestEnv, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, damage: str
) -> None:
    settings = archive_settings(env, tmp_path / "cold")
    await load(settings)
    before = await everything_hot(env)
    parts = await partitions_of(env, "fills")
    overwrite = table.overwrite

    def overwrite_damaged(cold: Any, data: pa.Table, where: Any) -> int:
        if damage == "one_row_less":
            return overwrite(cold, data.slice(1), where)
        fees = data["fee"].to_pylist()
        fees[0] += Decimal("0.000000000000000001")  # the last digit the cold type holds
        field = data.schema.field("fee")
        return overwrite(
            cold,
            data.set_column(data.schema.get_field_index("fee"), field, pa.array(fees, field.type)),
            where,
        )

    monkeypatch.setattr(table, "overwrite", overwrite_damaged)
    failures = metrics.ARCHIVE_FAILURES.labels("fills")._value.get()
    outcomes = await roll(settings, tables=["fills"])
    assert {o.status for o in outcomes} == {"failed"} and len(outcomes) == 3
    assert all("VerifyFailed" in o.reason for o in outcomes)
    assert metrics.ARCHIVE_FAILURES.labels("fills")._value.get() == failures + 3
    assert await everything_hot(env) == before
    assert await partitions_of(env, "fills") == parts
    assert await env.fetch("SELECT * FROM {s}.archive_log") == []
