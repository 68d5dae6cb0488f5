"""`tickvault query` over both tiers: several symbols, chosen columns, Parquet and files, and
output written block by block (pages by time, none skipped or repeated)."""

from __future__ import annotations

import asyncio
import csv
import io
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tests.helpers import TestEnv
from tests.integration.test_archive import SYMBOLS, T0_MS
from tests.integration.test_reads_tiers import rolled
from tickvault import query
from tickvault.cli import main
from tickvault.vault import Vault

KLINES = ["query", "klines", "--exchange", "okx", "--interval", "1h"]


def environ(env: TestEnv, root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The CLI's settings as TICKVAULT_* variables."""
    sections = {
        "postgres": {"timescale": "off", "partition_interval_days": 1, "partitions_ahead": 0},
        "archive": {"root": str(root)},
    }
    for name, value in env.environ(**sections).items():
        monkeypatch.setenv(name, value)


async def cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = await asyncio.to_thread(main, args)
    out = capsys.readouterr()
    return code, out.out, out.err


async def test_symbols_columns_and_pages_across_tiers(
    env: TestEnv, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    environ(env, tmp_path / "cold", monkeypatch)
    settings, _ = await rolled(env, tmp_path / "cold")
    async with Vault.connect(settings) as vault:
        want = await vault.klines(
            "okx", interval="1h", symbols=list(SYMBOLS), columns=["open_time", "symbol", "close"]
        )
    args = [*KLINES, "--symbols", ",".join(SYMBOLS), "--columns", "open_time,symbol,close", "--format", "csv"]
    code, whole, err = await cli(args, capsys)
    assert code == 0 and err.strip() == f"{want.num_rows} klines"
    rows = list(csv.reader(io.StringIO(whole)))
    assert rows[0] == ["open_time", "symbol", "close"] and len(rows) == want.num_rows + 1
    assert [r[1] for r in rows[1:4]] == sorted(SYMBOLS)  # time order, then key
    monkeypatch.setattr(query, "PAGE_ROWS", 7)  # pages end inside runs of one open time
    code, paged, _ = await cli(args, capsys)
    assert code == 0 and paged == whole
    code, limited, _ = await cli([*args, "--limit", "20", "--start", str(T0_MS)], capsys)
    assert limited.splitlines() == whole.splitlines()[:21]


async def test_parquet_file_keeps_exact_types_and_a_failure_leaves_no_file(
    env: TestEnv, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    environ(env, tmp_path / "cold", monkeypatch)
    settings, _ = await rolled(env, tmp_path / "cold")
    target = tmp_path / "out.parquet"
    monkeypatch.setattr(query, "PAGE_ROWS", 50)
    code, out, err = await cli(
        [*KLINES, "--symbol", "BTC-USDT", "--format", "parquet", "--output", str(target)], capsys
    )
    assert code == 0 and out == "" and err.strip() == f"{5 * 24} klines to {target}"
    async with Vault.connect(settings) as vault:
        want = await vault.klines("okx", "BTC-USDT", "1h")
    assert pq.read_table(target).equals(want)  # decimal128(38, 18), timestamp[us, UTC]

    # a cold file gone: one error line, exit 1, and neither the file nor its .partial
    [victim] = sorted((tmp_path / "cold").rglob("open_time_day=2026-01-02/*.parquet"))
    victim.unlink()
    broken = tmp_path / "broken.csv"
    code, _, err = await cli(
        [*KLINES, "--symbol", "BTC-USDT", "--format", "csv", "--output", str(broken)], capsys
    )
    assert code == 1 and err.startswith("tickvault: error: cold data file ") and "is missing" in err
    assert len(err.strip().splitlines()) == 1
    assert sorted(p.name for p in await asyncio.to_thread(lambda: list(tmp_path.iterdir()))) == [
        "cold", "out.parquet"
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--symbol", "BTC-USDT", "--format", "parquet"], "--format parquet needs --output FILE"),
        (["--symbol", "BTC-USDT", "--symbols", "ETH-USDT"], "give --symbol or --symbols, not both"),
        (["--symbols", ","], "argument --symbols: expected a comma-separated list"),
    ],
)
async def test_query_usage_errors(
    env: TestEnv,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    message: str,
) -> None:
    environ(env, Path("unused"), monkeypatch)
    with pytest.raises(SystemExit) as exited:
        await asyncio.to_thread(main, [*KLINES, *args])
    assert exited.value.code == 2
    assert message in capsys.readouterr().err


async def test_unknown_column_and_unwritable_output_are_one_line(
    env: TestEnv, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    environ(env, tmp_path / "cold", monkeypatch)
    await rolled(env, tmp_path / "cold")
    cases: list[tuple[list[str], str]] = [
        (
            ["--columns", "close,nope"],
            "tickvault: error: unknown column 'nope' for klines; columns: exchange",
        ),
        (
            ["--output", str(tmp_path / "no" / "such" / "dir.csv")],
            f"tickvault: error: cannot write {tmp_path}",
        ),
    ]
    for extra, start in cases:
        code, out, err = await cli([*KLINES, "--symbol", "BTC-USDT", *extra], capsys)
        assert (code, out) == (1, "") and err.startswith(start) and len(err.strip().splitlines()) == 1, err
    assert await asyncio.to_thread(lambda: list(tmp_path.glob("*.partial"))) == []
