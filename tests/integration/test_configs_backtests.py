"""Strategy configs and backtest runs against the real PostgreSQL, on a local root and on S3:
versions, immutability, checksums, diffs; runs with exact-decimal trades and equity as
Parquet, artifacts, lineage, filters and comparisons; bad input."""

from __future__ import annotations

import asyncio
import datetime as dt
import re
from decimal import Decimal
from pathlib import Path

import asyncpg
import pyarrow as pa
import pytest

from tests.helpers import TestEnv
from tests.integration.test_models import blob_files, flip_byte, repo  # noqa: F401 - the fixture
from tickvault.errors import BlobTooLarge, ConfigError, CorruptBlob, NotFound, VersionConflict
from tickvault.repository.backtests import DataRange
from tickvault.repository.configs import Change
from tickvault.repository.values import canonical_json
from tickvault.settings import Settings
from tickvault.vault import Vault

GRID = {
    "symbol": "BTCUSDT", "levels": [86500, 87000, 87500],
    "risk": {"stop_loss": Decimal("0.015"), "max_position": 0.02, "trailing": True}, "notes": None,
}  # fmt: skip
T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


async def test_configs_are_versioned_immutable_and_diffed(repo: Settings) -> None:  # noqa: F811
    async with Vault.connect(repo) as v:
        one = await v.save_strategy_config("grid", GRID)
        assert (one.version, one.document["risk"]["max_position"]) == (1, Decimal("0.02"))
        assert (
            await v.save_strategy_config("grid", dict(reversed(GRID.items()))) == one
        )  # equal: no new version
        changed = {**GRID, "levels": [86500, 87000], "risk": {**GRID["risk"], "stop_loss": "0.02"}, "fee": 1}
        del changed["notes"]
        two = await v.save_strategy_config("grid", changed)
        assert two.version == 2 and (await v.load_strategy_config("grid")).version == 2
        assert (await v.load_strategy_config("grid", 1)).document == one.document
        assert await v.save_strategy_config("grid", GRID, 5) == await v.load_strategy_config("grid", 5)
        assert (await v.save_strategy_config("grid", changed)).version == 6  # after the latest
        with pytest.raises(
            VersionConflict, match="config grid version 1 is already stored with another document"
        ):
            await v.save_strategy_config("grid", changed, 1)
        assert await v.diff_strategy_configs("grid", 1, 2) == [
            Change("/fee", "added", None, 1),
            Change("/levels/2", "removed", 87500, None),
            Change("/notes", "removed", None, None),
            Change("/risk/stop_loss", "changed", Decimal("0.015"), "0.02"),
        ]
        assert await v.diff_strategy_configs("grid", 1, 5) == []
        assert [(c.name, c.version) for c in await v.strategy_configs()] == [
            ("grid", 6), ("grid", 5), ("grid", 2), ("grid", 1)
        ]  # fmt: skip


async def test_a_changed_config_document_is_refused(repo: Settings, env: TestEnv) -> None:  # noqa: F811
    async with Vault.connect(repo) as v:
        await v.save_strategy_config("grid", GRID)
        conn = await asyncpg.connect(env.dsn)
        try:
            await conn.execute(
                f"UPDATE {env.schema}.strategy_configs SET document = replace(document, '87000', '87001')"  # noqa: S608
            )
        finally:
            await conn.close()
        with pytest.raises(CorruptBlob, match="config grid version 1 is corrupt: sha256"):
            await v.load_strategy_config("grid")


async def test_bad_configs_are_refused(repo: Settings, env: TestEnv, tmp_path: Path) -> None:  # noqa: F811
    async with Vault.connect(repo) as v:
        with pytest.raises(ConfigError, match=r"config.risk.stop: non-finite number nan"):
            await v.save_strategy_config("grid", {"risk": {"stop": float("nan")}})
        with pytest.raises(ConfigError, match="config must be a JSON object"):
            await v.save_strategy_config("grid", [1, 2])  # type: ignore[arg-type]
        for huge in ("1E+999999999", "-1.5E-999999999"):  # refused before being written out
            with pytest.raises(ConfigError, match=re.escape(f"config.x: number {huge} is out of range")):
                await v.save_strategy_config("grid", {"x": Decimal(huge)})
        assert canonical_json({"x": Decimal("-1E+1000"), "y": Decimal("1E-1000")}, "c") == (
            '{"x":-1' + "0" * 1000 + ',"y":0.' + "0" * 999 + "1}"
        )
        with pytest.raises(ConfigError, match="set is not a JSON value"):
            await v.save_strategy_config("grid", {"a": {1, 2}})
        with pytest.raises(ConfigError, match="invalid config version 0"):
            await v.save_strategy_config("grid", GRID, 0)
        with pytest.raises(NotFound, match="no config named grid"):
            await v.load_strategy_config("grid")
        await v.save_strategy_config("grid", GRID)
        with pytest.raises(NotFound, match="no version 3 of config grid; stored versions: 1"):
            await v.diff_strategy_configs("grid", 1, 3)
    small = env.settings(archive={"root": str(tmp_path)}, repository={"max_config_bytes": 64})
    async with Vault.connect(small) as v:
        with pytest.raises(BlobTooLarge, match="exceeds the 64-byte limit"):
            await v.save_strategy_config("big", {"text": "x" * 64})


