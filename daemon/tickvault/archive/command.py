"""The `tickvault archive` command: roll old partitions now, show what a roll would do
(`--dry-run`), list what has been rolled (`--list`), or read every rolled range back and
check it against the archive log (`--verify`).

Output: one line per partition (or range), tab-separated; the summary on stderr. Exit 1 when
a partition failed (its reason is logged; it stays in PostgreSQL), another roller holds the
lock, or `--verify` found a range corrupt or unreadable.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from tickvault.errors import TickvaultError
from tickvault.settings import Settings, parse_duration_s
from tickvault.store.schema import TIME_TABLES


def duration_s(text: str) -> int:
    """argparse type of --older-than: 7d, 36h, 90m, 30s."""
    try:
        return parse_duration_s(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--dry-run", action="store_true", help="print what would be rolled; change nothing")
    parser.add_argument(
        "--older-than", type=duration_s, metavar="DURATION",
        help="roll partitions ending before now minus this (7d, 36h; default: archive.hot_retention)",
    )  # fmt: skip
    parser.add_argument(
        "--table", dest="tables", action="append", choices=[t.name for t in TIME_TABLES], metavar="NAME",
        help="only this table: klines, fills or order_events (repeatable; default: all three)",
    )  # fmt: skip
    mode.add_argument("--list", action="store_true", help="list the ranges rolled so far, newest first")
    mode.add_argument(
        "--verify", action="store_true",
        help="read every rolled range back and check its rows against the archive log; change nothing",
    )  # fmt: skip


async def run(settings: Settings, args: argparse.Namespace) -> int:
    from tickvault.archive import roller  # pyarrow and pyiceberg load only for this command

    if args.list:
        return await _list(settings)
    if args.verify:
        return await _verify(settings, args.tables or ())
    outcomes = await roller.roll(
        settings, older_than_s=args.older_than, tables=args.tables or (), dry_run=args.dry_run
    )
    if outcomes is None:
        raise TickvaultError("another roller holds the lock (a daemon with archive.enabled?); try later")
    for o in outcomes:
        p = o.partition
        detail = (
            o.reason
            if o.status in ("failed", "changed")
            else f"{o.rows} rows\t{o.files} files\t{o.bytes} bytes"
        )
        print(f"{o.status}\t{p.table.name}\t{p.start.isoformat()}\t{p.end.isoformat()}\t{detail}")
    failed = sum(o.status == "failed" for o in outcomes)
    done = sum(o.status in ("rolled", "would roll") for o in outcomes)
    verb = "would roll" if args.dry_run else "rolled"
    print(f"{verb} {done} partitions, {failed} failed", file=sys.stderr)
    return 1 if failed else 0


async def _list(settings: Settings) -> int:
    from tickvault.archive import roller

    rows = await roller.history(settings)
    for r in rows:
        print(
            f"{r['table_name']}\t{r['range_start'].isoformat()}\t{r['range_end'].isoformat()}\t"
            f"{r['rows']} rows\t{r['files']} files\t{r['bytes']} bytes\tchecksum {r['checksum']}\t"
            f"snapshot {r['snapshot_id']}\twritten {r['written_at'].isoformat()}"
        )
    print(f"{len(rows)} ranges rolled", file=sys.stderr)
    return 0


async def _verify(settings: Settings, tables: Sequence[str]) -> int:
    from tickvault.archive import scrub

    checks = await scrub.verify(settings, tables)
    for c in checks:
        r = c.logged
        detail = c.reason or f"{c.rows} rows, checksum {r.checksum}"
        print(f"{c.status}\t{r.table}\t{r.start.isoformat()}\t{r.end.isoformat()}\t{detail}")
    counts = {s: sum(c.status == s for c in checks) for s in ("ok", "rewritten", "corrupt", "unreadable")}
    summary = ", ".join(f"{n} {s}" for s, n in counts.items())
    print(f"{len(checks)} ranges checked: {summary}", file=sys.stderr)
    return 1 if counts["corrupt"] or counts["unreadable"] else 0
