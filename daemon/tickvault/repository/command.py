"""The `tickvault configs` and `tickvault backtests` commands, and the registration of these
two and `models` (tickvault.repository.model_command) in the CLI.

- `configs list [--name N]`: name, version, sha256, created_at, newest version first.
- `configs show NAME [--version N]`: the document (default the latest version) as its
  canonical JSON on stdout, the name, version and sha256 on stderr.
- `configs save NAME FILE [--version N]`: FILE holds a JSON object (numbers kept exact).
- `configs diff NAME OLD NEW`: one line per change (path as a JSON Pointer, added, removed
  or changed, old and new values as JSON).
- `backtests list [--strategy S] [--model NAME[:VERSION]] [--strategy-config NAME[:VERSION]]
  [--since T] [--until T] [--limit N]`, `backtests show RUN_ID` (lineage, data range,
  metrics, artifacts), `backtests compare RUN_ID RUN_ID...` (metrics side by side),
  `backtests delete RUN_ID`, `backtests cleanup [--dry-run]` (blobs no run names).
"""

from __future__ import annotations

import argparse
import json
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any, Final

from tickvault.errors import ConfigError
from tickvault.output import print_rows
from tickvault.query import count, positive_int, time_arg
from tickvault.records import dump_json
from tickvault.repository import model_command
from tickvault.repository.backtests import BacktestRun
from tickvault.settings import Settings
from tickvault.vault import Vault

RUN_COLUMNS: Final = (
    "run_id", "strategy", "model", "config", "exchange", "symbols", "interval", "start", "end",
    "trades_rows", "equity_rows", "created_at",
)  # fmt: skip
SHOW_COLUMNS: Final = (*RUN_COLUMNS, "metadata", "metrics", "artifacts", "content_sha256")
COMMANDS: Final = ("models", "configs", "backtests")


def add_commands(sub: Any, common: argparse.ArgumentParser) -> None:
    """Add `models`, `configs` and `backtests` to the CLI's sub-parsers (see the README's
    "Models, strategy configs and backtests")."""
    models = sub.add_parser("models", help="ML model registry: save, load, alias, verify, clean up, package")
    model_command.add_arguments(models, common)
    models.set_defaults(handler=model_command.run)
    configs = sub.add_parser("configs", help="versioned strategy configs: list, show, save, diff")
    _config_arguments(configs, common)
    configs.set_defaults(handler=run_configs)
    backtests = sub.add_parser("backtests", help="backtest runs: list, show, compare, delete, clean up")
    _backtest_arguments(backtests, common)
    backtests.set_defaults(handler=run_backtests)


def _lineage(text: str) -> str | tuple[str, str]:
    """argparse type: NAME or NAME:VERSION of a model (names never hold `:`)."""
    name, _, version = text.partition(":")
    return (name, version) if version else name


def _config_lineage(text: str) -> str | tuple[str, int]:
    """argparse type: NAME or NAME:VERSION of a strategy config, VERSION an integer >= 1."""
    name, _, version = text.partition(":")
    if not version:
        return name
    try:
        return name, positive_int(version)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"config version must be a positive integer, got {text!r}") from None


def _fmt() -> argparse.ArgumentParser:
    fmt = argparse.ArgumentParser(add_help=False)
    fmt.add_argument("--format", choices=["table", "csv", "jsonl"], default="table")
    return fmt


def _config_arguments(parser: argparse.ArgumentParser, common: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="configs_command", required=True, metavar="ACTION")
    lst = actions.add_parser("list", parents=[common, _fmt()], help="stored versions")
    lst.add_argument("--name", help="only this config")
    show = actions.add_parser("show", parents=[common], help="a version's JSON document")
    show.add_argument("name", metavar="NAME")
    show.add_argument("--version", type=positive_int, help="this version (default: the latest)")
    save = actions.add_parser("save", parents=[common], help="store a JSON file as a new or given version")
    save.add_argument("name", metavar="NAME")
    save.add_argument("file", metavar="FILE")
    save.add_argument("--version", type=positive_int, help="this version (default: the next)")
    diff = actions.add_parser("diff", parents=[common, _fmt()], help="what changed between two versions")
    diff.add_argument("name", metavar="NAME")
    diff.add_argument("old", type=positive_int, metavar="OLD")
    diff.add_argument("new", type=positive_int, metavar="NEW")


