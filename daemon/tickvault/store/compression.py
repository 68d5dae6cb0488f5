"""TimescaleDB compression (the columnstore) of the hypertables, by `timescale.compress_after`.

Each time table is set to compress by segments of the columns readers select by and ordered
by its time column, with the rest of its key after it (TimescaleDB wants every column of a
unique index in one of the two), and gets a compression policy: a background job compresses
chunks whose whole range is older than `compress_after`. A changed setting replaces the
policy; "off" removes it (chunks compressed so far stay compressed: reads, inserts, upserts,
the roller's reads and drops all work on compressed chunks).

Correctness never depends on the job's recorded status (on PostgreSQL 15.20 TimescaleDB jobs
commit their work and are then recorded as failed): compression is only an optimisation.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Final

import asyncpg

from tickvault.store.schema import TIME_TABLES

log = logging.getLogger(__name__)

# table -> (compress_segmentby, compress_orderby)
LAYOUT: Final = {
    "klines": ('exchange, symbol, "interval"', "open_time"),
    "fills": ("exchange, symbol", "ts, fill_id"),
    "order_events": ("exchange, symbol", "updated_at, order_id, event_hash"),
    "balances": ("account, exchange", "ts, asset"),
    "signals": ("bot_id, exchange, symbol", "ts, strategy"),
    "trades": ("exchange, symbol", "ts, trade_id"),
}


async def apply(conn: asyncpg.Connection, schema: str, compress_after_s: int | None) -> None:
    """Enable compression and set (or replace, or with None remove) the compression policy
    of each time table of `schema`, which must be hypertables."""
    for t in TIME_TABLES:
        relation = f"{schema}.{t.name}"
        current = await _policy_after(conn, schema, t.name)
        if compress_after_s is None:
            if current is not None:
                await conn.execute("SELECT remove_compression_policy($1::regclass)", relation)
                log.info("%s: compression policy removed (was after %s)", relation, current)
            continue
        want = dt.timedelta(seconds=compress_after_s)
        if current == want:
            continue
        await _enable(conn, schema, t.name)
        if current is not None:
            await conn.execute("SELECT remove_compression_policy($1::regclass)", relation)
        await conn.execute(
            "SELECT add_compression_policy($1::regclass, compress_after => $2::interval)", relation, want
        )
        log.info("%s: chunks are compressed once older than %s (was %s)", relation, want, current or "never")


async def _policy_after(conn: asyncpg.Connection, schema: str, table: str) -> dt.timedelta | None:
    value: dt.timedelta | None = await conn.fetchval(
        "SELECT (config->>'compress_after')::interval FROM timescaledb_information.jobs "
        "WHERE proc_name = 'policy_compression' AND hypertable_schema = $1 AND hypertable_name = $2",
        schema,
        table,
    )
    return value


async def _enable(conn: asyncpg.Connection, schema: str, table: str) -> None:
    enabled = await conn.fetchval(
        "SELECT compression_enabled FROM timescaledb_information.hypertables "
        "WHERE hypertable_schema = $1 AND hypertable_name = $2",
        schema,
        table,
    )
    if enabled:  # kept as it is: settings of chunks already compressed cannot change
        return
    segment_by, order_by = LAYOUT[table]
    await conn.execute(
        f"ALTER TABLE {schema}.{table} SET (timescaledb.compress, "
        f"timescaledb.compress_segmentby = '{segment_by}', timescaledb.compress_orderby = '{order_by}')"
    )
