"""The cold tier's upkeep: old snapshots expired, unreferenced old files swept, after a retention.

Snapshots carry their commit time, so the roll that should find them old runs with its clock
(`now`) two days ahead; files planted as leftovers of a killed write get their modification
times set against that clock.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
from pathlib import Path
from typing import Any

from pyiceberg.table import Table

from tests.helpers import TestEnv
from tests.integration.test_archive import (
    NOW,
    T0_MS,
    archive_settings,
    cold_rows,
    kline,
    load,
    normal,
    roll,
    s3_keys,
    write,
)
from tickvault import metrics
from tickvault.archive import roller, sweep, table
from tickvault.settings import Settings
from tickvault.store import Store, migrate


def files_under(directory: Path) -> set[str]:
    return {str(p) for p in directory.rglob("*") if p.is_file()}


def klines_table(settings: Settings) -> Table:
    catalog = table.open_catalog(settings)
    try:
        return catalog.load_table(f"{settings.postgres.schema_name}.klines")
    finally:
        table.close_catalog(catalog)


def cold_klines(settings: Settings) -> list[tuple[object, ...]]:
    return normal(tuple(r.values()) for r in cold_rows(settings, "klines").to_pylist())


async def test_old_snapshots_expire_and_unreferenced_old_files_are_swept(
    env: TestEnv, tmp_path: Path
) -> None:
    settings = archive_settings(env, tmp_path / "cold")  # snapshot_retention: the default 1d
    await load(settings)
    await roll(settings, tables=["klines"])
    location = tmp_path / "cold" / env.schema / "klines"
    first_data = files_under(location / "data")
    async with Store(settings.postgres, writer=True) as store:  # a late row: day 1 is rewritten
        await write(store, "kline", [kline("XRP-USDT", T0_MS + 3_600_000, "1.25")], version_ms=2)
    await roll(settings, tables=["klines"])  # the real clock: nothing is old enough yet
    cold = klines_table(settings)
    assert len(cold.metadata.snapshots) == 5  # days 1, 2, 3, then day 1 again: a delete and an append
    current = cold.current_snapshot()
    assert current is not None
    rows_before = cold_klines(settings)
    assert len(rows_before) == 3 * 24 * 3 + 1

    clock = dt.datetime.now(dt.UTC) + dt.timedelta(days=2)
    old_s = (clock - dt.timedelta(days=3)).timestamp()
    for path in files_under(location):
        os.utime(path, (old_s, old_s))
    a_data_file = sorted(first_data)[0]
    planted_old = location / "data" / "killed-write-old.parquet"
    planted_new = location / "data" / "write-in-progress.parquet"
    shutil.copy(a_data_file, planted_old)
    shutil.copy(a_data_file, planted_new)
    os.utime(planted_old, (old_s, old_s))
    os.utime(planted_new, (clock.timestamp(), clock.timestamp()))  # "now" on the roll's clock
    swept_before = metrics.ARCHIVE_SWEPT_FILES.labels("klines")._value.get()
    on_disk = files_under(location)

    older_than_s = int((clock - NOW).total_seconds()) + 2 * 86_400  # the same partitions as `roll`
    assert await roller.roll(settings, older_than_s=older_than_s, tables=["klines"], now=clock) == []

    cold = klines_table(settings)
    assert [s.snapshot_id for s in cold.metadata.snapshots] == [current.snapshot_id]
    assert cold_klines(settings) == rows_before  # the current snapshot reads back exactly as before
    left = files_under(location)
    assert not planted_old.exists() and planted_new.exists()
    assert left == sweep.referenced(cold) | {str(planted_new)}  # every unreferenced old file is gone
    assert first_data - left  # the replaced day-1 data file went with its expired snapshot
    assert metrics.ARCHIVE_SWEPT_FILES.labels("klines")._value.get() == swept_before + len(on_disk - left)


async def test_sweep_on_s3_expires_snapshots_and_deletes_unreferenced_objects(
    env: TestEnv, s3_endpoint: str
) -> None:
    settings = env.settings(
        postgres={"timescale": "off", "partition_interval_days": 1, "partitions_ahead": 0},
        archive={
            "root": f"s3://tickvault-archive/{env.schema}", "hot_retention": "2d",
            "s3_endpoint": s3_endpoint, "s3_region": "us-east-1",
            "s3_access_key_id": "test", "s3_secret_access_key": "test",
        },
    )  # fmt: skip
    await load(settings)
    await roll(settings, tables=["klines"])
    async with Store(settings.postgres, writer=True) as store:
        await write(store, "kline", [kline("XRP-USDT", T0_MS + 3_600_000, "1.25")], version_ms=2)
    await roll(settings, tables=["klines"])
    rows_before = cold_klines(settings)
    prefix = f"{env.schema}/{env.schema}/klines/"
    client = s3_client(s3_endpoint)
    a_data_key = next(k for k in s3_keys(s3_endpoint, "tickvault-archive", prefix) if k.endswith(".parquet"))
    planted = f"{prefix}data/killed-write.parquet"
    client.copy_object(Bucket="tickvault-archive", Key=planted, CopySource=f"tickvault-archive/{a_data_key}")
    current = klines_table(settings).current_snapshot()
    assert current is not None

    clock = dt.datetime.now(dt.UTC) + dt.timedelta(days=2)
    older_than_s = int((clock - NOW).total_seconds()) + 2 * 86_400
    assert await roller.roll(settings, older_than_s=older_than_s, tables=["klines"], now=clock) == []

    cold = klines_table(settings)
    assert [s.snapshot_id for s in cold.metadata.snapshots] == [current.snapshot_id]
    assert cold_klines(settings) == rows_before
    keys = s3_keys(s3_endpoint, "tickvault-archive", prefix)
    left = {f"tickvault-archive/{k}" for k in keys if not k.endswith("/")}  # not pyarrow's directory markers
    assert f"tickvault-archive/{planted}" not in left
    assert left == sweep.referenced(cold)


def s3_client(endpoint: str) -> Any:
    import boto3  # moto's own dependency: only the tests read the bucket this way

    return boto3.client(
        "s3", endpoint_url=endpoint, region_name="us-east-1",
        aws_access_key_id="test", aws_secret_access_key="test",
    )  # fmt: skip


async def test_the_rollers_unpooled_catalog_keeps_no_connection_open(env: TestEnv, tmp_path: Path) -> None:
    """The roller's catalog connects per call (a call still running in a thread when the
    roller is cancelled must not leave a connection behind); the Vault's keeps one pooled."""
    await migrate.upgrade(archive_settings(env, tmp_path / "cold").postgres)
    name = f"tv_catalog_{env.tag}"
    settings = env.settings(
        postgres={"dsn": f"{env.dsn}?application_name={name}", "timescale": "off"},
        archive={"root": str(tmp_path / "cold")},
    )

    async def open_connections() -> int:
        sql = "SELECT count(*) AS n FROM pg_stat_activity WHERE application_name = $1"
        return int((await env.fetch(sql, name))[0]["n"])

    for pooled, kept in ((True, 1), (False, 0)):
        catalog = table.open_catalog(settings, pooled=pooled)
        try:
            assert not catalog.table_exists(f"{settings.postgres.schema_name}.nothing")
            assert await open_connections() == kept
        finally:
            table.close_catalog(catalog)
        assert await open_connections() == 0