def trades_table() -> pa.Table:
    price = pa.decimal128(38, 18)
    return pa.table({
        "ts": pa.array([T0, T0 + dt.timedelta(minutes=5)], pa.timestamp("us", tz="UTC")),
        "side": ["buy", "sell"],
        "price": pa.array([Decimal("87012.50"), Decimal("87250.000000000000000001")], price),
        "quantity": pa.array([Decimal("0.015"), Decimal("0.015")], price),
    })  # fmt: skip


async def saved_runs(v: Vault, tmp_path: Path) -> None:
    await v.save_model("signal", "3", b"weights", framework="onnx")
    await v.save_strategy_config("grid", GRID)
    report = tmp_path / "report.html"
    report.write_text("<h1>grid</h1>")
    data = {
        "exchange": "binance",
        "symbols": ["BTCUSDT"],
        "interval": "1m",
        "start": T0,
        "end": "2026-02-01T00:00:00Z",
    }
    equity = [
        {"ts": T0, "equity": Decimal("10000")},
        {"ts": T0 + dt.timedelta(days=1), "equity": Decimal("10012.5")},
    ]
    await v.save_backtest(
        "grid", run_id="run-a", metrics={"sharpe": Decimal("1.91"), "trades": 2}, metadata={"seed": 7},
        trades=trades_table(), equity=equity, artifacts={"equity.png": b"\x89PNG...", "report.html": report},
        model=("signal", "3"), config=("grid", 1), data=data,
    )  # fmt: skip
    await v.save_backtest("grid", run_id="run-b", metrics={"sharpe": 1.2, "max_drawdown": 0.08})
    await v.save_backtest("dca", run_id="run-c", metrics={"sharpe": 0.4}, model=("signal", "3"))


async def test_backtests_round_trip_with_lineage_and_exact_decimals(repo: Settings, tmp_path: Path) -> None:  # noqa: F811
    async with Vault.connect(repo) as v:
        await saved_runs(v, tmp_path)
        result = await v.load_backtest("run-a")
        run = result.run
        assert result.trades is not None and result.trades.equals(trades_table())
        assert result.equity is not None and result.equity.column("equity").to_pylist() == [
            Decimal("10000"), Decimal("10012.5")
        ]  # fmt: skip
        assert run.model == ("signal", "3") and run.model_sha256 == (await v.model("signal", "3")).sha256
        assert (
            run.config == ("grid", 1) and run.config_sha256 == (await v.load_strategy_config("grid")).sha256
        )
        assert run.data == DataRange(
            "binance", ("BTCUSDT",), "1m", T0, dt.datetime(2026, 2, 1, tzinfo=dt.UTC)
        )
        assert (run.metrics, run.metadata, run.trades_rows, run.equity_rows) == (
            {"sharpe": Decimal("1.91"), "trades": 2}, {"seed": 7}, 2, 2
        )  # fmt: skip
        assert [a.name for a in run.artifacts] == ["equity.png", "report.html"]
        assert await v.load_backtest_artifact("run-a", "report.html") == b"<h1>grid</h1>"
        assert (await v.load_backtest("run-b")).trades is None
        assert [r.run_id for r in await v.backtests("grid")] == ["run-b", "run-a"]
        assert [r.run_id for r in await v.backtests(model="signal")] == ["run-c", "run-a"]
        assert [r.run_id for r in await v.backtests(model=("signal", "3"), config=("grid", 1))] == ["run-a"]
        assert await v.backtests(since=dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)) == []
        assert len(await v.backtests(until=dt.datetime.now(dt.UTC) + dt.timedelta(hours=1), limit=2)) == 2
        assert await v.compare_backtests(["run-a", "run-b"]) == [
            {"metric": "max_drawdown", "run-a": None, "run-b": Decimal("0.08")},
            {"metric": "sharpe", "run-a": Decimal("1.91"), "run-b": Decimal("1.2")},
            {"metric": "trades", "run-a": 2, "run-b": None},
        ]
        again = await v.save_backtest("grid", run_id="run-b", metrics={"sharpe": 1.2, "max_drawdown": 0.08})
        assert again == await v.backtest("run-b")  # the same run again changes nothing
        with pytest.raises(VersionConflict, match="backtest run run-b is already stored with other content"):
            await v.save_backtest("grid", run_id="run-b", metrics={"sharpe": 1.3})
    assert len(blob_files(repo, "backtests")) == 4  # trades, equity, two artifacts


