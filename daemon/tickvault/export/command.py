"""The `tickvault export` command: a time table over a range to a file, with a progress bar.

Exit 0 once FILE is complete; 1 with one error line otherwise (then no FILE, and no
FILE.partial, is left); 2 for a usage error. The progress bar (rich) shows on stderr only
when stderr is a terminal and not `--quiet`: rows written, their rate, and how much of the
time range is done. The closing line goes to stdout: `1000000 klines to FILE (…)`.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any, Final

from tickvault.export.tables import FILTERS, TABLES
from tickvault.export.writers import FORMATS
from tickvault.output import progress_bar
from tickvault.query import NOUNS, comma_list, count, join, time_arg
from tickvault.records import INTERVALS
from tickvault.settings import Settings
from tickvault.vault import Vault

NAMES: Final = NOUNS | {"order_events": ("order event", "order events"), "bot_state": NOUNS["bot_state"]}
OPTIONS: Final = ("exchange", "symbol", "symbols", "interval", "bot_id", "account", "asset", "strategy")


def add_command(sub: Any, common: argparse.ArgumentParser) -> None:
    """Register `export` on the CLI's sub-parsers (`common`: the shared --config)."""
    parser = sub.add_parser(
        "export", parents=[common], help="write a time table over a range to csv, jsonl, parquet or xlsx",
        description="Rows of a time table in [--start, --end), hot and cold, oldest first, to FILE in "
        "bounded memory; FILE appears only once complete. See 'Export' in the README.",
    )  # fmt: skip
    add_arguments(parser)
    parser.set_defaults(handler=run)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The `export` sub-parser's arguments; malformed values are usage errors (exit 2)."""
    parser.add_argument("table", choices=TABLES, metavar="TABLE", help=f"one of {', '.join(TABLES)}")
    parser.add_argument("--exchange", help="all but bot_state")
    parser.add_argument("--symbol", help="klines, trades, fills, orders, order_events, signals")
    parser.add_argument(
        "--symbols", type=comma_list, metavar="A,B", help="several symbols instead of --symbol"
    )
    parser.add_argument(
        "--interval", choices=INTERVALS, metavar="INTERVAL",
        help="klines only (with --exchange and --symbol: resampled from a lower stored interval if needed)",
    )  # fmt: skip
    parser.add_argument("--bot-id", help="fills, orders, order_events, signals, bot_state")
    parser.add_argument("--account", help="balances: the account or bot")
    parser.add_argument("--asset", help="balances")
    parser.add_argument("--strategy", help="fills, signals")
    parser.add_argument("--start", type=time_arg, help="inclusive; ISO-8601 with offset or epoch ms")
    parser.add_argument("--end", type=time_arg, help="exclusive; ISO-8601 with offset or epoch ms")
    parser.add_argument("--columns", type=comma_list, metavar="A,B", help="only these columns, in this order")
    parser.add_argument(
        "--format", choices=FORMATS, help="csv, jsonl, parquet or xlsx (default: from the suffix of FILE)"
    )
    parser.add_argument("--output", "-o", metavar="FILE", required=True, help="the file (complete, or none)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def usage_problem(args: argparse.Namespace) -> str | None:
    """A filter the table does not take, or both --symbol and --symbols; None if neither."""
    if args.symbol and args.symbols:
        return "give --symbol or --symbols, not both"
    extra = [f"--{o.replace('_', '-')}" for o in OPTIONS if o not in FILTERS[args.table] and getattr(args, o)]
    if not extra:
        return None
    return f"{join(extra)} {'does' if len(extra) == 1 else 'do'} not apply to {args.table}"


async def run(settings: Settings, args: argparse.Namespace) -> int:
    """Export; print the count, the file and the rate."""
    filters = {o: getattr(args, o) for o in OPTIONS}
    started = time.perf_counter()
    quiet = args.quiet or not sys.stderr.isatty()
    with progress_bar(quiet) as bar:
        task = bar.add_task(args.table, total=1.0, rows=0, rate=0.0)

        def progress(rows: int, done: float) -> None:
            rate = rows / max(time.perf_counter() - started, 1e-9)
            bar.update(task, completed=done, rows=rows, rate=rate)

        async with Vault.connect(settings) as vault:
            rows = await vault.export(
                args.table, args.output, args.format, args.start, args.end, **filters,
                columns=args.columns, progress=progress,
            )  # fmt: skip
    elapsed_s = time.perf_counter() - started
    rate = rows / elapsed_s if elapsed_s > 0 else 0.0
    print(f"{count(rows, *NAMES[args.table])} to {args.output} ({elapsed_s:.1f} s, {rate:.0f} rows/s)")
    return 0
