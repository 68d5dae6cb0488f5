"""The `tickvault state` command: bot state snapshots.

- `state get BOT_ID`: the bot's newest snapshot, as bots read it (`Vault.load_bot_state`:
  the Redis cache, else PostgreSQL).
- `state list`: the newest snapshot of every bot, by bot_id (PostgreSQL).
- `state history BOT_ID [--start] [--end] [--limit]`: the bot's distinct snapshots still in
  bot_state_history, oldest first; `--limit` without `--start` gives the latest ones.

Output: columns bot_id, ts, seq, state, as an aligned table, CSV with a header, or JSON Lines
(the state a JSON object there, its JSON text in the table and CSV; numbers exact and
positional). The count goes to stderr. A BOT_ID with nothing stored is an error (exit 1)
naming close matches; an empty history of a known bot is not.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from tickvault.errors import TickvaultError
from tickvault.output import print_rows
from tickvault.query import close_matches, count, positive_int, time_arg
from tickvault.records import BotState
from tickvault.settings import Settings
from tickvault.vault import MAX_DISTINCT, Vault

COLUMNS = BotState.COLUMNS  # bot_id, ts, seq, state


def add_arguments(parser: argparse.ArgumentParser, common: argparse.ArgumentParser) -> None:
    """The `state` sub-commands; `common` carries --config."""
    actions = parser.add_subparsers(dest="state_command", required=True, metavar="ACTION")
    fmt = argparse.ArgumentParser(add_help=False)
    fmt.add_argument("--format", choices=["table", "csv", "jsonl"], default="table")
    get = actions.add_parser(
        "get", parents=[common, fmt], help="a bot's newest state (Redis cache, else PostgreSQL)"
    )
    get.add_argument("bot_id", metavar="BOT_ID")
    actions.add_parser("list", parents=[common, fmt], help="the newest state of every bot")
    hist = actions.add_parser(
        "history", parents=[common, fmt], help="a bot's snapshots kept in the history, oldest first"
    )
    hist.add_argument("bot_id", metavar="BOT_ID")
    hist.add_argument("--start", type=time_arg, help="inclusive; ISO-8601 with offset or epoch ms")
    hist.add_argument("--end", type=time_arg, help="exclusive; ISO-8601 with offset or epoch ms")
    hist.add_argument(
        "--limit", type=positive_int, help="at most this many (without --start: the latest ones)"
    )


async def run(settings: Settings, args: argparse.Namespace) -> int:
    """Print the snapshots, and their count on stderr."""
    async with Vault.connect(settings) as vault:
        if args.state_command == "get":
            found = await vault.load_bot_state(args.bot_id)
            if found is None:
                await _unknown(vault, args.bot_id)
            states = [found] if found is not None else []
        elif args.state_command == "list":
            states = await vault.bot_states()
        else:
            states = await vault.bot_state_history(args.bot_id, args.start, args.end, args.limit)
            if not states and args.bot_id not in await vault.stored_values("bot_state", "bot_id"):
                await _unknown(vault, args.bot_id)
    print_rows(COLUMNS, [_row(s) for s in states], args.format)
    noun = ("snapshot", "snapshots") if args.state_command == "history" else ("bot state", "bot states")
    print(count(len(states), *noun), file=sys.stderr)
    return 0


def _row(state: BotState) -> dict[str, Any]:
    return {c: getattr(state, c) for c in COLUMNS}


async def _unknown(vault: Vault, bot_id: str) -> None:
    stored = await vault.stored_values("bot_state", "bot_id")
    hint = close_matches(bot_id, stored) if len(stored) < MAX_DISTINCT else ""
    raise TickvaultError(f"no bot state stored for bot_id {bot_id}{hint}")