async def test_damaged_and_unknown_backtests(repo: Settings, tmp_path: Path) -> None:  # noqa: F811
    async with Vault.connect(repo) as v:
        await saved_runs(v, tmp_path)
        run = await v.backtest("run-a")
        flip_byte(repo, run.blobs["trades"].sha256, at=10, area="backtests")
        with pytest.raises(CorruptBlob, match=r"backtest run run-a trades: blob .* is corrupt"):
            await v.load_backtest("run-a")
        with pytest.raises(NotFound, match="no backtest run run-z"):
            await v.backtest("run-z")
        with pytest.raises(
            NotFound, match=r"no artifact plot\.png in backtest run run-a; artifacts: equity\.png"
        ):
            await v.load_backtest_artifact("run-a", "plot.png")
        with pytest.raises(NotFound, match="no version 9 of model signal"):
            await v.save_backtest("grid", model=("signal", "9"))
        with pytest.raises(NotFound, match="no version 4 of config grid"):
            await v.save_backtest("grid", config=("grid", 4))
        with pytest.raises(ConfigError, match=r"invalid artifact name '\.\./x\.png'"):
            await v.save_backtest("grid", artifacts={"../x.png": b""})
        with pytest.raises(ConfigError, match="data range needs a start and an end"):
            await v.save_backtest("grid", data={"exchange": "binance", "symbols": "BTCUSDT"})
        with pytest.raises(ConfigError, match="end 2026-01-01T00:00:00Z is not after start"):
            await v.save_backtest("grid", data={"exchange": "x", "symbols": ["Y"], "start": T0, "end": T0})
        with pytest.raises(NotFound, match="no backtest run run-z"):
            await v.compare_backtests(["run-a", "run-z"])
        assert len(await v.backtests()) == 3


async def test_deleting_runs_keeps_shared_blobs_and_cleanup_sweeps_orphans(repo: Settings) -> None:  # noqa: F811
    async with Vault.connect(repo) as v:
        await v.save_backtest("grid", run_id="a", trades=trades_table(), artifacts={"r.html": b"same"})
        await v.save_backtest("grid", run_id="b", artifacts={"r.html": b"same", "only-b.png": b"png"})
        assert len(blob_files(repo, "backtests")) == 3
        with pytest.raises(VersionConflict):  # refused after its blob was stored: an orphan
            await v.save_backtest("grid", run_id="a", artifacts={"new.png": b"orphan"})
        assert len(blob_files(repo, "backtests")) == 4
        assert (await v.cleanup_backtests(dry_run=True)).blobs == 1
        assert len(blob_files(repo, "backtests")) == 4
        assert (await v.cleanup_backtests()).blobs == 1
        assert len(blob_files(repo, "backtests")) == 3
        await v.delete_backtest("b")
        assert len(blob_files(repo, "backtests")) == 2  # only-b.png went; r.html is run a's too
        assert await v.load_backtest_artifact("a", "r.html") == b"same"
        with pytest.raises(NotFound, match="no backtest run b"):
            await v.backtest("b")
        assert (await v.cleanup_backtests()).blobs == 0


async def test_concurrent_saves_take_distinct_versions(repo: Settings) -> None:  # noqa: F811
    async with Vault.connect(repo) as v:
        saved = await asyncio.gather(*(v.save_strategy_config("grid", {"level": n}) for n in range(8)))
        assert sorted(c.version for c in saved) == list(range(1, 9))
        stored = {c.version: c.document["level"] for c in await v.strategy_configs("grid")}
        assert {c.version: c.document["level"] for c in saved} == stored