def _backtest_arguments(parser: argparse.ArgumentParser, common: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="backtests_command", required=True, metavar="ACTION")
    lst = actions.add_parser("list", parents=[common, _fmt()], help="stored runs, newest first")
    lst.add_argument("--strategy", help="only this strategy's runs")
    lst.add_argument("--model", type=_lineage, metavar="NAME[:VERSION]", help="only runs of this model")
    lst.add_argument(
        "--strategy-config",
        type=_config_lineage,
        metavar="NAME[:VERSION]",
        help="only runs of this strategy config",
    )
    lst.add_argument("--since", type=time_arg, help="saved at or after; ISO-8601 with offset or epoch ms")
    lst.add_argument("--until", type=time_arg, help="saved before; ISO-8601 with offset or epoch ms")
    lst.add_argument("--limit", type=positive_int, help="at most this many")
    show = actions.add_parser("show", parents=[common, _fmt()], help="one run: lineage, metrics, artifacts")
    show.add_argument("run_id", metavar="RUN_ID")
    compare = actions.add_parser("compare", parents=[common, _fmt()], help="runs' metrics side by side")
    compare.add_argument("run_ids", metavar="RUN_ID", nargs="+")
    delete = actions.add_parser("delete", parents=[common], help="delete a run and the blobs only it names")
    delete.add_argument("run_id", metavar="RUN_ID")
    clean = actions.add_parser("cleanup", parents=[common], help="remove blobs no run names")
    clean.add_argument("--dry-run", action="store_true", help="count them; remove nothing")


async def run_configs(settings: Settings, args: argparse.Namespace) -> int:
    """Run one `configs` action; the exit code."""
    action = args.configs_command
    document = _read_json(args.file) if action == "save" else None
    async with Vault.connect(settings) as vault:
        if action == "list":
            found = await vault.strategy_configs(args.name)
            rows = [
                {"name": c.name, "version": c.version, "sha256": c.sha256, "created_at": c.created_at}
                for c in found
            ]
            print_rows(("name", "version", "sha256", "created_at"), rows, args.format)
            print(count(len(found), "config version"), file=sys.stderr)
        elif action == "show":
            config = await vault.load_strategy_config(args.name, args.version)
            print(dump_json(config.document))
            print(f"config {config.name} version {config.version} (sha256 {config.sha256})", file=sys.stderr)
        elif action == "save":
            assert document is not None
            saved = await vault.save_strategy_config(args.name, document, args.version)
            print(f"saved config {saved.name} version {saved.version} (sha256 {saved.sha256})")
        else:
            changes = await vault.diff_strategy_configs(args.name, args.old, args.new)
            rows = [
                {"path": c.path, "change": c.kind, "old": _json(c.old), "new": _json(c.new)} for c in changes
            ]
            print_rows(("path", "change", "old", "new"), rows, args.format)
            print(count(len(changes), "change"), file=sys.stderr)
    return 0


def _json(value: Any) -> str:
    return "" if value is None else dump_json(value)


def _read_json(file: str) -> dict[str, Any]:
    try:
        value = json.loads(Path(file).read_text(encoding="utf-8"), parse_float=Decimal)
    except OSError as exc:
        raise ConfigError(f"cannot read {file}: {exc.strerror}") from None
    except ValueError as exc:
        raise ConfigError(f"{file} is not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise ConfigError(f"{file} must hold a JSON object")
    return value


def _run_row(run: BacktestRun) -> dict[str, Any]:
    data = run.data
    return {
        "run_id": run.run_id, "strategy": run.strategy,
        "model": ":".join(run.model) if run.model else None,
        "config": f"{run.config[0]}:{run.config[1]}" if run.config else None,
        "exchange": data and data.exchange, "symbols": data and ",".join(data.symbols),
        "interval": data and data.interval, "start": data and data.start, "end": data and data.end,
        "trades_rows": run.trades_rows, "equity_rows": run.equity_rows, "created_at": run.created_at,
        "metadata": run.metadata, "metrics": run.metrics, "content_sha256": run.content_sha256,
        "artifacts": ",".join(f"{a.name}:{a.size_bytes}" for a in run.artifacts),
    }  # fmt: skip


async def run_backtests(settings: Settings, args: argparse.Namespace) -> int:
    """Run one `backtests` action; the exit code."""
    action = args.backtests_command
    async with Vault.connect(settings) as vault:
        if action == "list":
            runs = await vault.backtests(
                args.strategy, model=args.model, config=args.strategy_config,
                since=args.since, until=args.until, limit=args.limit,
            )  # fmt: skip
            print_rows(RUN_COLUMNS, [_run_row(r) for r in runs], args.format)
            print(count(len(runs), "backtest run"), file=sys.stderr)
        elif action == "show":
            print_rows(SHOW_COLUMNS, [_run_row(await vault.backtest(args.run_id))], args.format)
        elif action == "delete":
            gone = await vault.delete_backtest(args.run_id)
            print(f"deleted backtest run {gone.run_id}")
        elif action == "cleanup":
            done = await vault.cleanup_backtests(dry_run=args.dry_run)
            verb = "would remove" if args.dry_run else "removed"
            print(
                f"{verb} {count(done.blobs, 'unreferenced blob')}, {count(done.temp_files, 'temporary file')}"
            )
        else:
            ids = list(dict.fromkeys(args.run_ids))
            print_rows(("metric", *ids), await vault.compare_backtests(ids), args.format)
    return 0
