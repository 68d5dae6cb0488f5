"""Damaged cold files are found, named and never merged; the daemon rolls on its own.

`tickvault archive --verify` reads every rolled range back and checks it against the archive
log; the roller checks a range's cold rows the same way before it merges late rows into it.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import time
from pathlib import Path

import pyarrow as pa
import pytest

from tests.helpers import Daemon, TestEnv, wait_until
from tests.integration.test_archive import (
    DAYS,
    SYMBOLS,
    T0_MS,
    archive_settings,
    everything,
    everything_hot,
    kline,
    load,
    partitions_of,
    roll,
    write,
)
from tickvault import metrics
from tickvault.archive import table
from tickvault.cli import main
from tickvault.settings import Settings
from tickvault.store import Store

DAY1 = T0_MS + 3_600_000  # 2026-01-01T01:00Z, in the first rolled day


def day1_files(root: Path) -> list[Path]:
    return sorted(root.rglob("open_time_day=2026-01-01/*.parquet"))


async def verify_cli(
    env: TestEnv, root: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> tuple[int, list[str], str]:
    sections = {
        "postgres": {"timescale": "off", "partition_interval_days": 1, "partitions_ahead": 0},
        "archive": {"root": str(root)},
    }
    for name, value in env.environ(**sections).items():
        monkeypatch.setenv(name, value)
    code = await asyncio.to_thread(main, ["archive", "--verify", "--table", "klines"])
    out = capsys.readouterr()
    return code, out.out.splitlines(), out.err


async def rolled(env: TestEnv, root: Path) -> Settings:
    settings = archive_settings(env, root)
    await load(settings)
    outcomes = await roll(settings, tables=["klines"])
    assert {o.status for o in outcomes} == {"rolled"} and len(outcomes) == 3
    return settings


async def late_kline(settings: Settings) -> None:
    async with Store(settings.postgres, writer=True) as store:
        await write(store, "kline", [kline("XRP-USDT", DAY1, "1.25")], version_ms=2)


async def test_verify_passes_on_what_was_rolled(
    env: TestEnv, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    await rolled(env, tmp_path / "cold")
    code, lines, err = await verify_cli(env, tmp_path / "cold", monkeypatch, capsys)
    assert code == 0
    assert [line.split("\t")[:3] for line in lines] == [
        ["ok", "klines", f"2026-01-0{d}T00:00:00+00:00"] for d in (1, 2, 3)
    ]
    assert all(f"\t{24 * len(SYMBOLS)} rows, checksum " in line for line in lines)
    assert "3 ranges checked: 3 ok, 0 rewritten, 0 corrupt, 0 unreadable" in err


@pytest.mark.parametrize("damage", ["deleted", "truncated", "garbled"])
async def test_damaged_file_is_named_by_verify_and_blocks_the_merge(
    env: TestEnv,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    damage: str,
) -> None:
    root = tmp_path / "cold"
    settings = await rolled(env, root)
    [victim] = day1_files(root)
    data = victim.read_bytes()
    if damage == "deleted":
        victim.unlink()
    elif damage == "truncated":
        victim.write_bytes(data[: len(data) // 2])
    else:  # the same size, bytes flipped in the middle of the column chunks
        middle = len(data) // 2
        flipped = bytes(b ^ 0xFF for b in data[middle : middle + 64])
        victim.write_bytes(data[:middle] + flipped + data[middle + 64 :])
    failures = metrics.ARCHIVE_COLD_CHECK_FAILURES.labels("klines")._value.get()

    code, lines, err = await verify_cli(env, root, monkeypatch, capsys)
    assert code == 1
    [bad] = [line for line in lines if not line.startswith("ok\t")]
    assert bad.split("\t")[0] in ("unreadable", "corrupt") and bad.split("\t")[2].startswith("2026-01-01")
    assert str(victim) in bad  # the error names the file
    assert "3 ranges checked: 2 ok" in err
    assert metrics.ARCHIVE_COLD_CHECK_FAILURES.labels("klines")._value.get() == failures + 1

    # a late row for that day: its roll must fail, naming the file, and keep every row hot
    await late_kline(settings)
    before = await everything_hot(env)
    outcomes = await roll(settings, tables=["klines"])
    [failed] = [o for o in outcomes if o.partition.start.day == 1]
    assert failed.status == "failed" and str(victim) in failed.reason
    assert await everything_hot(env) == before
    assert any(p.endswith("20260101") for p in await partitions_of(env, "klines"))


async def test_rows_differing_from_the_log_are_corrupt_but_a_recommitted_range_is_not(
    env: TestEnv, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "cold"
    settings = await rolled(env, root)
    # what the roll verified no longer matches the files its commit wrote: damage
    await env.fetch(
        "UPDATE {s}.archive_log SET checksum = '0123456789abcdef' "
        "WHERE table_name = 'klines' AND range_start = '2026-01-02T00:00Z'"
    )
    code, lines, _ = await verify_cli(env, root, monkeypatch, capsys)
    assert code == 1
    [bad] = [line for line in lines if line.startswith("corrupt\t")]
    assert "2026-01-02T00:00:00+00:00" in bad and "logged" in bad and ".parquet" in bad

    # day 1 committed again with a late row merged, then no log row (a roll killed between its
    # commit and its log row): not damage, the next roll verifies it
    catalog = table.open_catalog(settings)
    try:
        cold = catalog.load_table(f"{env.schema}.klines")
        where = table.time_range("open_time", "2026-01-01T00:00:00+00:00", "2026-01-02T00:00:00+00:00")
        rows = table.read(cold, where, cold.schema().as_arrow())
        late = rows.slice(0, 1).set_column(1, "symbol", pa.array(["ADA-USDT"], rows.schema.field(1).type))
        table.overwrite(cold, pa.concat_tables([rows, late]), where)
    finally:
        table.close_catalog(catalog)
    code, lines, _ = await verify_cli(env, root, monkeypatch, capsys)
    assert [line.split("\t")[0] for line in lines] == ["rewritten", "corrupt", "ok"]
    assert "committed again after it was logged" in lines[0]

    # late rows for both days: the damaged day 2 is not merged with them (the roll fails, its
    # rows stay hot); the re-committed day 1 is merged, rolled and logged
    await late_kline(settings)
    async with Store(settings.postgres, writer=True) as store:
        await write(store, "kline", [kline("XRP-USDT", DAY1 + 86_400_000, "1.5")], version_ms=2)
    outcomes = {o.partition.start.day: o for o in await roll(settings, tables=["klines"])}
    assert outcomes[2].status == "failed" and "differ from the archive log" in outcomes[2].reason
    assert outcomes[1].status == "rolled" and outcomes[1].merged_rows == 24 * len(SYMBOLS) + 1
    assert outcomes[1].rows == 24 * len(SYMBOLS) + 2
    code, lines, _ = await verify_cli(env, root, monkeypatch, capsys)
    assert [line.split("\t")[0] for line in lines] == ["ok", "corrupt", "ok"]


async def test_the_daemon_rolls_on_its_own_while_it_ingests(
    env: TestEnv, tmp_path: Path, daemon: Daemon
) -> None:
    settings = archive_settings(env, tmp_path / "cold")
    await load(settings)
    before = await everything_hot(env)
    settings = env.settings(
        postgres={"timescale": "off", "partition_interval_days": 1, "partitions_ahead": 0},
        archive={"enabled": True, "root": str(tmp_path / "cold"), "hot_retention": "2d", "interval_s": 0.5},
    )
    partitions = metrics.ARCHIVE_PARTITIONS.labels("klines")._value.get()
    await daemon.start(settings)
    now_ms = int(time.time() // 60 * 60_000)
    fresh = [kline("BTC-USDT", now_ms - i * 60_000, "1.5") | {"interval": "1m"} for i in range(50)]
    await env.publish("kline", [json.dumps(k) for k in fresh])

    async def rolled_all() -> bool:
        rows = await env.fetch("SELECT count(DISTINCT (table_name, range_start)) AS n FROM {s}.archive_log")
        return bool(rows[0]["n"] == 3 * DAYS)

    await wait_until(rolled_all, 120, 0.5, "the daemon to roll every old partition")
    await daemon.drain()
    await daemon.stop_all()
    assert metrics.ARCHIVE_PARTITIONS.labels("klines")._value.get() >= partitions + DAYS
    after = await everything(env, settings)
    assert after["fills"] == before["fills"] and after["order_events"] == before["order_events"]
    fresh_keys = {("BTC-USDT", dt.datetime.fromtimestamp(k["open_time"] / 1000, dt.UTC)) for k in fresh}
    hot_now = await env.fetch("SELECT symbol, open_time FROM {s}.klines WHERE \"interval\" = '1m'")
    assert {(r["symbol"], r["open_time"]) for r in hot_now} == fresh_keys  # ingested, still hot
    assert len(after["klines"]) == len(before["klines"]) + len(fresh)
