"""The `tickvault query` command: its arguments and their checks, and the output formats.

An argument that is malformed for its option (an unknown interval, a limit below 1, a bound
that is not a time) or that the kind does not take is a usage error (exit 2, see cli.py). An
empty result is an error (exit 1) only when nothing at all is stored for the klines series
or for an --exchange/--symbol/--bot-id value; the message then names close matches. An
empty window of a stored series prints nothing and reports `0 klines`.

Rows are read in pages of PAGE_ROWS (by time: a page ends before its last instant, which
starts the next page, so no row is skipped or repeated) and written as they come (`output`),
so output of millions of rows takes bounded memory. Formats and the `--output` file: see
tickvault.output.
"""

from __future__ import annotations

import argparse
import datetime as dt
import difflib
import sys
from collections.abc import AsyncIterator, Iterable
from typing import Any, Final

import pyarrow as pa
import pyarrow.compute as pc

from tickvault.errors import TickvaultError
from tickvault.output import FORMATS, Output
from tickvault.reads.args import parse_time
from tickvault.reads.columns import SPECS
from tickvault.records import INTERVALS, BotState, dump_json
from tickvault.settings import Settings
from tickvault.vault import DISTINCT_SCANS, MAX_DISTINCT, Vault

# what `query` prints, singular and plural
NOUNS: Final = {
    "klines": ("kline", "klines"),
    "orders": ("order", "orders"),
    "fills": ("fill", "fills"),
    "bot_state": ("bot state", "bot states"),
    "balances": ("balance", "balances"),
    "signals": ("signal", "signals"),
    "trades": ("trade", "trades"),
}
DEFAULT_INTERVAL: Final = "1m"
# the options each kind takes (klines also needs --exchange and --symbol)
OPTIONS: Final = (
    "exchange", "symbol", "symbols", "interval", "bot_id", "account", "asset", "strategy", "start", "end",
    "limit", "columns",
)  # fmt: skip
_TIMED: Final = frozenset({"exchange", "start", "end", "limit", "columns"})
_SERIES: Final = _TIMED | {"symbol", "symbols"}
ALLOWED: Final = {
    "klines": _SERIES | {"interval"},
    "orders": _SERIES | {"bot_id"},
    "fills": _SERIES | {"bot_id"},
    "bot_state": frozenset({"bot_id"}),
    "balances": _TIMED | {"account", "asset"},
    "signals": _SERIES | {"bot_id", "strategy"},
    "trades": _SERIES,
}
PAGE_ROWS: Final = 50_000
EARLIEST: Final = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)  # tickvault.timestamps' lower bound


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
    query.add_argument("--exchange", help="klines (required), orders, fills, trades, balances, signals")
    query.add_argument("--symbol", help="klines (this or --symbols required), orders, fills, trades, signals")
    query.add_argument(
        "--symbols", type=comma_list, metavar="A,B", help="several symbols instead of --symbol"
    )
    query.add_argument(
        "--interval", choices=INTERVALS, metavar="INTERVAL",
        help=f"klines only: one of {' '.join(INTERVALS)} (default: {DEFAULT_INTERVAL})",
    )  # fmt: skip
    query.add_argument("--bot-id", help="orders, fills, bot_state, signals")
    query.add_argument("--account", help="balances: the account or bot")
    query.add_argument("--asset", help="balances")
    query.add_argument("--strategy", help="signals")
    query.add_argument("--start", type=time_arg, help="inclusive; ISO-8601 with offset or epoch ms")
    query.add_argument("--end", type=time_arg, help="exclusive; ISO-8601 with offset or epoch ms")
    query.add_argument("--limit", type=positive_int, help="at most this many rows (klines: the latest ones)")
    query.add_argument("--columns", type=comma_list, metavar="A,B", help="only these columns, in this order")
    query.add_argument(
        "--format", choices=FORMATS, default="table",
        help="table (aligned per block of rows), csv, jsonl, or parquet (needs --output)",
    )  # fmt: skip
    query.add_argument(
        "--output", metavar="FILE", help="write to FILE (complete, or not at all) instead of stdout"
    )


def usage_problem(args: argparse.Namespace) -> str | None:
    """What the arguments lack, or give that their kind does not take; None if nothing."""
    if args.what == "klines" and not (args.exchange and (args.symbol or args.symbols)):
        return "query klines needs --exchange and --symbol (or --symbols)"
    if args.symbol and args.symbols:
        return "give --symbol or --symbols, not both"
    if args.format == "parquet" and not args.output:
        return "--format parquet needs --output FILE"
    extra = [f"--{o.replace('_', '-')}" for o in OPTIONS if o not in ALLOWED[args.what] and getattr(args, o)]
    if not extra:
        return None
    return f"{join(extra)} {'does' if len(extra) == 1 else 'do'} not apply to {args.what}"


def comma_list(text: str) -> list[str]:
    """argparse type: `A,B` → ["A", "B"] (blanks dropped; at least one)."""
    values = [v.strip() for v in text.split(",") if v.strip()]
    if not values:
        raise argparse.ArgumentTypeError(f"expected a comma-separated list, got {text!r}")
    return values


