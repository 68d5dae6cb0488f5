"""The `tickvault query` command: its arguments and their checks, and the output formats.

An argument that is malformed for its option (an unknown interval, a limit below 1, a bound
that is not a time) or that the kind does not take is a usage error (exit 2, see cli.py). An
empty result is an error (exit 1) only when nothing at all is stored for the klines series
or for an --exchange/--symbol/--bot-id value; the message then names close matches. An
empty window of a stored series prints nothing and reports `0 klines`.

Output: an aligned table, CSV with a header, or JSON Lines. Decimals print in their
canonical form (tickvault.decimals: exact, positional, trailing zeros removed) in all three,
as JSON numbers in JSON Lines; timestamps as ISO 8601 in UTC with `Z`.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import difflib
import sys
from collections.abc import Iterable, Sequence
from decimal import Decimal
from typing import Any, Final

import pyarrow as pa

from tickvault import decimals
from tickvault.errors import TickvaultError
from tickvault.reads.args import parse_time
from tickvault.records import INTERVALS, BotState, dump_json
from tickvault.settings import Settings
from tickvault.vault import MAX_DISTINCT, Vault

# what `query` prints, singular and plural
NOUNS: Final = {
    "klines": ("kline", "klines"),
    "orders": ("order", "orders"),
    "fills": ("fill", "fills"),
    "bot_state": ("bot state", "bot states"),
}
DEFAULT_INTERVAL: Final = "1m"
# the options each kind takes (klines also needs --exchange and --symbol)
OPTIONS: Final = ("exchange", "symbol", "interval", "bot_id", "start", "end", "limit")
ALLOWED: Final = {
    "klines": frozenset({"exchange", "symbol", "interval", "start", "end", "limit"}),
    "orders": frozenset({"exchange", "symbol", "bot_id", "start", "end", "limit"}),
    "fills": frozenset({"exchange", "symbol", "bot_id", "start", "end", "limit"}),
    "bot_state": frozenset({"bot_id"}),
}


def count(n: int, singular: str, plural: str | None = None) -> str:
    """`1 kline`, `0 klines`, `2 bot states`."""
    return f"{n} {singular if n == 1 else plural or singular + 's'}"


def join(values: Iterable[object]) -> str:
    """`a, b, c`."""
    return ", ".join(str(v) for v in values)


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}")
    return value


def time_arg(text: str) -> dt.datetime:
    """argparse type: ISO-8601 with an offset, or epoch milliseconds → aware UTC datetime."""
    try:
        return parse_time(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r}: {exc}") from None


def add_arguments(query: argparse.ArgumentParser) -> None:
    """The `query` sub-parser's arguments; malformed values are usage errors (exit 2)."""
    query.add_argument("what", choices=list(NOUNS))
    query.add_argument("--exchange", help="klines (required), orders, fills")
    query.add_argument("--symbol", help="klines (required), orders, fills")
    query.add_argument(
        "--interval", choices=INTERVALS, metavar="INTERVAL",
        help=f"klines only: one of {' '.join(INTERVALS)} (default: {DEFAULT_INTERVAL})",
    )  # fmt: skip
    query.add_argument("--bot-id", help="orders, fills, bot_state")
    query.add_argument("--start", type=time_arg, help="inclusive; ISO-8601 with offset or epoch ms")
    query.add_argument("--end", type=time_arg, help="exclusive; ISO-8601 with offset or epoch ms")
    query.add_argument("--limit", type=positive_int, help="at most this many rows (klines: the latest ones)")
    query.add_argument("--format", choices=["table", "csv", "jsonl"], default="table")


def usage_problem(args: argparse.Namespace) -> str | None:
    """What the arguments lack, or give that their kind does not take; None if nothing."""
    if args.what == "klines" and not (args.exchange and args.symbol):
        return "query klines needs --exchange and --symbol"
    extra = [f"--{o.replace('_', '-')}" for o in OPTIONS if o not in ALLOWED[args.what] and getattr(args, o)]
    if not extra:
        return None
    return f"{join(extra)} {'does' if len(extra) == 1 else 'do'} not apply to {args.what}"


async def run(settings: Settings, args: argparse.Namespace) -> int:
    """Print the rows, and their count on stderr."""
    async with Vault.connect(settings) as vault:
        columns, rows = await _fetch(vault, args)
        if not rows:
            await _check_known(vault, args)
    print_rows(columns, rows, args.format)
    print(count(len(rows), *NOUNS[args.what]), file=sys.stderr)
    return 0


