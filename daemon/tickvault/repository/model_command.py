"""The `tickvault models` command: the model registry (tickvault.repository.models, upkeep).

- `models list [--name N] [--framework F] [--alias A] [--since T] [--limit N]`: versions,
  newest first (name, version, framework, size_bytes, sha256, aliases, created_at).
- `models show NAME [--version V | --alias A]`: one version (default the latest) with its
  file name, metadata and metrics.
- `models save NAME VERSION FILE --framework F [--metadata JSON] [--metrics JSON]`.
- `models load NAME [--version V | --alias A] --output FILE`: the checked blob to FILE.
- `models alias NAME ALIAS VERSION` points ALIAS at VERSION; `--remove` drops ALIAS.
- `models verify [NAME] [--version V]`: one line per version, `ok` or `corrupt: …`;
  exit 1 when one is corrupt or missing.
- `models delete NAME VERSION [--force]`, `models cleanup [--name N] [--keep N]
  [--older-than DURATION] [--dry-run]`, `models package NAME [--version V | --alias A]
  --output FILE.tar.gz`.

Lists print as table, csv or jsonl (`--format`); counts and outcomes go to stderr, except
what a command is for (verify's lines, a show or list) on stdout. Errors are one line, exit 1.
"""

from __future__ import annotations

import argparse
import json
import sys
from decimal import Decimal
from typing import Any, Final

from tickvault.output import print_rows
from tickvault.query import count, positive_int, time_arg
from tickvault.repository.models import ModelVersion
from tickvault.settings import Settings, parse_duration_s
from tickvault.vault import Vault

LIST_COLUMNS: Final = ("name", "version", "framework", "size_bytes", "sha256", "aliases", "created_at")
SHOW_COLUMNS: Final = (*LIST_COLUMNS, "file_name", "metadata", "metrics")


def json_object(text: str) -> dict[str, Any]:
    """argparse type: a JSON object, numbers as int or Decimal (exact)."""
    try:
        value = json.loads(text, parse_float=Decimal)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("expected a JSON object ({...})")
    return value


def duration(text: str) -> str:
    """argparse type: a duration such as 30d, 36h."""
    try:
        parse_duration_s(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def _count(text: str) -> int:
    """argparse type: an integer >= 0."""
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"must be an integer >= 0, got {text!r}")
    return int(text)


def add_arguments(parser: argparse.ArgumentParser, common: argparse.ArgumentParser) -> None:
    """The `models` sub-commands; `common` carries --config."""
    actions = parser.add_subparsers(dest="models_command", required=True, metavar="ACTION")
    fmt = argparse.ArgumentParser(add_help=False)
    fmt.add_argument("--format", choices=["table", "csv", "jsonl"], default="table")
    pick = argparse.ArgumentParser(add_help=False)
    which = pick.add_mutually_exclusive_group()
    which.add_argument("--version", help="this version (default: the latest)")
    which.add_argument("--alias", help="the version this alias points at")
    lst = actions.add_parser("list", parents=[common, fmt], help="stored versions, newest first")
    lst.add_argument("--name", help="only this model")
    lst.add_argument("--framework", help="only this framework")
    lst.add_argument("--alias", help="only versions this alias points at")
    lst.add_argument("--since", type=time_arg, help="saved at or after; ISO-8601 with offset or epoch ms")
    lst.add_argument("--limit", type=positive_int, help="at most this many")
    show = actions.add_parser(
        "show", parents=[common, fmt, pick], help="one version with metadata and metrics"
    )
    show.add_argument("name", metavar="NAME")
    save = actions.add_parser("save", parents=[common], help="store a model file as NAME VERSION")
    save.add_argument("name", metavar="NAME")
    save.add_argument("version", metavar="VERSION")
    save.add_argument("file", metavar="FILE")
    save.add_argument("--framework", required=True, help="the file's format, e.g. onnx, xgboost, pytorch")
    save.add_argument("--metadata", type=json_object, metavar="JSON", help="a JSON object")
    save.add_argument("--metrics", type=json_object, metavar="JSON", help="a JSON object of numbers")
    load = actions.add_parser("load", parents=[common, pick], help="write a version's checked bytes to FILE")
    load.add_argument("name", metavar="NAME")
    load.add_argument("--output", required=True, metavar="FILE")
    alias = actions.add_parser("alias", parents=[common], help="point ALIAS at VERSION, or --remove it")
    alias.add_argument("name", metavar="NAME")
    alias.add_argument("alias", metavar="ALIAS")
    alias.add_argument("version", metavar="VERSION", nargs="?")
    alias.add_argument("--remove", action="store_true", help="remove ALIAS instead")
    verify = actions.add_parser("verify", parents=[common], help="recompute checksums; exit 1 if one is bad")
    verify.add_argument("name", metavar="NAME", nargs="?")
    verify.add_argument("--version")
    delete = actions.add_parser("delete", parents=[common], help="delete a version (not an aliased one)")
    delete.add_argument("name", metavar="NAME")
    delete.add_argument("version", metavar="VERSION")
    delete.add_argument("--force", action="store_true", help="also remove the aliases pointing at it")
    clean = actions.add_parser("cleanup", parents=[common], help="delete old versions; sweep orphan blobs")
    clean.add_argument("--name", help="only this model")
    clean.add_argument("--keep", type=_count, metavar="N", help="keep the newest N versions of each model")
    clean.add_argument(
        "--older-than", type=duration, metavar="DURATION", help="delete only those older (30d)"
    )
    clean.add_argument("--dry-run", action="store_true", help="say what would go; remove nothing")
    pack = actions.add_parser("package", parents=[common, pick], help="write a tar.gz with a manifest")
    pack.add_argument("name", metavar="NAME")
    pack.add_argument("--output", required=True, metavar="FILE")


