"""Crash safety of the roller: the real `tickvault archive` SIGKILLed at random moments.

A workload of 1m klines (DAYS x SYMBOLS) plus fills and order events is written once. Each
round rolls DAYS_PER_ROUND more days with `python -m tickvault archive --older-than …` in a
subprocess; KILLS_PER_ROUND runs in a row are SIGKILLed after a delay drawn from a seeded RNG,
counted from when the run takes the roll lock (so kills land in the read of a partition, its
Iceberg write, the verify or the drop, of different partitions, and in resumed rolls), then
the command is rerun until nothing is left to roll. Nothing in the product knows about it.
After every kill: nothing written is missing from cold and hot and the cold table holds no key
twice. After every round: cold rows + hot rows are exactly what was written (same count, no
duplicate, Decimal-equal, same instants), the rolled days are gone from PostgreSQL, and each
has one archive_log row whose rows/files/bytes are what the cold table holds for its range.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pyiceberg.exceptions import NoSuchTableError

from tests.fault.common import holds_roll_lock
from tests.helpers import TestEnv
from tests.integration.test_archive import (
    EVENT_COLUMNS,
    FILL_COLUMNS,
    KLINE_COLUMNS,
    T0_MS,
    archive_settings,
    cold_rows,
    everything,
    everything_hot,
    fill,
    hot_rows,
    kline,
    order,
    partitions_of,
    roll,
    write,
)
from tests.integration.test_archive import (
    load as load_small,
)
from tickvault.archive import table
from tickvault.settings import Settings
from tickvault.store import Store, migrate

DAYS = 7
SYMBOLS = tuple(f"S{i:02d}-USDT" for i in range(10))
DAYS_PER_ROUND = 2
ROUNDS = 3  # rolls days 1-2, 3-4, 5-6; day 7 stays hot
KILLS_PER_ROUND = 3
KILL_AFTER_S = (0.0, 1.2)  # after the roll lock is taken; a round's roll takes about that long
SEED = 13
TABLES = ("klines", "fills", "order_events")
T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def minute_klines() -> Iterator[dict[str, Any]]:
    for s in SYMBOLS:
        for m in range(DAYS * 1440):
            yield {**kline(s, T0_MS + m * 60_000, f"{100 + m % 97}.{m % 1000}"), "interval": "1m"}


async def load(settings: Settings) -> int:
    """Write the workload through the store; the number of klines sent."""
    await migrate.upgrade(settings.postgres)
    klines = list(minute_klines())
    async with Store(settings.postgres, writer=True) as store:
        for i in range(0, len(klines), 20_000):
            await write(store, "kline", klines[i : i + 20_000])
        await write(store, "fill", [fill(i, T0_MS + i * 300_000) for i in range(DAYS * 288)])
        orders = [order(i, T0_MS + i * 600_000, "open") for i in range(DAYS * 144)]
        orders += [order(i, T0_MS + i * 600_000 + 60_000, "filled") for i in range(DAYS * 144)]
        await write(store, "order", orders)
    return len(klines)


def archive(env: TestEnv, root: Path, until: dt.datetime, log_path: Path) -> subprocess.Popen[bytes]:
    """`python -m tickvault archive` rolling every partition that ends by `until`."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("TICKVAULT_")}
    environ.update(
        env.environ(
            postgres={"timescale": "off", "partition_interval_days": 1, "partitions_ahead": 0},
            archive={"root": str(root)},
        )
    )
    # floor, and an hour short of the next day: the cutoff lands within (until, until + 1 day)
    older_than_s = int((dt.datetime.now(dt.UTC) - until).total_seconds()) - 3600
    cmd = [sys.executable, "-m", "tickvault", "archive", "--older-than", f"{older_than_s}s"]
    with log_path.open("ab") as log:
        return subprocess.Popen(cmd, env=environ, stdout=log, stderr=subprocess.STDOUT)


