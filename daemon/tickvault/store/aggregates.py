"""Continuous aggregates of klines: higher intervals (`timescale.kline_aggregates`) computed
by TimescaleDB from the 1m series, one view `klines_<interval>` each (e.g. `klines_1h`).

Columns: exchange, symbol, open_time (the bucket's start, UTC; buckets from time_bucket,
which for 1w starts on Mondays like exchanges' weekly candles), open (first open by
open_time), high (max), low (min), close (last close by open_time), volume (sum),
quote_volume and trades (sums, NULL when any candle of the bucket lacks them), candles (how
many 1m candles the bucket holds), closed (every one of them closed) and complete (all
`width / 1m` candles present and closed). A reader marks or skips buckets that are not
complete: the newest one, one with a gap in the feed, or one whose candles are still open.

Each view has a refresh policy: every min(interval, 1h) it materialises the buckets between
now - `archive.hot_retention` and now - one interval; newer buckets are computed at query
time from the raw candles (real-time aggregation). The window never reaches back past the
hot retention because the roller drops old klines chunks, which invalidates their range,
and a refresh over a range whose raw candles are gone empties the aggregate there
(TimescaleDB's "drop data from continuous aggregates"). So buckets stay as they were
materialised while their candles were hot; candles that arrive later for an older range are
archived but do not change its aggregate. The roller also keeps klines chunks that lie
inside any refresh policy's window (`archive.chunks.aggregate_horizon`). Refreshing a view
by hand over an archived range (`refresh_continuous_aggregate`) empties it there.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Sequence
from typing import Final

import asyncpg

from tickvault.errors import ConfigError
from tickvault.settings import AGGREGATE_INTERVAL_MIN

log = logging.getLogger(__name__)
SOURCE_INTERVAL: Final = "1m"
MAX_SCHEDULE: Final = dt.timedelta(hours=1)


def view_name(interval: str) -> str:
    return f"klines_{interval}"


def create_sql(schema: str, interval: str) -> str:
    """The CREATE MATERIALIZED VIEW of one aggregate (no data: the policy fills it)."""
    minutes = AGGREGATE_INTERVAL_MIN[interval]
    bucket = f"time_bucket(INTERVAL '{minutes} minutes', open_time)"
    return f"""CREATE MATERIALIZED VIEW {schema}.{view_name(interval)}
WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
SELECT exchange, symbol, {bucket} AS open_time,
    first(open, open_time) AS open, max(high) AS high, min(low) AS low,
    last(close, open_time) AS close, sum(volume) AS volume,
    CASE WHEN count(quote_volume) = count(*) THEN sum(quote_volume) END AS quote_volume,
    CASE WHEN count(trades) = count(*) THEN sum(trades) END AS trades,
    count(*) AS candles, bool_and(closed) AS closed,
    count(*) = {minutes} AND bool_and(closed) AS complete
FROM {schema}.klines WHERE "interval" = '{SOURCE_INTERVAL}'
GROUP BY exchange, symbol, {bucket}
WITH NO DATA"""  # noqa: S608 - identifiers validated by settings


def policy_offsets(interval: str, window_s: int) -> tuple[dt.timedelta, dt.timedelta, dt.timedelta]:
    """(start_offset, end_offset, schedule_interval) of an aggregate's refresh policy.
    Raises ConfigError when the window cannot hold the two buckets TimescaleDB requires."""
    minutes = AGGREGATE_INTERVAL_MIN[interval]
    width, start = dt.timedelta(minutes=minutes), dt.timedelta(seconds=window_s)
    if start - width < 2 * width:
        least = next(
            f"{3 * minutes // n}{u}" for n, u in ((1440, "d"), (60, "h"), (1, "m")) if 3 * minutes % n == 0
        )
        raise ConfigError(
            f"timescale.kline_aggregates {interval}: the refresh window (from archive.hot_retention "
            f"back, to one bucket before now) must span two buckets; needs archive.hot_retention >= {least}"
        )
    return start, width, min(width, MAX_SCHEDULE)


async def apply(conn: asyncpg.Connection, schema: str, intervals: Sequence[str], window_s: int) -> None:
    """Create the missing views of `intervals` and bring their refresh policies in line with
    `window_s` (the hot retention, seconds). Views of intervals no longer configured are kept
    (their rows may be all that is left of archived ranges) and named in a warning."""
    wanted = {interval: policy_offsets(interval, window_s) for interval in intervals}
    existing = set(await _views(conn, schema))
    for interval, offsets in wanted.items():
        name = view_name(interval)
        if name not in existing:
            await conn.execute(create_sql(schema, interval))
            log.info("created continuous aggregate %s.%s", schema, name)
        await _policy(conn, schema, name, offsets)
    stale = sorted(existing - {view_name(i) for i in wanted})
    if stale:
        log.warning(
            "continuous aggregates %s are no longer in timescale.kline_aggregates; kept with their "
            "policies (DROP MATERIALIZED VIEW to remove)",
            ", ".join(f"{schema}.{v}" for v in stale),
        )


async def _views(conn: asyncpg.Connection, schema: str) -> list[str]:
    rows = await conn.fetch(
        "SELECT view_name FROM timescaledb_information.continuous_aggregates "
        "WHERE hypertable_schema = $1 AND hypertable_name = 'klines' AND view_schema = $1",
        schema,
    )
    return [r[0] for r in rows]


async def _policy(
    conn: asyncpg.Connection, schema: str, name: str, offsets: tuple[dt.timedelta, dt.timedelta, dt.timedelta]
) -> None:
    relation = f"{schema}.{name}"
    current = await conn.fetchrow(
        "SELECT (config->>'start_offset')::interval, (config->>'end_offset')::interval, schedule_interval "
        "FROM timescaledb_information.jobs WHERE proc_name = 'policy_refresh_continuous_aggregate' "
        "AND hypertable_schema = $1 AND hypertable_name = $2",
        schema,
        name,
    )
    if current is not None and tuple(current) == offsets:
        return
    if current is not None:
        await conn.execute("SELECT remove_continuous_aggregate_policy($1::regclass)", relation)
    start, end, every = offsets
    await conn.execute(
        "SELECT add_continuous_aggregate_policy($1::regclass, start_offset => $2::interval, "
        "end_offset => $3::interval, schedule_interval => $4::interval)",
        relation,
        start,
        end,
        every,
    )
    log.info("%s: refreshed every %s over [now - %s, now - %s)", relation, every, start, end)