async def run(settings: Settings, args: argparse.Namespace) -> int:
    """Write the rows, and their count on stderr. A failure after some rows were printed is
    still one error line and exit 1 (a file is then not written at all)."""
    out = Output(args.format, args.output)
    total, schema = 0, None
    try:
        async with Vault.connect(settings) as vault:
            if args.what == "bot_state":
                total = await _bot_states(vault, args, out)
            async for block in _blocks(vault, args):
                out.write(block)
                total, schema = total + block.num_rows, block.schema
            if total == 0:
                await _check_known(vault, args)
    except BaseException:
        out.abort()
        raise
    out.close(schema)
    where = f" to {args.output}" if args.output else ""
    print(count(total, *NOUNS[args.what]) + where, file=sys.stderr)
    return 0


async def _bot_states(vault: Vault, args: argparse.Namespace, out: Output) -> int:
    """The newest state of each bot (or of --bot-id): records, the state an object (in
    parquet, its JSON text)."""
    states = await vault.bot_states(args.bot_id)
    rows = [{c: getattr(s, c) for c in BotState.COLUMNS} for s in states]
    if args.format == "parquet":
        out.write(pa.Table.from_pylist([r | {"state": dump_json(r["state"])} for r in rows]))
    else:
        out.write_rows(BotState.COLUMNS, rows)
    return len(rows)


async def _read(vault: Vault, args: argparse.Namespace, **window: Any) -> pa.Table:
    shared = {"symbols": args.symbols, "columns": window.pop("columns")}
    if args.what == "klines":
        interval = args.interval or DEFAULT_INTERVAL
        return await vault.klines(args.exchange, args.symbol, interval, **window, **shared)
    if args.what == "orders":
        return await vault.orders(args.exchange, args.symbol, args.bot_id, **window, **shared)
    if args.what == "balances":
        return await vault.balances(
            args.account, args.exchange, args.asset, **window, columns=shared["columns"]
        )
    if args.what == "signals":
        return await vault.signals(args.bot_id, args.strategy, args.exchange, args.symbol, **window, **shared)
    if args.what == "trades":
        return await vault.trades(args.exchange, args.symbol, **window, **shared)
    return await vault.fills(args.exchange, args.symbol, args.bot_id, **window, **shared)


async def _blocks(vault: Vault, args: argparse.Namespace) -> AsyncIterator[pa.Table]:
    """The result in blocks of at most PAGE_ROWS rows (more only when one instant has more),
    oldest first; `--columns` applied. Nothing for bot_state."""
    if args.what == "bot_state":
        return
    if args.what == "bot_state":
        states = await vault.bot_states(args.bot_id)
        yield (
            pa.Table.from_pylist(
                [{c: (s.state if c == "state" else getattr(s, c)) for c in BotState.COLUMNS} for s in states]
            )
            if states
            else pa.table({})
        )
        return
    time = SPECS[args.what].time_column
    columns = list(dict.fromkeys([*(args.columns or SPECS[args.what].columns), time]))
    wanted = args.columns or list(SPECS[args.what].columns)
    if args.what == "klines" and args.start is None and args.limit is not None:  # the latest N
        yield (await _read(vault, args, end=args.end, limit=args.limit, columns=columns)).select(wanted)
        return
    # from the first instant a row can have: a limit without a start would mean the latest rows
    start, left, size = args.start or EARLIEST, args.limit, PAGE_ROWS
    while left is None or left > 0:
        n = size if left is None else min(size, left)
        page = await _read(vault, args, start=start, end=args.end, limit=n, columns=columns)
        if page.num_rows < n or n == left:
            yield page.select(wanted)
            return
        last = page.column(time)[page.num_rows - 1]
        before = page.filter(pc.less(page.column(time), last))
        if before.num_rows == 0:  # one instant fills the page: read a bigger one
            size *= 2
            continue
        yield before.select(wanted)
        start, left = last.as_py(), None if left is None else left - before.num_rows


async def _check_known(vault: Vault, args: argparse.Namespace) -> None:
    """Raise TickvaultError if the queried series, or a filter value, has no row at all."""
    nothing = f"no {NOUNS[args.what][1]} stored for"
    if args.what == "klines":
        interval = args.interval or DEFAULT_INTERVAL
        for symbol in args.symbols or [args.symbol]:
            if not (await vault.klines(args.exchange, symbol, interval, limit=1)).num_rows:
                stored = [" ".join(series) for series in await vault.kline_series()]
                raise TickvaultError(
                    f"{nothing} exchange {args.exchange} symbol {symbol} interval {interval}"
                    + close_matches(f"{args.exchange} {symbol} {interval}", stored)
                )
        return
    for column in ("exchange", "symbol", "bot_id", "account"):
        if (args.what, column) not in DISTINCT_SCANS:
            continue
        values = args.symbols if column == "symbol" and args.symbols else [getattr(args, column)]
        for value in values:
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
