"""bot_state_history: reads of one bot's snapshots and the retention's pruning.

Rows are written by the bot_state writer (store/writers.py), one per distinct snapshot.
"""

from __future__ import annotations

import datetime as dt
from typing import Final

import asyncpg

from tickvault.store.db import affected

ORDER: Final = ("ts", "coalesce(seq, -1)", "state_hash")
PRUNE_BATCH_ROWS: Final = 10_000  # rows deleted per statement: short locks, bounded WAL bursts


async def prune(conn: asyncpg.Connection, schema: str, older_than: dt.datetime) -> int:
    """Delete snapshots whose ts is before `older_than`, PRUNE_BATCH_ROWS per statement
    through the (ts) index, until none is left; returns how many were deleted."""
    sql = (
        f"DELETE FROM {schema}.bot_state_history WHERE ctid = ANY(ARRAY("  # noqa: S608 - identifiers are ours
        f"SELECT ctid FROM {schema}.bot_state_history WHERE ts < $1 LIMIT {PRUNE_BATCH_ROWS}))"
    )
    total = 0
    while True:
        n = affected(await conn.execute(sql, older_than))
        total += n
        if n < PRUNE_BATCH_ROWS:
            return total


async def read(
    conn: asyncpg.Connection,
    schema: str,
    bot_id: str,
    start: dt.datetime | None,
    end: dt.datetime | None,
    limit: int | None,
) -> list[asyncpg.Record]:
    """(bot_id, ts, seq, state text) of one bot's snapshots in [start, end), oldest first
    (equal ts by seq, a missing seq first, then by state hash). With `limit`: the first
    `limit` from `start`, or without `start` the latest `limit`."""
    where = "bot_id = $1 AND ($2::timestamptz IS NULL OR ts >= $2) AND ($3::timestamptz IS NULL OR ts < $3)"
    newest = limit is not None and start is None
    order = ", ".join(f"{key} {'DESC' if newest else 'ASC'}" for key in ORDER)
    sql = (
        f"SELECT bot_id, ts, seq, state::text AS state FROM {schema}.bot_state_history "  # noqa: S608
        f"WHERE {where} ORDER BY {order} LIMIT $4"
    )
    rows = list(await conn.fetch(sql, bot_id, start, end, limit))
    return rows[::-1] if newest else rows
