"""The `tickvault gaps` command: the holes of one kline series in a window, over hot and cold
(`Vault.missing_ranges`), for incremental backfill.

Output: one line per gap — start, end (exclusive), missing candles — as an aligned table,
CSV with a header, or JSON Lines; times ISO 8601 in UTC with `Z`. The summary goes to stderr.
When nothing at all is stored for the series, the whole window is one gap and stderr says so
(with close matches, in case of a typo). Exit 0 either way.
"""

from __future__ import annotations

import argparse
import sys

from tickvault.output import print_rows
from tickvault.query import DEFAULT_INTERVAL, close_matches, count, time_arg
from tickvault.records import INTERVALS
from tickvault.settings import Settings
from tickvault.vault import Vault


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--exchange", required=True)
    parser.add_argument("--symbol", required=True)
    parser.add_argument(
        "--interval", choices=INTERVALS, metavar="INTERVAL", default=DEFAULT_INTERVAL,
        help=f"one of {' '.join(INTERVALS)} (default: {DEFAULT_INTERVAL})",
    )  # fmt: skip
    parser.add_argument(
        "--start", type=time_arg, required=True, help="inclusive; ISO-8601 with offset or epoch ms"
    )
    parser.add_argument(
        "--end", type=time_arg, required=True, help="exclusive; ISO-8601 with offset or epoch ms"
    )
    parser.add_argument("--format", choices=["table", "csv", "jsonl"], default="table")


async def run(settings: Settings, args: argparse.Namespace) -> int:
    """Print the gaps, and their count and the missing candles on stderr."""
    async with Vault.connect(settings) as vault:
        gaps = await vault.missing_ranges(args.exchange, args.symbol, args.interval, args.start, args.end)
        whole = len(gaps) == 1 and gaps[0].end == args.end
        stored = await vault.kline_series() if whole else []
    rows = [{"start": g.start, "end": g.end, "missing": g.candles} for g in gaps]
    print_rows(["start", "end", "missing"], rows, args.format)
    missing = sum(g.candles for g in gaps)
    print(f"{count(len(gaps), 'gap')}, {count(missing, 'missing kline')}", file=sys.stderr)
    series = f"{args.exchange} {args.symbol} {args.interval}"
    if whole and (args.exchange, args.symbol, args.interval) not in stored:
        names = [" ".join(s) for s in stored]
        print(f"nothing is stored for {series} at all{close_matches(series, names)}", file=sys.stderr)
    return 0