def finish(env: TestEnv, root: Path, until: dt.datetime, log_path: Path) -> int:
    """Rerun the archive command until it exits 0; the number of runs. Only the roll lock may
    make a run fail (the killed run's session can hold it a moment longer): not a partition."""
    for attempt in range(1, 6):
        if archive(env, root, until, log_path).wait(120) == 0:
            return attempt
        assert "another roller holds the lock" in log_path.read_text(), f"a roll failed; see {log_path}"
        time.sleep(0.5)
    raise AssertionError(f"archive never finished; see {log_path}")


def referenced_files(settings: Settings) -> set[str]:
    """Every data file some snapshot of a cold table references."""
    catalog = table.open_catalog(settings)
    try:
        out: set[str] = set()
        for name in TABLES:
            t = catalog.load_table(f"{settings.postgres.schema_name}.{name}")
            for snap in t.snapshots():
                out |= {task.file.file_path for task in t.scan(snapshot_id=snap.snapshot_id).plan_files()}
        return out
    except NoSuchTableError:  # killed before the first commit
        return set()
    finally:
        table.close_catalog(catalog)


def parquet_files(root: Path) -> set[str]:
    return {"file://" + str(p) for p in root.rglob("*.parquet")}


def _time(name: str) -> str:
    return {"klines": "open_time", "fills": "ts", "order_events": "updated_at"}[name]


def _day(name: str) -> str:
    return f"({_time(name)} AT TIME ZONE 'UTC')::date"


async def dropped(env: TestEnv) -> int:
    return len(await env.fetch("SELECT 1 FROM {s}.archive_log"))


def where_it_landed(
    settings: Settings, root: Path, before: tuple[set[str], int], dropped_now: int, committed: int
) -> str:
    """What the killed run had done: partitions dropped, ranges committed to Iceberg but not
    dropped yet, and data files written that no snapshot references (killed mid-write)."""
    orphans = parquet_files(root) - before[0] - referenced_files(settings)
    return (
        f"{dropped_now - before[1]} dropped, {committed} committed not dropped, "
        f"{len(orphans)} new orphan files"
    )


async def rolling(env: TestEnv, proc: subprocess.Popen[bytes]) -> None:
    """Return once `proc` holds the roll lock (its imports and connection are done)."""
    while proc.poll() is None:
        if await holds_roll_lock(env):
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"archive exited with {proc.returncode} before taking the roll lock")


COLUMNS = {"klines": KLINE_COLUMNS, "fills": FILL_COLUMNS, "order_events": EVENT_COLUMNS}
KEYS = {"klines": ("symbol", "open_time"), "fills": ("fill_id",), "order_events": None}


async def check_after_kill(env: TestEnv, settings: Settings, sent: dict[str, list[tuple[Any, ...]]]) -> int:
    """Assert that no row written is missing from cold + hot and that the cold table holds no
    key twice; the number of ranges the cold table holds that are still hot too (a kill
    between the Iceberg commit and the drop, which the next run merges)."""
    committed = 0
    for name, columns in COLUMNS.items():
        rows = set(await hot_rows(env, name, columns))
        hot_days = {r[0] for r in await hot_rows(env, name, f"DISTINCT {_day(name)}")}
        try:
            cold = cold_rows(settings, name)
        except NoSuchTableError:  # killed before the first commit to this table
            cold = None
        if cold is not None:
            names = [c.strip().strip('"').split("::")[0] for c in columns.split(",")]
            rows |= {tuple(r.values()) for r in cold.select(names).to_pylist()}
            key = KEYS[name]
            keys = [tuple(r.values()) for r in (cold.select(list(key)) if key else cold).to_pylist()]
            assert len(keys) == len(set(keys)), f"{name}: a key is twice in the cold table"
            committed += len(hot_days & {t.date() for t in cold.column(_time(name)).to_pylist()})
        assert rows >= set(sent[name]), f"{name}: rows lost"
    return committed


