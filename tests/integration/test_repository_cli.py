"""`tickvault models|configs|backtests`, run as subprocesses against the real PostgreSQL and
a local root: what each prints, and one error line with exit 1 (or 2 for usage)."""

from __future__ import annotations

import hashlib
import json
import tarfile
from pathlib import Path
from typing import Any

from tests.helpers import TestEnv
from tests.integration.test_cli import tickvault
from tests.integration.test_models import flip_byte
from tests.integration.test_query_errors import error
from tickvault.store import migrate
from tickvault.vault import Vault


async def setup(env: TestEnv, tmp_path: Path) -> dict[str, Any]:
    """The archive section pointing at a local root, on a migrated schema."""
    archive = {"root": str(tmp_path / "root")}
    await migrate.upgrade(env.settings(archive=archive).postgres)
    return archive


async def test_models_commands(env: TestEnv, tmp_path: Path) -> None:
    archive = await setup(env, tmp_path)
    model = tmp_path / "signal.onnx"
    model.write_bytes(b"onnx weights")
    sha = hashlib.sha256(b"onnx weights").hexdigest()
    saved = await tickvault(
        env, "models", "save", "signal", "1", str(model), "--framework", "onnx",
        "--metrics", '{"auc": 0.735}', "--metadata", '{"features": ["rsi"]}', archive=archive,
    )  # fmt: skip
    assert saved.out == [f"saved model signal version 1 (sha256 {sha}, 12 bytes)"], saved.lines
    await tickvault(env, "models", "save", "signal", "2", str(model), "--framework", "onnx", archive=archive)
    alias = await tickvault(env, "models", "alias", "signal", "live", "1", archive=archive)
    assert alias.out == ["alias live of model signal -> version 1"]
    listed = await tickvault(env, "models", "list", "--format", "jsonl", archive=archive)
    rows = [json.loads(line) for line in listed.out]
    assert [(r["version"], r["aliases"], r["sha256"]) for r in rows] == [("2", "", sha), ("1", "live", sha)]
    assert listed.err == ["2 model versions"]
    shown = await tickvault(
        env, "models", "show", "signal", "--alias", "live", "--format", "jsonl", archive=archive
    )
    row = json.loads(shown.out[0])
    assert (row["version"], row["metrics"], row["metadata"], row["file_name"]) == (
        "1", {"auc": 0.735}, {"features": ["rsi"]}, "signal.onnx"
    )  # fmt: skip
    out = tmp_path / "loaded.onnx"
    loaded = await tickvault(
        env, "models", "load", "signal", "--alias", "live", "--output", str(out), archive=archive
    )
    assert loaded.code == 0 and out.read_bytes() == b"onnx weights"
    for target, reason in (
        ("/nonexistent-dir/x", "No such file or directory"),
        (f"{out}/x", "Not a directory"),
    ):
        unwritable = await tickvault(env, "models", "load", "signal", "--output", target, archive=archive)
        assert error(unwritable, 1) == f"tickvault: error: cannot write {target}: {reason}"
    pack = tmp_path / "signal.tar.gz"
    packed = await tickvault(env, "models", "package", "signal", "--output", str(pack), archive=archive)
    assert packed.code == 0, packed.lines
    with tarfile.open(pack) as tar:
        assert sorted(tar.getnames()) == ["signal-2/manifest.json", "signal-2/signal.onnx"]
    assert (await tickvault(env, "models", "verify", archive=archive)).out == [
        "signal\t2\tok",
        "signal\t1\tok",
    ]
    in_use = await tickvault(env, "models", "delete", "signal", "1", archive=archive)
    assert error(in_use, 1) == (
        "tickvault: error: model signal version 1 is aliased as live: move the alias or delete with force"
    )
    cleaned = await tickvault(env, "models", "cleanup", "--keep", "0", "--dry-run", archive=archive)
    assert cleaned.out == [
        "would delete model signal version 2",
        "would delete 1 version, 0 unreferenced blobs, 0 temporary files",  # version 1 keeps the blob
    ]
    deleted = await tickvault(env, "models", "delete", "signal", "2", archive=archive)
    assert deleted.out == [f"deleted model signal version 2 (sha256 {sha}, 12 bytes)"]
    flip_byte(env.settings(archive=archive), sha, at=3)
    bad = await tickvault(env, "models", "verify", "signal", archive=archive)
    assert bad.code == 1 and bad.out[0].startswith("signal\t1\tcorrupt: model signal version 1: blob ")
    assert bad.err == ["1 model version checked, 1 corrupt"]
    corrupt = await tickvault(
        env, "models", "load", "signal", "--output", str(tmp_path / "x"), archive=archive
    )
    assert error(corrupt, 1).startswith("tickvault: error: model signal version 1: blob ")
    assert not (tmp_path / "x").exists()