def _row(m: ModelVersion) -> dict[str, Any]:
    return {c: getattr(m, c) for c in SHOW_COLUMNS if c != "aliases"} | {"aliases": ",".join(m.aliases)}


def _label(m: ModelVersion) -> str:
    return f"model {m.name} version {m.version} (sha256 {m.sha256}, {m.size_bytes} bytes)"


async def run(settings: Settings, args: argparse.Namespace) -> int:
    """Run one `models` action; the exit code."""
    action = args.models_command
    if action == "alias" and not args.remove and args.version is None:
        args.usage.error("give the VERSION to point the alias at, or --remove")
    async with Vault.connect(settings) as vault:
        if action == "list":
            found = await vault.models(
                args.name, framework=args.framework, alias=args.alias, since=args.since, limit=args.limit
            )
            print_rows(LIST_COLUMNS, [_row(m) for m in found], args.format)
            print(count(len(found), "model version"), file=sys.stderr)
        elif action == "show":
            print_rows(
                SHOW_COLUMNS,
                [_row(await vault.model(args.name, args.version, alias=args.alias))],
                args.format,
            )
        elif action == "save":
            saved = await vault.save_model(
                args.name, args.version, args.file, framework=args.framework,
                metadata=args.metadata, metrics=args.metrics,
            )  # fmt: skip
            print(f"saved {_label(saved)}")
        elif action == "load":
            got = await vault.download_model(args.name, args.output, args.version, alias=args.alias)
            print(f"wrote {args.output}: {_label(got)}")
        elif action == "package":
            got = await vault.package_model(args.name, args.output, args.version, alias=args.alias)
            print(f"wrote {args.output}: {_label(got)}")
        else:
            return await _upkeep(vault, args)
    return 0


async def _upkeep(vault: Vault, args: argparse.Namespace) -> int:
    action = args.models_command
    if action == "alias":
        if args.remove:
            await vault.remove_model_alias(args.name, args.alias)
            print(f"removed alias {args.alias} of model {args.name}")
        else:
            await vault.set_model_alias(args.name, args.alias, args.version)
            print(f"alias {args.alias} of model {args.name} -> version {args.version}")
    elif action == "verify":
        checks = await vault.verify_models(args.name, args.version)
        for check in checks:
            print(f"{check.name}\t{check.version}\t" + ("ok" if check.ok else f"corrupt: {check.problem}"))
        bad = sum(not c.ok for c in checks)
        print(f"{count(len(checks), 'model version')} checked, {bad} corrupt", file=sys.stderr)
        return 1 if bad else 0
    elif action == "delete":
        gone = await vault.delete_model(args.name, args.version, force=args.force)
        print(f"deleted {_label(gone)}")
    else:
        done = await vault.cleanup_models(
            args.name, keep_last=args.keep, older_than=args.older_than, dry_run=args.dry_run
        )
        verb = "would delete" if args.dry_run else "deleted"
        for name, version in done.versions:
            print(f"{verb} model {name} version {version}")
        print(
            f"{verb} {count(len(done.versions), 'version')}, {count(done.blobs, 'unreferenced blob')}, "
            f"{count(done.temp_files, 'temporary file')}"
        )
    return 0
