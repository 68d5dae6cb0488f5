"""`Vault.export`, `export_table` and `tickvault export`: every format read back equals a
direct read value by value (decimals exact), over hot and cold, block by block; a failed or
cancelled export leaves no file; bad arguments are one error line."""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import json
import os
import signal
import subprocess
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
import openpyxl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.helpers import TestEnv, stop_process, wait_until
from tests.integration.test_archive import SYMBOLS, T0_MS
from tests.integration.test_cli import Result, tickvault
from tests.integration.test_query_errors import error
from tests.integration.test_query_output import cli, environ
from tests.integration.test_reads_tiers import rolled
from tickvault.errors import ColdFileError, ConfigError
from tickvault.export import pages, xlsx
from tickvault.export.writers import FORMATS
from tickvault.record_schemas import EXAMPLES
from tickvault.store import migrate, partitions
from tickvault.store.schema import TIME_TABLES
from tickvault.vault import Vault

EXPORT_HELP = "(see 'tickvault export --help')"


def read_back(path: Path, fmt: str) -> list[dict[str, Any]]:
    """The rows of an export file as dicts of what the file holds (text for csv)."""
    if fmt == "parquet":
        rows: list[dict[str, Any]] = pq.read_table(path).to_pylist()
        return rows
    if fmt == "jsonl":
        return [json.loads(line) for line in path.read_text().splitlines()]
    if fmt == "csv":
        with path.open(newline="") as f:
            return list(csv.DictReader(f))
    book = openpyxl.load_workbook(path, read_only=True)
    try:
        out = []
        for sheet in book.worksheets:
            values = list(sheet.iter_rows(values_only=True))
            out += [dict(zip(values[0], row, strict=True)) for row in values[1:]]
        return out
    finally:
        book.close()


def value(got: Any, want: Any, fmt: str) -> Any:
    """`got` (from a file) as the type of `want` (from a read), so they compare by value;
    failing when a decimal or time is not in its exact text form."""
    if want is None or fmt == "parquet":
        return None if got in ("", None) else got
    if isinstance(want, Decimal):
        assert "E" not in got and (got == "0" or not got.endswith("0") or "." not in got), got
        return Decimal(got)
    if isinstance(want, dt.datetime):
        assert got.endswith("Z"), got
        return dt.datetime.fromisoformat(got)
    if isinstance(want, bool) and fmt == "csv":
        return {"True": True, "False": False}[got]
    if isinstance(want, int) and fmt == "csv":
        return int(got)
    return got


def left(directory: Path, pattern: str) -> list[Path]:
    return sorted(directory.glob(pattern))


def assert_same(path: Path, fmt: str, want: pa.Table) -> None:
    got = read_back(path, fmt)
    expected = want.to_pylist()
    assert len(got) == len(expected)
    for g, w in zip(got, expected, strict=True):
        assert list(g) == list(w)
        assert {c: value(g[c], w[c], fmt) for c in w} == w


