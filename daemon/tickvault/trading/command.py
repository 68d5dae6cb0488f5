"""The `tickvault summary` command: `Vault.trading_summary` of the fills that match the filters
in [--start, --end), hot and cold.

Output: `table` prints one line per figure (name, value); `csv` a header and one row;
`jsonl` one object. Decimals canonical (JSON numbers in jsonl), times ISO 8601 UTC with `Z`,
a figure that is undefined (e.g. the win rate without round trips) empty (null in jsonl),
`other_fees` a JSON object of asset → total. Exit 0, also when no fill matches (stderr then
says so).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any, Final

from tickvault.decimals import canonical
from tickvault.output import print_rows, rows_of
from tickvault.query import time_arg
from tickvault.settings import Settings
from tickvault.trading import summary
from tickvault.vault import Vault

FORMATS: Final = ("table", "csv", "jsonl")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The `summary` sub-parser's arguments; malformed values are usage errors (exit 2)."""
    parser.add_argument("--bot-id", help="only this bot's fills")
    parser.add_argument("--strategy", help="only fills of this strategy (positions built from them alone)")
    parser.add_argument("--symbol", help="only this symbol")
    parser.add_argument("--start", type=time_arg, help="inclusive; ISO-8601 with offset or epoch ms")
    parser.add_argument("--end", type=time_arg, help="exclusive; ISO-8601 with offset or epoch ms")
    parser.add_argument("--format", choices=FORMATS, default="table", help="table (default), csv or jsonl")


def summary_row(table: Any) -> dict[str, Any]:
    """The summary's one row as a dict: decimals canonical, other_fees a dict."""
    row: dict[str, Any] = rows_of(table)[0]
    row["other_fees"] = {asset: canonical(fee) for asset, fee in row["other_fees"] or []}
    return row


async def run(settings: Settings, args: argparse.Namespace) -> int:
    """Print the summary; on stderr, a note when no fill matched."""
    async with Vault.connect(settings) as vault:
        result = await vault.trading_summary(args.bot_id, args.strategy, args.symbol, args.start, args.end)
    row = summary_row(result)
    columns = summary.SCHEMA.names
    if args.format == "table":
        print_rows(["figure", "value"], [{"figure": c, "value": row[c]} for c in columns], "table")
    else:
        print_rows(columns, [row], args.format)
    if row["fills"] == 0:
        print("no fills match these filters in this window", file=sys.stderr)
    return 0
