"""`tickvault import`: Binance kline dumps, native JSON Lines and cold-tier Parquet loaded
straight into the store through the daemon's writers; re-imports add nothing; `--only-missing`
loads only the holes; bad lines go to dead letters with file and line."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import re
import shutil
import zipfile
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from tests.binance_dumps import Dump, write_dump, year_of_dumps
from tests.helpers import TestEnv
from tests.integration.test_archive import T0_MS, archive_settings, fill, kline, roll, write
from tickvault.cli import main
from tickvault.record_schemas import EXAMPLES
from tickvault.store import Store, migrate

COUNTS = re.compile(
    r"^(\d+) files?, (\d+) rows? read: (\d+) stored, (\d+) unchanged, (\d+) already present, "
    r"(\d+) dead-lettered \(.* rows/s\)$"
)


@pytest.fixture(scope="module")
def year(tmp_path_factory: pytest.TempPathFactory) -> list[Dump]:
    return year_of_dumps(tmp_path_factory.mktemp("binance"), "BTCUSDT", 2024)


async def run_import(
    env: TestEnv, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *args: str
) -> tuple[int, dict[str, int], str]:
    """`tickvault import ARGS` in process; (exit code, the counts, stderr)."""
    for name, value in env.environ().items():
        monkeypatch.setenv(name, value)
    code = await asyncio.to_thread(main, ["import", "--quiet", *args])
    out = capsys.readouterr()
    lines = out.out.strip().splitlines()
    match = COUNTS.match(lines[-1]) if lines else None
    names = ("files", "read", "stored", "unchanged", "present", "dead")
    return code, dict(zip(names, map(int, match.groups()), strict=True)) if match else {}, out.err


async def test_a_year_of_binance_klines_twice_gives_each_row_once_and_only_missing_loads_a_week(
    env: TestEnv, year: list[Dump], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    await migrate.upgrade(env.settings().postgres)
    folder = str(year[0].path.parent)
    total = sum(d.candles for d in year)
    assert total == 366 * 1440

    code, counts, err = await run_import(env, monkeypatch, capsys, folder)
    assert code == 0, err
    assert counts == {"files": 12, "read": total, "stored": total, "unchanged": 0, "present": 0, "dead": 0}
    stored = await env.fetch(
        "SELECT count(*) AS n, count(DISTINCT open_time) AS times, min(open_time) AS first, "
        "max(close_time) AS last, bool_and(exchange = 'binance' AND symbol = 'BTCUSDT' "
        "AND \"interval\" = '1m' AND closed) AS series FROM {s}.klines"
    )
    assert dict(stored[0]) == {
        "n": total, "times": total, "first": dt.datetime(2024, 1, 1, tzinfo=dt.UTC),
        # December's dump is in microseconds: its last candle closes at 23:59:59.999999
        "last": dt.datetime(2024, 12, 31, 23, 59, 59, 999_999, tzinfo=dt.UTC), "series": True,
    }  # fmt: skip
    before = await _klines(env)
    assert before[0][3:8] == _first_row(year[0])  # the file's values, exactly (scale kept)

    code, counts, _ = await run_import(env, monkeypatch, capsys, folder)
    assert code == 0
    assert counts == {"files": 12, "read": total, "stored": 0, "unchanged": total, "present": 0, "dead": 0}
    assert await _klines(env) == before

    week = (dt.datetime(2024, 7, 29, tzinfo=dt.UTC), dt.datetime(2024, 8, 5, tzinfo=dt.UTC))  # July/August
    await env.fetch("DELETE FROM {s}.klines WHERE open_time >= $1 AND open_time < $2", *week)
    week_rows = 7 * 1440
    assert await env.count("klines") == total - week_rows
    code, counts, _ = await run_import(env, monkeypatch, capsys, "--only-missing", folder)
    assert code == 0
    assert counts == {
        "files": 12, "read": total, "stored": week_rows, "unchanged": 0, "present": total - week_rows,
        "dead": 0,
    }  # fmt: skip
    assert await _klines(env) == before


def _first_row(dump: Dump) -> tuple[str, ...]:
    with zipfile.ZipFile(dump.path) as archive:
        text = archive.read(archive.namelist()[0]).decode()
    first = text.splitlines()[1].split(",")  # after the header
    return tuple(first[1:6])


async def _klines(env: TestEnv) -> list[tuple[Any, ...]]:
    rows = await env.fetch(
        'SELECT exchange, symbol, "interval", open, high, low, close, volume, open_time, close_time, '
        "quote_volume, trades, closed, version_ms, version_seq FROM {s}.klines ORDER BY open_time"
    )
    return [(*r[:3], *(str(v) for v in r[3:8]), *r[8:]) for r in rows]


async def test_bad_rows_go_to_dead_letters_with_file_and_line_and_the_rest_is_stored(
    env: TestEnv, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    await migrate.upgrade(env.settings().postgres)
    dump = write_dump(tmp_path, "ETHUSDT", dt.date(2024, 2, 1), zipped=False, header=True, micros=True)
    lines = dump.path.read_bytes().splitlines()
    good = lines[1].decode().split(",")
    bad = {
        3: ",".join([*good[:2], "1.0", "2.0", *good[4:]]),  # high below low
        5: ",".join([good[0], "abc", *good[2:]]),  # not a number
        8: ",".join(good[:5]),  # too few columns
        13: ",".join([good[0] + "000", *good[1:]]),  # nanoseconds
    }
    for number, text in bad.items():
        lines[number - 1] = text.encode()
    lines[20] = lines[20].replace(b",0.0,", b",\xff,")  # line 21: not UTF-8
    dump.path.write_bytes(b"\n".join(lines) + b"\n")

    code, counts, err = await run_import(env, monkeypatch, capsys, str(dump.path))
    assert code == 0, err
    assert counts["dead"] == 5 and counts["stored"] == dump.candles - 5 and counts["read"] == dump.candles
    letters = await env.fetch(
        "SELECT source, stream, entry_id, kind, category, reason, payload FROM {s}.dead_letters ORDER BY id"
    )
    assert [(r["source"], r["stream"], r["entry_id"]) for r in letters] == [
        ("import", "ETHUSDT-1m-2024-02.csv", str(n)) for n in (3, 5, 8, 13, 21)
    ]
    reasons = [r["reason"] for r in letters]
    assert "high < low" in reasons[0]
    assert "open: not a decimal number" in reasons[1]
    assert "5 columns" in reasons[2]
    assert "open_time: looks like epoch nanoseconds" in reasons[3]
    assert "not valid UTF-8" in reasons[4] and letters[4]["category"] == "not_utf8"
    assert letters[0]["payload"] == bad[3].encode() and letters[0]["kind"] == "kline"
    assert await env.count("klines") == dump.candles - 5

    code, counts, _ = await run_import(env, monkeypatch, capsys, str(dump.path))  # again: none doubled
    assert code == 0 and counts["dead"] == 5 and counts["stored"] == 0
    assert len(await env.fetch("SELECT id FROM {s}.dead_letters")) == 5


async def test_a_file_that_cannot_be_read_fails_with_one_line(
    env: TestEnv, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    await migrate.upgrade(env.settings().postgres)
    broken = tmp_path / "BTCUSDT-1m-2024-01.zip"
    broken.write_bytes(b"PK\x03\x04 not really a zip")
    code, _, err = await run_import(env, monkeypatch, capsys, str(broken))
    assert code == 1
    assert err.strip().splitlines() == [f"tickvault: error: {broken}: cannot be read: File is not a zip file"]
    code, _, err = await run_import(env, monkeypatch, capsys, str(tmp_path / "trades.csv"))
    assert code == 1 and "no such file or directory" in err
    unnamed = tmp_path / "klines.csv"
    unnamed.write_text("1704067200000,1,1,1,1,1,1704067259999,1,1,1,1,0\n")
    code, _, err = await run_import(env, monkeypatch, capsys, str(unnamed))
    assert code == 1 and "not named as Binance's dumps are" in err
    code, counts, err = await run_import(
        env, monkeypatch, capsys, "--format", "binance-klines", "--symbol", "BTCUSDT", "--interval", "1m",
        str(unnamed),
    )  # fmt: skip
    assert code == 0 and counts["stored"] == 1, err


async def test_native_json_lines_of_every_kind(
    env: TestEnv, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    await migrate.upgrade(env.settings().postgres)
    mixed = tmp_path / "mixed.jsonl"
    lines = [json.dumps({"kind": kind, **message}) for kind, message in EXAMPLES.items()]
    lines.insert(2, '{"kind": "kline", "exchange": "binance"}')  # line 3: invalid
    lines.append("not json")  # the last line
    mixed.write_text("\n".join(lines) + "\n")
    fills = tmp_path / "fills.ndjson"  # no "kind": --kind fill
    fills.write_text("".join(json.dumps(fill(i, T0_MS + i * 1000)) + "\n" for i in range(25)))

    code, counts, err = await run_import(env, monkeypatch, capsys, "--kind", "fill", str(mixed), str(fills))
    assert code == 0, err
    kinds = len(EXAMPLES)
    assert counts == {
        "files": 2, "read": kinds + 2 + 25, "stored": kinds + 25, "unchanged": 0, "present": 0, "dead": 2,
    }  # fmt: skip
    for table in ("klines", "orders", "order_events", "bot_state", "balances", "signals"):
        assert await env.count(table) == 1, table
    assert await env.count("fills") == 26
    letters = await env.fetch("SELECT stream, entry_id, kind, category FROM {s}.dead_letters ORDER BY id")
    assert [tuple(r) for r in letters] == [
        ("mixed.jsonl", "3", "kline", "invalid"),
        ("mixed.jsonl", str(kinds + 2), "fill", "invalid_json"),  # --kind fill
    ]
    order = await env.fetch("SELECT status, filled_quantity::text, version_ms, version_seq FROM {s}.orders")
    assert tuple(order[0]) == ("partially_filled", "0.020", 0, 2)  # the line number is the version

    code, counts, _ = await run_import(env, monkeypatch, capsys, "--kind", "fill", str(mixed), str(fills))
    assert code == 0 and counts["stored"] == 0 and counts["unchanged"] == kinds + 25


async def test_parquet_of_the_cold_tier_imports_into_a_fresh_schema_as_it_was(
    env: TestEnv, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = archive_settings(env, tmp_path / "cold")
    await migrate.upgrade(settings.postgres)
    klines = [
        kline(s, T0_MS + h * 3_600_000, f"{150 + h % 7}.{h}") for s in ("A-B", "C-D") for h in range(72)
    ]
    fills = [fill(i, T0_MS + i * 3_000_000) for i in range(70)]
    async with Store(settings.postgres, writer=True) as store:
        await write(store, "kline", klines, version_ms=5)
        await write(store, "fill", fills, version_ms=7)
    before = {name: await _rows(env, name) for name in ("klines", "fills")}
    assert {o.status for o in await roll(settings, tables=["klines", "fills"])} == {"rolled"}
    assert await env.count("klines") < len(klines)  # some days are cold now

    cold = tmp_path / "cold" / env.schema
    files = sorted(cold.rglob("*.parquet"))
    assert files and all("/data/" in str(f) for f in files)
    fresh_env = TestEnv(
        dsn=env.dsn, schema=env.schema + "_x", tag=env.tag, redis=env.redis, redis_url=env.redis_url
    )
    try:
        await migrate.upgrade(fresh_env.settings().postgres)
        copy = tmp_path / "copy"  # the data files alone, away from the table's metadata
        for f in files:
            target = copy / f.relative_to(cold)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(f, target)
        code, counts, err = await run_import(
            fresh_env, monkeypatch, capsys, str(copy / "klines" / "data"), str(copy / "fills" / "data")
        )
        assert code == 0, err
        cold_klines = len(klines) - await env.count("klines")
        cold_fills = len(fills) - await env.count("fills")
        assert counts["stored"] == cold_klines + cold_fills and counts["dead"] == 0
        for name in ("klines", "fills"):
            rows = await _rows(fresh_env, name)
            assert rows and set(rows) <= set(before[name]), name
            assert len(rows) == (cold_klines if name == "klines" else cold_fills)
    finally:
        await fresh_env.fetch("DROP SCHEMA IF EXISTS {s} CASCADE")
        await fresh_env.close()


async def _rows(env: TestEnv, table: str) -> list[tuple[Any, ...]]:
    """Every column but ingested_at, decimals normalised (a cold row's scale is 18)."""
    rows = await env.fetch(f"SELECT * FROM {{s}}.{table}")  # noqa: S608
    return [
        tuple(v.normalize() if isinstance(v, Decimal) else v for k, v in r.items() if k != "ingested_at")
        for r in rows
    ]