async def test_models_errors_are_one_line(env: TestEnv, tmp_path: Path) -> None:
    archive = await setup(env, tmp_path)
    unknown = await tickvault(env, "models", "show", "nobody", archive=archive)
    assert error(unknown, 1) == "tickvault: error: no model named nobody"
    escape = await tickvault(
        env, "models", "save", "../x", "1", str(tmp_path), "--framework", "onnx", archive=archive
    )
    assert error(escape, 1).startswith("tickvault: error: invalid model name '../x': use 1 to 128 of")
    usage = await tickvault(env, "models", "alias", "m", "live", archive=archive)
    assert error(usage, 2) == (
        "tickvault: error: give the VERSION to point the alias at, or --remove "
        "(see 'tickvault models alias --help')"
    )
    metrics = await tickvault(env, "models", "save", "m", "1", "f", "--framework", "x", "--metrics", "[1]")
    assert error(metrics, 2).startswith("tickvault: error: argument --metrics: expected a JSON object")


async def test_configs_commands(env: TestEnv, tmp_path: Path) -> None:
    archive = await setup(env, tmp_path)
    first, second = tmp_path / "grid1.json", tmp_path / "grid2.json"
    first.write_text('{"levels": [1, 2], "risk": {"stop": 0.0150}}')
    second.write_text('{"levels": [1, 2, 3], "risk": {"stop": 0.02}}')
    one = await tickvault(env, "configs", "save", "grid", str(first), archive=archive)
    assert one.out[0].startswith("saved config grid version 1 (sha256 ")
    assert (await tickvault(env, "configs", "save", "grid", str(second), archive=archive)).code == 0
    shown = await tickvault(env, "configs", "show", "grid", "--version", "1", archive=archive)
    assert shown.out == ['{"levels":[1,2],"risk":{"stop":0.015}}']
    diff = await tickvault(env, "configs", "diff", "grid", "1", "2", "--format", "csv", archive=archive)
    assert diff.out == ["path,change,old,new", "/levels/2,added,,3", "/risk/stop,changed,0.015,0.02"]
    listed = await tickvault(env, "configs", "list", "--format", "csv", archive=archive)
    assert [line.split(",")[:2] for line in listed.out] == [["name", "version"], ["grid", "2"], ["grid", "1"]]
    missing = await tickvault(env, "configs", "show", "grid", "--version", "7", archive=archive)
    assert error(missing, 1) == "tickvault: error: no version 7 of config grid; stored versions: 1 to 2"
    huge = tmp_path / "huge.json"
    huge.write_text('{"risk": {"stop": 1E+999999999}}')
    refused = await tickvault(env, "configs", "save", "grid", str(huge), archive=archive)
    assert error(refused, 1) == (
        "tickvault: error: config.risk.stop: number 1E+999999999 is out of range (exponent beyond ±1000)"
    )
    conflict = await tickvault(env, "configs", "save", "grid", str(second), "--version", "1", archive=archive)
    assert "config grid version 1 is already stored with another document" in error(conflict, 1)


async def test_backtests_commands(env: TestEnv, tmp_path: Path) -> None:
    archive = await setup(env, tmp_path)
    async with Vault.connect(env.settings(archive=archive)) as v:
        await v.save_model("signal", "3", b"w", framework="onnx")
        await v.save_backtest("grid", run_id="run-a", metrics={"sharpe": 1.91}, model=("signal", "3"))
        await v.save_strategy_config("grid", {"levels": 3})
        await v.save_backtest(
            "grid", run_id="run-b", metrics={"sharpe": 1.2, "max_drawdown": 0.08}, config=("grid", 1)
        )
    listed = await tickvault(
        env, "backtests", "list", "--model", "signal:3", "--format", "jsonl", archive=archive
    )
    assert [json.loads(line)["run_id"] for line in listed.out] == ["run-a"] and listed.err == [
        "1 backtest run"
    ]
    by_config = await tickvault(
        env, "backtests", "list", "--strategy-config", "grid:1", "--format", "jsonl", archive=archive
    )
    assert [json.loads(line)["run_id"] for line in by_config.out] == ["run-b"], by_config.lines
    other = await tickvault(env, "backtests", "list", "--strategy-config", "grid:2", archive=archive)
    assert other.code == 0 and other.err == ["0 backtest runs"]
    bad = await tickvault(env, "backtests", "list", "--strategy-config", "grid:v1", archive=archive)
    assert error(bad, 2) == (
        "tickvault: error: argument --strategy-config: config version must be a positive integer, "
        "got 'grid:v1' (see 'tickvault backtests list --help')"
    )
    shown = await tickvault(env, "backtests", "show", "run-a", "--format", "jsonl", archive=archive)
    assert json.loads(shown.out[0])["model"] == "signal:3"
    compared = await tickvault(
        env, "backtests", "compare", "run-a", "run-b", "--format", "csv", archive=archive
    )
    assert compared.out == ["metric,run-a,run-b", "max_drawdown,,0.08", "sharpe,1.91,1.2"]
    unknown = await tickvault(env, "backtests", "show", "run-z", archive=archive)
    assert error(unknown, 1) == "tickvault: error: no backtest run run-z"
    deleted = await tickvault(env, "backtests", "delete", "run-b", archive=archive)
    assert deleted.out == ["deleted backtest run run-b"]
    swept = await tickvault(env, "backtests", "cleanup", archive=archive)
    assert swept.out == ["removed 0 unreferenced blobs, 0 temporary files"]