async def assert_log_matches_cold(env: TestEnv, settings: Settings, rolled_days: int) -> None:
    log_rows = await env.fetch(
        "SELECT table_name, range_start, range_end, files, rows, bytes FROM {s}.archive_log"
    )
    ranges = Counter((r["table_name"], r["range_start"]) for r in log_rows)
    want = {(name, T0 + dt.timedelta(days=d)) for name in TABLES for d in range(rolled_days)}
    assert set(ranges) == want and set(ranges.values()) == {1}  # one row per dropped partition
    catalog = table.open_catalog(settings)
    try:
        for r in log_rows:
            cold = catalog.load_table(f"{settings.postgres.schema_name}.{r['table_name']}")
            where = table.time_range(
                _time(r["table_name"]), r["range_start"].isoformat(), r["range_end"].isoformat()
            )
            snapshot = cold.current_snapshot()
            assert snapshot is not None
            # what a scan of the range reads now is what was logged: no orphan counted
            assert table.files_in(cold, where, snapshot.snapshot_id) == (r["files"], r["bytes"])
            assert len(cold.scan(row_filter=where).to_arrow()) == r["rows"]
    finally:
        table.close_catalog(catalog)


@pytest.mark.slow
async def test_sigkilled_rolls_resume_without_losing_or_doubling_a_row(env: TestEnv, tmp_path: Path) -> None:
    root = tmp_path / "cold"
    settings = archive_settings(env, root)
    n_klines = await load(settings)
    sent = await everything_hot(env)
    assert len(sent["klines"]) == n_klines
    rng = random.Random(SEED)
    landed = []
    for r in range(1, ROUNDS + 1):
        until = T0 + dt.timedelta(days=r * DAYS_PER_ROUND)
        for k in range(KILLS_PER_ROUND):
            before = parquet_files(root), await dropped(env)
            log_path = tmp_path / f"round{r}-kill{k}.log"
            delay_s = rng.uniform(*KILL_AFTER_S)
            proc = archive(env, root, until, log_path)
            await rolling(env, proc)
            await asyncio.sleep(delay_s)
            proc.send_signal(signal.SIGKILL)
            code = proc.wait(30)
            committed = await check_after_kill(env, settings, sent)
            where = where_it_landed(settings, root, before, await dropped(env), committed)
            landed.append(f"round {r} kill {k} after {delay_s:.2f} s (exit {code}): {where}")
        runs = finish(env, root, until, tmp_path / f"round{r}-finish.log")
        assert await everything(env, settings) == sent
        for name in TABLES:
            hot_days = await env.fetch(f"SELECT DISTINCT {_day(name)} FROM {{s}}.{name}")  # noqa: S608
            assert min(d[0] for d in hot_days) == until.date()
            rolled = [
                p for p in await partitions_of(env, name) if f"{name}_p2026" <= p < f"{name}_p{until:%Y%m%d}"
            ]
            assert rolled == [], rolled
        await assert_log_matches_cold(env, settings, r * DAYS_PER_ROUND)
        landed.append(f"round {r}: finished in {runs} run(s)")
    print("\n".join(landed))
    assert len(cold_rows(settings, "klines")) == ROUNDS * DAYS_PER_ROUND * 1440 * len(SYMBOLS)


async def test_late_order_events_for_a_rolled_day_are_merged_once(env: TestEnv, tmp_path: Path) -> None:
    """The merge path of order events (also a resumed roll's, after a kill between the
    Iceberg commit and the drop): cold rows loaded back into a re-created partition."""
    settings = archive_settings(env, tmp_path / "cold")
    await load_small(settings)
    await roll(settings, tables=["order_events"])
    rolled = cold_rows(settings, "order_events")
    async with Store(settings.postgres, writer=True) as store:
        late = [order(999, T0_MS + 3_600_000, "open"), order(0, T0_MS, "open")]  # new; already rolled
        await write(store, "order", late, version_ms=2)
    outcomes = await roll(settings, tables=["order_events"])
    assert [(o.status, o.partition.start.day, o.merged_rows) for o in outcomes] == [
        ("rolled", 1, sum(t.day == 1 for t in rolled.column("updated_at").to_pylist()))
    ]
    cold = cold_rows(settings, "order_events").to_pylist()
    assert len(cold) == len(rolled) + 1
    keys = [(r["exchange"], r["order_id"], r["updated_at"], r["event_hash"]) for r in cold]
    assert len(set(keys)) == len(keys) and ("okx", "o999") in {k[:2] for k in keys}
