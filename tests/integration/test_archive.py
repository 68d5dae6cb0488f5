"""The cold tier: old partitions rolled to Iceberg, verified, dropped; late rows merged.

Rows are written through Store.write with old timestamps into 1-day partitions, rolled with
a retention that leaves the last days hot, and the cold table is read back with pyiceberg
(as any reader that does not use tickvault would) and compared with what was written.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import stat
from collections.abc import Iterable
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from tests.helpers import TestEnv
from tickvault import metrics
from tickvault.archive import roller, table
from tickvault.cli import main
from tickvault.codecs import native
from tickvault.settings import Settings
from tickvault.store import Store, migrate

DAY_MS = 86_400_000
T0_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z
DAYS = 5
SYMBOLS = ("BTC-USDT", "ETH-USDT", "SOL-USDT")
NOW = dt.datetime(2026, 1, 1, tzinfo=dt.UTC) + dt.timedelta(days=DAYS)


def archive_settings(env: TestEnv, root: Path) -> Settings:
    return env.settings(
        postgres={"timescale": "off", "partition_interval_days": 1, "partitions_ahead": 0},
        archive={"root": str(root), "hot_retention": "2d"},
    )


def kline(symbol: str, open_ms: int, close: str, closed: bool = True) -> dict[str, Any]:
    return {
        "exchange": "okx", "symbol": symbol, "interval": "1h", "open_time": open_ms, "open": "100.5",
        "high": "200.000000000000000001", "low": "0.000000000000000001", "close": close,
        "volume": "12345678901234567890", "quote_volume": "0.5", "trades": 7, "closed": closed,
    }  # fmt: skip


def fill(i: int, ts_ms: int) -> dict[str, Any]:
    return {
        "fill_id": f"f{i}", "order_id": f"o{i}", "exchange": "okx", "symbol": SYMBOLS[i % 3],
        "side": "buy", "quantity": "0.020", "price": f"87000.{i}5", "fee": "0.0000200", "ts": ts_ms,
    }  # fmt: skip


def order(i: int, ts_ms: int, status: str) -> dict[str, Any]:
    return {
        "order_id": f"o{i}", "exchange": "okx", "symbol": "BTC-USDT", "side": "sell", "type": "limit",
        "status": status, "quantity": "1.5", "price": "87100.25", "filled_quantity": "0",
        "updated_at": ts_ms, "created_at": T0_MS,
    }  # fmt: skip


async def write(store: Store, kind: str, messages: Iterable[dict[str, Any]], version_ms: int = 1) -> None:
    items, versions = [], []
    for seq, m in enumerate(messages):
        items.append(native.decode_item(json.dumps(m).encode(), kind))
        versions.append(f"{version_ms}\t{seq}")
    result = await store.write(kind, items, versions)
    assert not result.rejected


def workload() -> dict[str, list[dict[str, Any]]]:
    klines = [
        kline(s, T0_MS + h * 3_600_000, f"{150 + h % 7}.{h}") for s in SYMBOLS for h in range(DAYS * 24)
    ]
    fills = [fill(i, T0_MS + i * 3_000_000) for i in range(DAYS * 28)]
    orders = [order(i, T0_MS + i * 7_000_000, "open") for i in range(DAYS * 12)]
    orders += [order(i, T0_MS + i * 7_000_000 + 60_000, "filled") for i in range(DAYS * 12)]
    return {"kline": klines, "fill": fills, "order": orders}


async def load(settings: Settings) -> dict[str, list[dict[str, Any]]]:
    await migrate.upgrade(settings.postgres)
    sent = workload()
    async with Store(settings.postgres, writer=True) as store:
        for kind, messages in sent.items():
            await write(store, kind, messages)
    return sent


def cold_rows(settings: Settings, name: str) -> pa.Table:
    catalog = table.open_catalog(settings)
    try:
        return catalog.load_table(f"{settings.postgres.schema_name}.{name}").scan().to_arrow()
    finally:
        table.close_catalog(catalog)


async def hot_rows(env: TestEnv, name: str, columns: str) -> list[tuple[Any, ...]]:
    return [tuple(r) for r in await env.fetch(f"SELECT {columns} FROM {{s}}.{name}")]  # noqa: S608


def normal(rows: Iterable[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """Rows with decimals compared by value and times as UTC instants."""
    out = []
    for row in rows:
        out.append(tuple(v.normalize() if isinstance(v, Decimal) else v for v in row))
    return sorted(out, key=repr)


KLINE_COLUMNS = (
    'exchange, symbol, "interval", open_time, open, high, low, close, volume, quote_volume, closed'
)
FILL_COLUMNS = "fill_id, exchange, symbol, quantity, price, fee, ts"
EVENT_COLUMNS = "order_id, status, quantity, price, updated_at, event_hash::text"


async def everything(env: TestEnv, settings: Settings) -> dict[str, list[tuple[Any, ...]]]:
    """cold + hot rows of each table, normalised."""
    out = {}
    for name, columns in (
        ("klines", KLINE_COLUMNS),
        ("fills", FILL_COLUMNS),
        ("order_events", EVENT_COLUMNS),
    ):
        names = [c.strip().strip('"').split("::")[0] for c in columns.split(",")]
        cold = cold_rows(settings, name).select(names).to_pylist()
        out[name] = normal([*(tuple(r.values()) for r in cold), *await hot_rows(env, name, columns)])
    return out


async def partitions_of(env: TestEnv, name: str) -> list[str]:
    rows = await env.fetch(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
        "WHERE i.inhparent = to_regclass($1) ORDER BY 1",
        f"{env.schema}.{name}",
    )
    return [r[0] for r in rows]


async def roll(settings: Settings, **kwargs: Any) -> list[roller.Outcome]:
    older_than_s = int((dt.datetime.now(dt.UTC) - NOW).total_seconds()) + 2 * 86_400
    outcomes = await roller.roll(settings, older_than_s=older_than_s, **kwargs)
    assert outcomes is not None
    return outcomes


async def test_roll_moves_old_days_to_the_cold_table_exactly_once(env: TestEnv, tmp_path: Path) -> None:
    settings = archive_settings(env, tmp_path / "cold")
    sent = await load(settings)
    before = await everything_hot(env)
    outcomes = await roll(settings)
    assert {o.status for o in outcomes} == {"rolled"}
    assert {(o.partition.table.name, o.partition.start.day) for o in outcomes} == {
        (t, d) for t in ("klines", "fills", "order_events") for d in (1, 2, 3)
    }
    after = await everything(env, settings)
    assert after == before  # the same rows: Decimal-equal, same instants, no duplicate, none lost
    assert len(after["klines"]) == len(sent["kline"])
    for name in ("klines", "fills", "order_events"):
        assert [p for p in await partitions_of(env, name) if p.endswith(("0101", "0102", "0103"))] == []
    assert len(cold_rows(settings, "klines")) == 3 * 24 * len(SYMBOLS)
    log_rows = await env.fetch("SELECT table_name, rows, files, bytes, checksum FROM {s}.archive_log")
    assert len(log_rows) == 9 and all(r["rows"] > 0 and r["files"] >= 1 and r["bytes"] > 0 for r in log_rows)

    again = await roll(settings)  # nothing old is left hot: nothing to do, nothing doubled
    assert [o for o in again if o.rows] == []
    assert await everything(env, settings) == before


async def test_roll_to_s3_keeps_every_row_and_writes_the_files_there(env: TestEnv, s3_endpoint: str) -> None:
    settings = env.settings(
        postgres={"timescale": "off", "partition_interval_days": 1, "partitions_ahead": 0},
        archive={
            "root": f"s3://tickvault-archive/{env.schema}", "hot_retention": "2d",
            "s3_endpoint": s3_endpoint, "s3_region": "us-east-1",
            "s3_access_key_id": "test", "s3_secret_access_key": "secret-key-never-logged",
        },
    )  # fmt: skip
    await load(settings)
    before = await everything_hot(env)
    outcomes = await roll(settings)
    assert len(outcomes) == 9 and {o.status for o in outcomes} == {"rolled"}
    assert await everything(env, settings) == before
    # <root>/<schema>/<table>/data: the root is s3://tickvault-archive/<schema>
    objects = s3_keys(s3_endpoint, "tickvault-archive", f"{env.schema}/{env.schema}/klines/data/")
    assert objects and all(key.endswith(".parquet") for key in objects)
    assert "secret-key-never-logged" not in repr(settings) + str(settings.model_dump())


def s3_keys(endpoint: str, bucket: str, prefix: str) -> list[str]:
    import boto3  # moto's own dependency: only the tests read the bucket this way

    client = boto3.client(
        "s3", endpoint_url=endpoint, region_name="us-east-1",
        aws_access_key_id="test", aws_secret_access_key="test",
    )  # fmt: skip
    listing = client.list_objects_v2(Bucket=bucket, Prefix=prefix)
    return [item["Key"] for item in listing.get("Contents", [])]


async def everything_hot(env: TestEnv) -> dict[str, list[tuple[Any, ...]]]:
    return {
        name: normal(await hot_rows(env, name, columns))
        for name, columns in (
            ("klines", KLINE_COLUMNS),
            ("fills", FILL_COLUMNS),
            ("order_events", EVENT_COLUMNS),
        )
    }


async def test_late_rows_are_merged_on_the_next_roll_under_the_candle_rule(
    env: TestEnv, tmp_path: Path
) -> None:
    settings = archive_settings(env, tmp_path / "cold")
    await load(settings)
    await roll(settings, tables=["klines"])
    day1 = T0_MS + 3_600_000
    async with Store(settings.postgres, writer=True) as store:
        # later-published: an open candle for a closed one (must lose), a new candle (must land),
        # a replacement closed candle (must win)
        await write(store, "kline", [kline("BTC-USDT", day1, "199", closed=False)], version_ms=2)
        await write(store, "kline", [kline("XRP-USDT", day1, "1.25")], version_ms=2)
        await write(store, "kline", [kline("ETH-USDT", day1, "151.5")], version_ms=2)
    outcomes = await roll(settings, tables=["klines"])
    rolled = [o for o in outcomes if o.status == "rolled"]
    assert [(o.partition.start.day, o.merged_rows) for o in rolled] == [(1, 24 * len(SYMBOLS))]
    cold = cold_rows(settings, "klines").to_pylist()
    at = dt.datetime(2026, 1, 1, 1, tzinfo=dt.UTC)
    close = {r["symbol"]: r["close"] for r in cold if r["open_time"] == at}
    assert close == {
        "BTC-USDT": Decimal("151.1"), "ETH-USDT": Decimal("151.5"), "SOL-USDT": Decimal("151.1"),
        "XRP-USDT": Decimal("1.25"),
    }  # fmt: skip
    assert len(cold) == 3 * 24 * len(SYMBOLS) + 1  # one copy of each key
    assert len({(r["symbol"], r["open_time"]) for r in cold}) == len(cold)


async def test_dry_run_changes_nothing(env: TestEnv, tmp_path: Path) -> None:
    settings = archive_settings(env, tmp_path / "cold")
    await load(settings)
    before = await everything_hot(env)
    parts = await partitions_of(env, "klines")
    outcomes = await roll(settings, dry_run=True)
    assert {o.status for o in outcomes} == {"would roll"} and len(outcomes) == 9
    assert sum(o.rows for o in outcomes if o.partition.table.name == "klines") == 3 * 24 * len(SYMBOLS)
    assert await everything_hot(env) == before
    assert await partitions_of(env, "klines") == parts
    assert not (tmp_path / "cold").exists()
    assert await env.fetch("SELECT * FROM {s}.archive_log") == []


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes through directory permissions")
async def test_unwritable_root_keeps_everything_hot_and_counts_failures(env: TestEnv, tmp_path: Path) -> None:
    await _unwritable(env, tmp_path)


async def test_root_that_is_a_file_keeps_everything_hot_and_counts_failures(
    env: TestEnv, tmp_path: Path
) -> None:
    (tmp_path / "cold").write_text("not a directory")
    await _check_failed_roll(env, archive_settings(env, tmp_path / "cold" / "sub"))


async def _unwritable(env: TestEnv, tmp_path: Path) -> None:
    root = tmp_path / "cold"
    root.mkdir()
    root.chmod(stat.S_IRUSR | stat.S_IXUSR)
    try:
        await _check_failed_roll(env, archive_settings(env, root))
    finally:
        root.chmod(stat.S_IRWXU)


async def _check_failed_roll(env: TestEnv, settings: Settings) -> None:
    await load(settings)
    before = await everything_hot(env)
    parts = await partitions_of(env, "fills")
    failures = metrics.ARCHIVE_FAILURES.labels("fills")._value.get()
    outcomes = await roll(settings, tables=["fills"])
    assert {o.status for o in outcomes} == {"failed"} and len(outcomes) == 3
    assert all(o.reason for o in outcomes)
    assert metrics.ARCHIVE_FAILURES.labels("fills")._value.get() == failures + 3
    assert await everything_hot(env) == before
    assert await partitions_of(env, "fills") == parts
    assert await env.fetch("SELECT * FROM {s}.archive_log") == []


async def test_cli_dry_run_then_roll_then_list(
    env: TestEnv, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = archive_settings(env, tmp_path / "cold")
    await load(settings)
    sections = {
        "postgres": {"timescale": "off", "partition_interval_days": 1, "partitions_ahead": 0},
        "archive": {"root": str(tmp_path / "cold")},
    }
    for name, value in env.environ(**sections).items():
        monkeypatch.setenv(name, value)
    older = f"{int((dt.datetime.now(dt.UTC) - NOW).total_seconds()) // 3600 + 48}h"
    assert (
        await asyncio.to_thread(main, ["archive", "--dry-run", "--older-than", older, "--table", "fills"])
        == 0
    )
    out = capsys.readouterr()
    assert out.out.count("would roll\tfills\t") == 3 and "would roll 3 partitions, 0 failed" in out.err
    assert await env.fetch("SELECT * FROM {s}.archive_log") == []
    assert await asyncio.to_thread(main, ["archive", "--older-than", older, "--table", "fills"]) == 0
    assert capsys.readouterr().out.count("rolled\tfills\t") == 3
    assert await asyncio.to_thread(main, ["archive", "--list"]) == 0
    listed = capsys.readouterr().out.splitlines()
    assert len(listed) == 3 and all(line.startswith("fills\t2026-01-0") for line in listed)
    with pytest.raises(SystemExit) as usage:
        main(["archive", "--older-than", "7 days"])
    assert usage.value.code == 2
    assert "tickvault: error: argument --older-than: not a duration: '7 days'" in capsys.readouterr().err
