"""Partitions of a table roll side by side (`archive.parallel_partitions`): the next one is
read while the previous one is written and verified, each still takes its steps in order,
and a failure of one leaves it hot without stopping the others.

The tests step in through the roller's own functions (`hot.read`, `table.checksum`,
`table.overwrite`), against real PostgreSQL and a real Iceberg table.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from tests.helpers import TestEnv
from tests.integration.test_archive import (
    KLINE_COLUMNS,
    archive_settings,
    cold_rows,
    everything_hot,
    hot_rows,
    load,
    normal,
    partitions_of,
    roll,
)
from tickvault.archive import hot, table
from tickvault.settings import Settings

WAIT_S = 60.0  # only reached when the overlap is broken
ROLLED = ("0101", "0102", "0103")  # the klines partitions old enough to roll


async def klines_both_tiers(env: TestEnv, settings: Settings) -> list[tuple[Any, ...]]:
    """Cold + hot klines, normalised as test_archive compares them."""
    names = [c.strip().strip('"') for c in KLINE_COLUMNS.split(",")]
    cold = cold_rows(settings, "klines").select(names).to_pylist()
    return normal([*(tuple(r.values()) for r in cold), *await hot_rows(env, "klines", KLINE_COLUMNS)])


@pytest.mark.parametrize("parallel", [1, 2])
async def test_the_next_partition_is_read_while_one_is_verified(
    env: TestEnv,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    parallel: int,
) -> None:
    settings = env.settings(
        postgres={"timescale": "off", "partition_interval_days": 1, "partitions_ahead": 0},
        archive={"root": str(tmp_path / "cold"), "hot_retention": "2d", "parallel_partitions": parallel},
    )
    await load(settings)
    before = await everything_hot(env)
    read, checksum = hot.read, table.checksum
    second_read = threading.Event()
    steps: list[str] = []

    async def read_logged(conn: Any, p: hot.Partition, cols: Any) -> Any:
        result = await read(conn, p, cols)
        steps.append(f"read {p.start.day}")
        if p.start.day == 2:
            second_read.set()
        return result

    def checksum_logged(data: pa.Table) -> str:  # the verify's, once the partition is committed
        if data.num_rows:
            day = data["open_time"][0].as_py().day
            if day == 1 and parallel > 1:  # day 2 must be read meanwhile, not after day 1 is done
                second_read.wait(WAIT_S)
            steps.append(f"verify {day} ({'after' if second_read.is_set() else 'before'} the read of day 2)")
        return checksum(data)

    monkeypatch.setattr(hot, "read", read_logged)
    monkeypatch.setattr(table, "checksum", checksum_logged)
    caplog.set_level(logging.WARNING, logger="pyiceberg")
    outcomes = await roll(settings, tables=["klines"])
    assert [(o.partition.start.day, o.status) for o in outcomes] == [
        (1, "rolled"),
        (2, "rolled"),
        (3, "rolled"),
    ]
    first = "after" if parallel > 1 else "before"
    assert steps[:3] == (
        ["read 1", "read 2", f"verify 1 ({first} the read of day 2)"]
        if parallel > 1
        else ["read 1", f"verify 1 ({first} the read of day 2)", "read 2"]
    )
    assert not [r for r in caplog.records if r.name.startswith("pyiceberg")]  # no commit conflict, no retry
    assert [p for p in await partitions_of(env, "klines") if p.endswith(ROLLED)] == []
    assert await klines_both_tiers(env, settings) == before["klines"]  # none lost, none doubled


async def test_a_failed_partition_stays_hot_while_its_neighbours_roll(
    env: TestEnv, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = archive_settings(env, tmp_path / "cold")
    await load(settings)
    before = await everything_hot(env)
    overwrite = table.overwrite

    def overwrite_failing_day_2(cold: Any, data: pa.Table, where: Any) -> int:
        if data["open_time"][0].as_py().day == 2:
            raise OSError("disk full")
        return overwrite(cold, data, where)

    monkeypatch.setattr(table, "overwrite", overwrite_failing_day_2)
    outcomes = await roll(settings, tables=["klines"])
    assert [(o.partition.start.day, o.status) for o in outcomes] == [
        (1, "rolled"),
        (2, "failed"),
        (3, "rolled"),
    ]
    assert "disk full" in outcomes[1].reason
    kept = [p for p in await partitions_of(env, "klines") if p.endswith(ROLLED)]
    assert kept == ["klines_p20260102"]
    logged = await env.fetch("SELECT range_start FROM {s}.archive_log ORDER BY 1")
    assert [r["range_start"].day for r in logged] == [1, 3]
    assert await klines_both_tiers(env, settings) == before["klines"]
    monkeypatch.setattr(table, "overwrite", overwrite)
    assert [o.status for o in await roll(settings, tables=["klines"])] == ["rolled"]
    assert await klines_both_tiers(env, settings) == before["klines"]
