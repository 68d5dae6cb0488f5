"""`Vault.missing_ranges` and `tickvault gaps` over hot and cold: the holes of a kline series,
wherever its candles live."""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path

import pytest

from tests.helpers import TestEnv
from tests.integration.test_archive import T0_MS, archive_settings, kline, roll, write
from tickvault.cli import main
from tickvault.errors import ConfigError
from tickvault.reads.gaps import Gap
from tickvault.store import Store, migrate
from tickvault.vault import Vault

HOUR = 3_600_000
DAY = 24 * HOUR
UTC0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
# 5 days of 1h candles, missing 3 hours of day 2 (rolled cold) and 1 hour of day 4 (hot)
MISSING = {DAY + 10 * HOUR, DAY + 11 * HOUR, DAY + 12 * HOUR, 3 * DAY + 5 * HOUR}


def at(offset_ms: int) -> dt.datetime:
    return UTC0 + dt.timedelta(milliseconds=offset_ms)


@pytest.fixture
async def series(env: TestEnv, tmp_path: Path) -> TestEnv:
    settings = archive_settings(env, tmp_path / "cold")
    await migrate.upgrade(settings.postgres)
    candles = [kline("BTC-USDT", T0_MS + h * HOUR, "150") for h in range(5 * 24) if h * HOUR not in MISSING]
    async with Store(settings.postgres, writer=True) as store:
        await write(store, "kline", candles)
    assert {o.status for o in await roll(settings, tables=["klines"])} == {"rolled"}  # days 1-3 cold
    return env


async def test_missing_ranges_spans_hot_and_cold(series: TestEnv, tmp_path: Path) -> None:
    settings = archive_settings(series, tmp_path / "cold")
    async with Vault.connect(settings) as vault:
        found = await vault.missing_ranges("okx", "BTC-USDT", "1h", T0_MS - 2 * HOUR, T0_MS + 6 * DAY)
        inside = await vault.missing_ranges("okx", "BTC-USDT", "1h", T0_MS + DAY + 11 * HOUR, T0_MS + 2 * DAY)
        none = await vault.missing_ranges("okx", "BTC-USDT", "1h", T0_MS, T0_MS + DAY)
        unknown = await vault.missing_ranges("okx", "XRP-USDT", "1h", T0_MS, T0_MS + DAY)
        with pytest.raises(ConfigError, match="is not after start"):
            await vault.missing_ranges("okx", "BTC-USDT", "1h", T0_MS, T0_MS)
    assert found == [
        Gap(at(-2 * HOUR), at(0), 2),
        Gap(at(DAY + 10 * HOUR), at(DAY + 13 * HOUR), 3),  # cold
        Gap(at(3 * DAY + 5 * HOUR), at(3 * DAY + 6 * HOUR), 1),  # hot
        Gap(at(5 * DAY), at(6 * DAY), 24),
    ]
    assert inside == [Gap(at(DAY + 11 * HOUR), at(DAY + 13 * HOUR), 2)]
    assert none == []
    assert unknown == [Gap(at(0), at(DAY), 24)]


async def test_gaps_cli_prints_each_gap(
    series: TestEnv, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    sections = {
        "postgres": {"timescale": "off", "partition_interval_days": 1, "partitions_ahead": 0},
        "archive": {"root": str(tmp_path / "cold")},
    }
    for name, value in series.environ(**sections).items():
        monkeypatch.setenv(name, value)
    args = ["gaps", "--exchange", "okx", "--symbol", "BTC-USDT", "--interval", "1h"]
    window = ["--start", "2026-01-01T00:00:00Z", "--end", "2026-01-05T00:00:00Z"]
    assert await asyncio.to_thread(main, [*args, *window, "--format", "csv"]) == 0
    out = capsys.readouterr()
    assert out.out.splitlines() == [
        "start,end,missing",
        "2026-01-02T10:00:00Z,2026-01-02T13:00:00Z,3",
        "2026-01-04T05:00:00Z,2026-01-04T06:00:00Z,1",
    ]
    assert out.err.strip() == "2 gaps, 4 missing klines"
    typo = ["gaps", "--exchange", "okx", "--symbol", "BTC-USTD", "--interval", "1h", *window]
    assert await asyncio.to_thread(main, typo) == 0
    err = capsys.readouterr().err
    assert "1 gap, 96 missing klines" in err
    assert "nothing is stored for okx BTC-USTD 1h at all; close matches: okx BTC-USDT 1h" in err