async def _fetch(vault: Vault, args: argparse.Namespace) -> tuple[list[str], list[dict[str, Any]]]:
    window = {"start": args.start, "end": args.end, "limit": args.limit}
    if args.what == "bot_state":
        states = await vault.bot_states(args.bot_id)
        return list(BotState.COLUMNS), [{c: getattr(s, c) for c in BotState.COLUMNS} for s in states]
    if args.what == "klines":
        table = await vault.klines(args.exchange, args.symbol, args.interval or DEFAULT_INTERVAL, **window)
    elif args.what == "orders":
        table = await vault.orders(args.exchange, args.symbol, args.bot_id, **window)
    else:
        table = await vault.fills(args.exchange, args.symbol, args.bot_id, **window)
    return table.column_names, rows_of(table)


def rows_of(table: pa.Table) -> list[dict[str, Any]]:
    """An Arrow result as dicts, decimals in canonical form (Arrow pads them to scale 18)."""
    decimal_columns = [f.name for f in table.schema if pa.types.is_decimal(f.type)]
    rows: list[dict[str, Any]] = table.to_pylist()
    for row in rows:
        for c in decimal_columns:
            if row[c] is not None:
                row[c] = decimals.canonical(row[c])
    return rows


async def _check_known(vault: Vault, args: argparse.Namespace) -> None:
    """Raise TickvaultError if the queried series, or a filter value, has no row at all."""
    nothing = f"no {NOUNS[args.what][1]} stored for"
    if args.what == "klines":
        interval = args.interval or DEFAULT_INTERVAL
        if (await vault.klines(args.exchange, args.symbol, interval, limit=1)).num_rows:
            return
        stored = [" ".join(series) for series in await vault.kline_series()]
        raise TickvaultError(
            f"{nothing} exchange {args.exchange} symbol {args.symbol} interval {interval}"
            + close_matches(f"{args.exchange} {args.symbol} {interval}", stored)
        )
    for column in ("exchange", "symbol", "bot_id"):
        value = getattr(args, column)
        if value is None:
            continue
        stored = await vault.stored_values(args.what, column)
        if value not in stored and len(stored) < MAX_DISTINCT:  # a complete list: truly absent
            raise TickvaultError(f"{nothing} {column} {value}" + close_matches(value, stored))


def close_matches(word: str, candidates: Iterable[str], n: int = 5, cutoff: float = 0.6) -> str:
    """`; close matches: a, b` — the closest first, ties in order, case ignored — or ""."""
    by_folded: dict[str, list[str]] = {}
    for candidate in sorted(candidates):
        by_folded.setdefault(candidate.casefold(), []).append(candidate)
    matcher = difflib.SequenceMatcher(b=word.casefold())
    scored = []
    for folded in by_folded:  # as difflib.get_close_matches, which orders ties backwards
        matcher.set_seq1(folded)
        cheap = matcher.real_quick_ratio() >= cutoff and matcher.quick_ratio() >= cutoff  # upper bounds
        if cheap and (ratio := matcher.ratio()) >= cutoff:
            scored.append((-ratio, folded))
    found = [c for _, folded in sorted(scored)[:n] for c in by_folded[folded]][:n]
    return f"; close matches: {join(found)}" if found else ""


def text(value: Any) -> str:
    """One value as a table or CSV cell."""
    if isinstance(value, Decimal):
        return decimals.text(value)
    if isinstance(value, dt.datetime):
        return value.isoformat().replace("+00:00", "Z")
    if isinstance(value, dict):
        return dump_json(value)
    return "" if value is None else str(value)


def _json_value(value: Any) -> Any:
    if isinstance(value, Decimal):
        return decimals.canonical(value)  # dump_json writes it positional, as a JSON number
    return text(value) if isinstance(value, dt.datetime) else value


def print_rows(columns: Sequence[str], rows: Sequence[dict[str, Any]], fmt: str) -> None:
    """Rows as an aligned table, CSV with a header, or JSON Lines (`fmt`)."""
    if not rows:
        return
    if fmt == "jsonl":
        for r in rows:
            print(dump_json({c: _json_value(r[c]) for c in columns}))
        return
    cells = [[text(r[c]) for c in columns] for r in rows]
    if fmt == "csv":
        writer = csv.writer(sys.stdout)
        writer.writerow(columns)
        writer.writerows(cells)
    else:
        widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
        print("  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)))
        for row in cells:
            print("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)))