async def test_each_format_equals_a_direct_read_across_tiers(
    env: TestEnv, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings, _ = await rolled(env, tmp_path / "cold")  # the first 3 of 5 days cold
    monkeypatch.setattr(pages, "PAGE_ROWS", 7)  # blocks that end inside runs of one open time
    async with Vault.connect(settings) as vault:
        want = await vault.klines("okx", interval="1h", symbols=list(SYMBOLS))
        fills = await vault.fills(exchange="okx", columns=["ts", "fill_id", "price", "fee"])
        for fmt in FORMATS:
            blocks: list[tuple[int, float]] = []
            path = tmp_path / f"klines.{fmt}"
            n = await vault.export(
                "klines", path, exchange="okx", symbols=list(SYMBOLS), interval="1h",
                progress=lambda rows, done, seen=blocks: seen.append((rows, done)),
            )  # fmt: skip
            assert n == want.num_rows == 5 * 24 * len(SYMBOLS)
            assert left(tmp_path, "*.partial") == []
            assert_same(path, fmt, want)
            assert len(blocks) > 20 and blocks[-1] == (n, 1.0)
            assert [r for r, _ in blocks] == sorted(r for r, _ in blocks)
            n = await vault.export(
                "fills", tmp_path / f"f.{fmt}", exchange="okx", columns="ts,fill_id,price,fee"
            )
            assert n == fills.num_rows > 100
            assert_same(tmp_path / f"f.{fmt}", fmt, fills)
        # the other readers: orders (hot only) and every order update (hot and cold)
        orders = await vault.orders(exchange="okx")
        events = await vault._read("order_events", {}, None, None, None, None, False)
        assert await vault.export("orders", tmp_path / "o.parquet", exchange="okx") == orders.num_rows > 0
        assert await vault.export("order_events", tmp_path / "e.parquet") == events.num_rows > orders.num_rows
    assert pq.read_table(tmp_path / "o.parquet").equals(orders)
    assert pq.read_table(tmp_path / "e.parquet").equals(events)
    assert want.column("open_time")[0].as_py() == dt.datetime(2026, 1, 1, tzinfo=dt.UTC)  # cold
    assert pq.read_table(tmp_path / "klines.parquet").equals(want)  # decimal128(38, 18), timestamp[us, UTC]


async def test_cli_csv_is_what_query_prints_and_a_range_and_resample_apply(
    env: TestEnv, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    environ(env, tmp_path / "cold", monkeypatch)
    await rolled(env, tmp_path / "cold")
    monkeypatch.setattr(pages, "PAGE_ROWS", 5)
    series = ["klines", "--exchange", "okx", "--symbols", ",".join(SYMBOLS), "--interval", "4h"]
    window = ["--start", "2026-01-02T02:00:00Z", "--end", str(T0_MS + 4 * 86_400_000)]
    target = tmp_path / "out.csv"
    code, out, err = await cli(["export", *series, *window, "--output", str(target)], capsys)
    assert code == 0 and err == "", err
    code, printed, _ = await cli(["query", *series, *window, "--format", "csv"], capsys)
    assert code == 0
    lines = printed.splitlines()
    assert len(lines) == 1 + 3 * 6 * 3 - 3  # 4h candles (from 1h) of 3 days less the first
    assert target.read_text() == printed
    assert out.startswith(f"{len(lines) - 1} klines to {target} (")
    # weeks open on Mondays: the first (open) one opens before the first stored candle
    weekly = [*series[:-1], "1w"]
    code, _, _ = await cli(["export", *weekly, "--output", str(target)], capsys)
    code, printed, _ = await cli(["query", *weekly, "--format", "csv"], capsys)
    assert printed.splitlines()[1].split(",")[:4] == ["okx", "BTC-USDT", "1w", "2025-12-29T00:00:00Z"]
    assert target.read_text() == printed


async def test_bot_state_history_and_an_empty_range(env: TestEnv, tmp_path: Path) -> None:
    settings = env.settings()
    await migrate.upgrade(settings.postgres)
    async with Vault.connect(settings) as vault:
        for i in range(5):
            state = {"step": i, "price": Decimal(f"87000.{i}5")}
            await vault.save_bot_state("grid-1", state, ts=T0_MS + i * 1000)
        await vault.save_bot_state("grid-2", {"on": True}, ts=T0_MS + 2500)
        history = await vault.bot_state_history("grid-1")
        n = await vault.export("bot_state", tmp_path / "states.jsonl", bot_id="grid-1")
        both = await vault.export("bot_state", tmp_path / "all.parquet", start=T0_MS, end=T0_MS + 3000)
        empty = await vault.export("klines", tmp_path / "none.csv", exchange="okx")
        empty_xlsx = await vault.export("trades", tmp_path / "none.xlsx", columns=["ts", "price"])
    lines = [json.loads(x) for x in (tmp_path / "states.jsonl").read_text().splitlines()]
    assert n == 5 and [(r["bot_id"], json.loads(r["state"], parse_float=Decimal)) for r in lines] == [
        (s.bot_id, s.state) for s in history
    ]
    assert lines[0]["ts"] == "2026-01-01T00:00:00Z" and lines[1]["ts"] == "2026-01-01T00:00:01Z"
    assert both == 4 and pq.read_table(tmp_path / "all.parquet").column("bot_id").to_pylist() == [
        "grid-1", "grid-1", "grid-1", "grid-2"
    ]  # fmt: skip
    assert (empty, empty_xlsx) == (0, 0)
    assert (tmp_path / "none.csv").read_text().startswith("exchange,symbol,interval,open_time,")
    assert read_back(tmp_path / "none.xlsx", "xlsx") == []


async def test_export_table_writes_a_result_in_hand(env: TestEnv, tmp_path: Path) -> None:
    settings, _ = await rolled(env, tmp_path / "cold")
    async with Vault.connect(settings) as vault:
        want = await vault.klines("okx", "ETH-USDT", "1h", columns=["open_time", "close", "closed"])
        for fmt in FORMATS:
            assert await vault.export_table(want, tmp_path / f"t.{fmt}") == want.num_rows
            assert_same(tmp_path / f"t.{fmt}", fmt, want)
        reader = pa.RecordBatchReader.from_batches(want.schema, want.to_batches(max_chunksize=10))
        assert await vault.export_table(reader, tmp_path / "r.data", "jsonl") == want.num_rows
        assert_same(tmp_path / "r.data", "jsonl", want)


async def test_cancelled_or_failed_export_leaves_no_file(
    env: TestEnv, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings, _ = await rolled(env, tmp_path / "cold")
    monkeypatch.setattr(pages, "PAGE_ROWS", 5)
    for fmt in FORMATS:
        path = tmp_path / f"cut.{fmt}"
        async with Vault.connect(settings) as vault:
            first = asyncio.Event()
            task = asyncio.ensure_future(
                vault.export("klines", path, exchange="okx", progress=lambda rows, done, e=first: e.set())
            )
            await first.wait()
            # being written (an xlsx file is put together when it closes)
            assert path.with_name(f"{path.name}.partial").exists() is (fmt != "xlsx")
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
        assert left(tmp_path, "cut.*") == [], fmt
    # a cold file gone: the error names it, and neither the file nor its .partial is left
    [victim] = sorted((tmp_path / "cold").rglob("open_time_day=2026-01-02/*.parquet"))
    victim.unlink()
    async with Vault.connect(settings) as vault:
        with pytest.raises(ColdFileError, match="is missing"):
            await vault.export("klines", tmp_path / "broken.csv", exchange="okx")
    assert left(tmp_path, "broken*") == []


def spawn(env: TestEnv, *args: str) -> subprocess.Popen[bytes]:
    """`tickvault ARGS` in a process of its own, with the test's settings."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("TICKVAULT_")}
    return subprocess.Popen(
        [sys.executable, "-m", "tickvault", *args],
        env=base | env.environ(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip


async def test_ctrl_c_leaves_no_file(env: TestEnv, tmp_path: Path) -> None:
    """SIGINT while `tickvault export` writes: exit 130, neither FILE nor FILE.partial."""
    settings = env.settings()
    await migrate.upgrade(settings.postgres)
    days = 200
    first = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)
    conn = await asyncpg.connect(env.dsn)
    try:
        pg = settings.postgres
        parts = await partitions.detect(conn, env.schema, pg.partition_interval_days, pg.partitions_ahead)
        await parts.ensure(conn, TIME_TABLES[0], {first + dt.timedelta(days=d) for d in range(days)})
        await conn.execute(
            f"INSERT INTO {env.schema}.klines (exchange, symbol, interval, open_time, close_time, open, "  # noqa: S608
            "high, low, close, volume, closed) SELECT 'binance', 'BTCUSDT', '1m', t, "
            "t + interval '59.999 s', 87000.5, 87100.25, 86900, 87050.75, 12.5, true "
            "FROM generate_series($1::timestamptz, $2::timestamptz, interval '1 minute') AS t",
            first, first + dt.timedelta(days=days, minutes=-1),
        )  # fmt: skip
    finally:
        await conn.close()
    target = tmp_path / "cut.jsonl"
    proc = spawn(env, "export", "klines", "--exchange", "binance", "-o", str(target))
    try:
        partial = target.with_name("cut.jsonl.partial")
        await wait_until(lambda: asyncio.to_thread(partial.exists), interval_s=0.01, what="cut.jsonl.partial")
    finally:
        code = stop_process(proc, signal.SIGINT)
    assert code == 130  # stopped while writing 288,000 rows
    assert left(tmp_path, "cut*") == []


def test_excel_rolls_over_to_new_sheets_and_needs_its_extra(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tickvault.export.writers import write_all

    table = pa.table({"n": list(range(10)), "d": pa.array([Decimal("1.50")] * 10, pa.decimal128(38, 18))})
    monkeypatch.setattr(xlsx, "SHEET_ROWS", 4)  # a header and 3 rows per sheet
    assert write_all([table], tmp_path / "t.xlsx", None) == 10
    book = openpyxl.load_workbook(tmp_path / "t.xlsx", read_only=True)
    try:
        sheets = {s.title: list(s.iter_rows(values_only=True)) for s in book.worksheets}
    finally:
        book.close()
    assert list(sheets) == ["rows", "rows 2", "rows 3", "rows 4"]
    assert all(rows[0] == ("n", "d") for rows in sheets.values())
    assert [r for rows in sheets.values() for r in rows[1:]] == [(i, "1.5") for i in range(10)]
    monkeypatch.setitem(sys.modules, "xlsxwriter", None)  # as if the extra were not installed
    with pytest.raises(
        ConfigError, match=r"^format xlsx needs the excel extra: pip install 'tickvault\[excel\]'$"
    ):
        write_all([table], tmp_path / "u.xlsx", None)
    assert sorted(tmp_path.glob("u.*")) == []


@pytest.mark.parametrize(
    ("args", "code", "line"),
    [
        (("export", "klines", "-o", "x.xml", "--format", "xml"), 2,
         "argument --format: invalid choice: 'xml' (choose from 'csv', 'jsonl', 'parquet', 'xlsx') "
         f"{EXPORT_HELP}"),
        (("export", "candles", "-o", "x.csv"), 2,
         "argument TABLE: invalid choice: 'candles' (choose from 'klines', 'trades', 'fills', 'orders', "
         f"'order_events', 'balances', 'signals', 'bot_state') {EXPORT_HELP}"),
        (("export", "klines"), 2, f"the following arguments are required: --output/-o {EXPORT_HELP}"),
        (("export", "klines", "-o", "x.csv", "--bot-id", "b"), 2,
         f"--bot-id does not apply to klines {EXPORT_HELP}"),
        (("export", "fills", "-o", "x.csv", "--start", "soon"), 2,
         f"argument --start: 'soon': not an ISO-8601 timestamp {EXPORT_HELP}"),
        (("export", "fills", "-o", "x.csv", "--start", str(T0_MS), "--end", str(T0_MS)), 1,
         "end 2026-01-01T00:00:00Z is not after start 2026-01-01T00:00:00Z"),
        (("export", "fills", "-o", "x.txt"), 1,
         "cannot tell the format of x.txt from its suffix; give one of csv, jsonl, parquet, xlsx"),
        (("export", "fills", "-o", "/nonexistent/x.csv"), 1,
         "cannot write /nonexistent/x.csv: No such file or directory"),
    ],
)  # fmt: skip
async def test_bad_arguments_are_one_line(env: TestEnv, args: tuple[str, ...], code: int, line: str) -> None:
    await migrate.upgrade(env.settings().postgres)
    result: Result = await tickvault(env, *args)
    prefix = "tickvault: error: "
    assert error(result, code) == prefix + line
    assert left(Path(), "x.*") == []


async def test_orders_updated_during_an_export_are_written_once(
    env: TestEnv, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An order's row moves in time when it is updated: read in windows, an order written in
    the first block and then updated to a later time was written again from a later window."""
    settings = env.settings()
    await migrate.upgrade(settings.postgres)
    monkeypatch.setattr(pages, "PAGE_ROWS", 5)  # windows of a few orders, as a big table has
    t0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    orders = [
        EXAMPLES["order"] | {"order_id": f"o{i:03}", "client_order_id": f"c{i:03}",
                             "updated_at": (t0 + dt.timedelta(minutes=i)).isoformat()}
        for i in range(120)
    ]  # fmt: skip
    moved: list[asyncio.Task[str]] = []

    async def move_first_order() -> str:  # updated now: its row goes to the end of the range
        conn = await asyncpg.connect(env.dsn)
        try:
            later = t0 + dt.timedelta(minutes=118, seconds=30)
            sql = f"UPDATE {env.schema}.orders SET updated_at = $1 WHERE order_id = 'o000'"  # noqa: S608
            return str(await conn.execute(sql, later))
        finally:
            await conn.close()

    def progress(rows: int, done: float) -> None:
        if not moved:
            moved.append(asyncio.get_running_loop().create_task(move_first_order()))

    async with Vault.connect(settings) as vault:
        await vault.save_orders(orders)
        n = await vault.export("orders", tmp_path / "orders.csv", progress=progress)
    assert await moved[0] == "UPDATE 1"
    ids = [r["order_id"] for r in read_back(tmp_path / "orders.csv", "csv")]
    assert n == len(ids) == 120 and sorted(ids) == [f"o{i:03}" for i in range(120)]


async def test_unwritable_output_is_one_line(env: TestEnv, tmp_path: Path) -> None:
    """A file in the way of the directory, a directory in the way of the final rename, a
    full disk (the partial file is /dev/full): one error line, exit 1, nothing left."""
    await migrate.upgrade(env.settings().postgres)
    blocker = tmp_path / "blocker"
    blocker.write_text("")
    (tmp_path / "dir.csv").mkdir()
    (tmp_path / "full.csv.partial").symlink_to("/dev/full")
    prefix = "tickvault: error: cannot write "
    for target, reason in (
        (blocker / "x.csv", "Not a directory"),
        (
            blocker / "x.parquet",
            f"Failed to open local file '{blocker}/x.parquet.partial'. Detail: [errno 20] Not a directory",
        ),
        (tmp_path / "dir.csv", "Is a directory"),
        (tmp_path / "full.csv", "No space left on device"),
    ):
        result: Result = await tickvault(env, "export", "fills", "-o", str(target))
        assert error(result, 1) == f"{prefix}{target}: {reason}"
    assert sorted(p.name for p in os.scandir(tmp_path)) == ["blocker", "dir.csv"]
    assert list(os.scandir(tmp_path / "dir.csv")) == []
