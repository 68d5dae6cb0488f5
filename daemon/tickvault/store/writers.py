"""Set-based idempotent writes: COPY a batch into a temp staging table, then one
INSERT … SELECT … ON CONFLICT per target table, all in one transaction.

Klines, fills and trades are mostly new rows, so `insert` first COPYs their batch straight into the
table: one atomic statement, and less than half of PostgreSQL's work per row. When a row's
key is already stored or repeats within the batch, PostgreSQL refuses the whole COPY and the
batch is upserted as above; both give the same rows.

The COPY is in text format: rows arrive as COPY text already (`tickvault.rows`), and
PostgreSQL parses text numbers and timestamps faster than the driver encodes them in Python.

Order independence. Every row carries the version of the message that wrote it
(`version_ms`, `version_seq`: its place in publish order, see `sources.Message.version`).
Each kind's rule is a strict total order over the messages of one key — its *rank* below —
and the stored row is the message of highest rank. "Replace when the new rank is higher"
reaches the same row whatever order, batching or repetition the messages come in, because
it is a maximum; ties between distinct messages are broken by an md5 of the row's values,
the same way within a batch (DISTINCT ON … ORDER BY rank) and across batches (ON CONFLICT …
WHERE rank is higher). The ranks, highest wins:
- kline: (closed, version). A closed candle is never replaced by an open one; otherwise the
  later-published message wins, so a redelivered or claimed older candle changes nothing.
- order: (terminal status, status = filled, updated_at, seq, status rank, version): a
  terminal status is never replaced by a non-terminal one, `filled` outranks the other
  terminal statuses, then the newest update wins. Two groups of fields are merged over
  every update instead, each with an order-free rule: `filled_quantity` and
  `avg_fill_price` come from the update with the greatest fill progress (so
  filled_quantity never decreases); `client_order_id`, `bot_id`, `strategy` and
  `created_at` hold the greatest value any update carried (they should all agree). Every
  update is also appended to order_events, deduplicated by a hash of its values.
- fill, trade: the first-published message wins (lowest version); redeliveries change nothing.
- bot_state: (ts, seq, version). Every distinct snapshot is also appended to
  bot_state_history, deduplicated by (bot_id, ts, seq, md5 of the state); the upsert returns
  the rows it made the latest (`LATEST_COLUMNS`), which the daemon then writes to the Redis
  cache (tickvault.state).
- balance, signal: (version): the later-published message wins.
A missing `seq` counts as -1.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from operator import attrgetter
from typing import Final

import asyncpg

from tickvault import rows
from tickvault.records import RECORD_TYPES, TERMINAL_STATUSES
from tickvault.rows import Item
from tickvault.store.db import affected

STAGE_PREFIX: Final = "tv_stage_"
VERSION_COLUMNS: Final = ("version_ms", "version_seq")
ORDER_IDENTITY: Final = ("client_order_id", "bot_id", "strategy", "created_at")
ORDER_FILL_PROGRESS: Final = ("filled_quantity", "avg_fill_price")
_TEXT: Final = attrgetter("text")
# a bot_state row as the Redis cache takes it: its rank parts and the state as jsonb text
LATEST_COLUMNS: Final = (
    "bot_id, ts, seq, state::text AS state, version_ms, version_seq, md5(state::text) AS state_md5"
)


def _q(names: Sequence[str], prefix: str = "") -> str:
    return ", ".join(f'{prefix}"{n}"' for n in names)


def _status_rank(expr: str) -> str:
    terminal = ", ".join(f"'{s}'" for s in sorted(TERMINAL_STATUSES))
    return (
        f"(CASE WHEN {expr} IN ({terminal}) THEN 3 WHEN {expr} = 'partially_filled' THEN 2 "
        f"WHEN {expr} = 'open' THEN 1 ELSE 0 END)"
    )


def _tiebreak(columns: Sequence[str], prefix: str = "") -> str:
    """md5 of the values: orders distinct messages of equal version (same entry id on two
    streams, same timestamp and offset on two partitions) the same way everywhere."""
    return f"md5(ROW({_q(columns, prefix)})::text)"


def _versioned(columns: Sequence[str]) -> tuple[str, ...]:
    return (*columns, *VERSION_COLUMNS)


def _row(exprs: Sequence[str]) -> str:
    """A rank as a row value, compared left to right (later parts only on a tie)."""
    return f"({', '.join(exprs)})"


def _sort(exprs: Sequence[str], direction: str) -> str:
    """A rank as ORDER BY keys: sorting separate keys is cheaper than sorting a row value."""
    return ", ".join(f"{e} {direction}" for e in exprs)


@dataclass(frozen=True)
class KindWriter:
    """How one record kind is written: its table, the COPY columns, and the statements that
    apply its rule from the staging table."""

    kind: str
    source_table: str
    columns: tuple[str, ...]  # the record's columns, then the version columns
    # (target table, SQL) run in order after the COPY; "" for a statement that only merges
    # fields of rows another statement counted
    statements: tuple[tuple[str, str], ...]
    insert_first: bool = False  # new keys are the rule: try `insert` before the upsert
    returning: str = ""  # the target table whose statement RETURNs the rows it wrote

    @property
    def stage(self) -> str:
        return STAGE_PREFIX + self.kind

    def copy_text(self, items: Sequence[Item], versions: Sequence[str]) -> bytes:
        """The batch as COPY text: each record's columns, then its message's version."""
        orders = self.kind == "order"
        texts = [rows.line(o.row()) for o in items] if orders else list(map(_TEXT, items))  # type: ignore[union-attr]
        return ("\n".join(map("\t".join, zip(texts, versions, strict=True))) + "\n").encode()


def _kline_sql(s: str) -> str:
    cols = RECORD_TYPES["kline"].COLUMNS
    key = ("exchange", "symbol", "interval", "open_time")
    values = [c for c in cols if c not in key]

    def rank(p: str) -> list[str]:
        return [f"{p}closed", f"{p}version_ms", f"{p}version_seq", _tiebreak(values, p)]

    return f"""
        INSERT INTO {s}.klines AS t ({_q(_versioned(cols))})
        SELECT DISTINCT ON ({_q(key)}) {_q(_versioned(cols))} FROM {STAGE_PREFIX}kline
        ORDER BY {_q(key)}, {_sort(rank(""), "DESC")}
        ON CONFLICT ({_q(key)}) DO UPDATE SET {_sets(values)}
        WHERE {_row(rank("EXCLUDED."))} > {_row(rank("t."))}"""  # noqa: S608


def _changed(values: Sequence[str]) -> str:
    return f"({_q(values, 'EXCLUDED.')}) IS DISTINCT FROM ({_q(values, 't.')})"


def _sets(values: Sequence[str]) -> str:
    """Take the new row's values and version; `ingested_at` moves only when a value changes
    (a message published again refreshes the version alone)."""
    sets = [f'"{c}" = EXCLUDED."{c}"' for c in _versioned(values)]
    sets.append(f"ingested_at = CASE WHEN {_changed(values)} THEN now() ELSE t.ingested_at END")
    return ", ".join(sets)


def _fill_progress(p: str) -> list[str]:
    """An order's (filled_quantity, avg_fill_price), ordered: more filled first, then a known
    average price, then the values (their text last, so equal numbers of other scales tie
    the same way everywhere)."""
    return [
        f"{p}filled_quantity", f"{p}avg_fill_price IS NOT NULL", f"coalesce({p}avg_fill_price, 0)",
        f'{p}filled_quantity::text COLLATE "C"', f"coalesce({p}avg_fill_price::text, '') COLLATE \"C\"",
    ]  # fmt: skip


def _order_sql(s: str) -> tuple[str, str, str]:
    """order_events; then the current row of each order, from its highest-ranked update;
    then the merged fields: each identity field's greatest value and the greatest fill
    progress any update carried, so an update that does not win still adds what it knows."""
    cols = RECORD_TYPES["order"].COLUMNS
    key = ("exchange", "order_id")
    values = [c for c in cols if c not in key and c not in ORDER_IDENTITY and c not in ORDER_FILL_PROGRESS]

    def rank(p: str) -> list[str]:
        status = _status_rank(p + "status")
        return [
            f"{status} = 3", f"{p}status = 'filled'", f"{p}updated_at", f"coalesce({p}seq, -1)", status,
            f"{p}version_ms", f"{p}version_seq", _tiebreak(values, p),
        ]  # fmt: skip

    events = f"""
        INSERT INTO {s}.order_events ({_q(cols)}, event_hash)
        SELECT {_q(cols)}, md5(ROW({_q(cols)})::text)::uuid FROM {STAGE_PREFIX}order
        ON CONFLICT (exchange, order_id, updated_at, event_hash) DO NOTHING"""  # noqa: S608
    current = f"""
        INSERT INTO {s}.orders AS t ({_q(_versioned(cols))})
        SELECT DISTINCT ON ({_q(key)}) {_q(_versioned(cols))} FROM {STAGE_PREFIX}order
        ORDER BY {_q(key)}, {_sort(rank(""), "DESC")}
        ON CONFLICT ({_q(key)}) DO UPDATE SET {_sets(values)}
        WHERE {_row(rank("EXCLUDED."))} > {_row(rank("t."))}"""  # noqa: S608
    identity = [f'greatest(t."{c}", b."{c}")' for c in ORDER_IDENTITY]
    progressed = f"{_row(_fill_progress('b.'))} > {_row(_fill_progress('t.'))}"
    sets = [f'"{c}" = {m}' for c, m in zip(ORDER_IDENTITY, identity, strict=True)]
    sets += [f'"{c}" = CASE WHEN {progressed} THEN b."{c}" ELSE t."{c}" END' for c in ORDER_FILL_PROGRESS]
    batch = ", ".join(
        [*(f'max("{c}") OVER w AS "{c}"' for c in ORDER_IDENTITY), _q(ORDER_FILL_PROGRESS), _q(key)]
    )
    merged = f"""
        UPDATE {s}.orders AS t SET {", ".join(sets)}, ingested_at = now()
        FROM (SELECT DISTINCT ON ({_q(key)}) {batch} FROM {STAGE_PREFIX}order
              WINDOW w AS (PARTITION BY {_q(key)})
              ORDER BY {_q(key)}, {_sort(_fill_progress(""), "DESC")}) AS b
        WHERE t.exchange = b.exchange AND t.order_id = b.order_id
          AND (({", ".join(identity)}) IS DISTINCT FROM ({_q(ORDER_IDENTITY, "t.")}) OR {progressed})"""  # noqa: S608
    return events, current, merged


def _first_sql(s: str, kind: str, table: str, key: tuple[str, ...]) -> str:
    """The first-published message of each key wins (fill, trade)."""
    cols = RECORD_TYPES[kind].COLUMNS
    values = [c for c in cols if c not in key]

    def rank(p: str) -> list[str]:
        return [f"{p}version_ms", f"{p}version_seq", _tiebreak(values, p)]

    return f"""
        INSERT INTO {s}.{table} AS t ({_q(_versioned(cols))})
        SELECT DISTINCT ON ({_q(key)}) {_q(_versioned(cols))} FROM {STAGE_PREFIX}{kind}
        ORDER BY {_q(key)}, {_sort(rank(""), "ASC")}
        ON CONFLICT ({_q(key)}) DO UPDATE SET {_sets(values)}
        WHERE {_row(rank("EXCLUDED."))} < {_row(rank("t."))}"""  # noqa: S608


def _bot_state_sql(s: str) -> tuple[str, str]:
    """bot_state_history, then the latest row of each bot, returning what it wrote."""
    cols = RECORD_TYPES["bot_state"].COLUMNS

    def rank(p: str) -> list[str]:
        return [
            f"{p}ts",
            f"coalesce({p}seq, -1)",
            f"{p}version_ms",
            f"{p}version_seq",
            f"md5({p}state::text)",
        ]

    history = f"""
        INSERT INTO {s}.bot_state_history ({_q(cols)}, state_hash)
        SELECT {_q(cols)}, md5(state::text)::uuid FROM {STAGE_PREFIX}bot_state
        ON CONFLICT (bot_id, ts, (coalesce(seq, -1)), state_hash) DO NOTHING"""  # noqa: S608
    latest = f"""
        INSERT INTO {s}.bot_state AS t ({_q(_versioned(cols))})
        SELECT DISTINCT ON (bot_id) {_q(_versioned(cols))} FROM {STAGE_PREFIX}bot_state
        ORDER BY bot_id, {_sort(rank(""), "DESC")}
        ON CONFLICT (bot_id) DO UPDATE SET {_sets(("ts", "seq", "state"))}
        WHERE {_row(rank("EXCLUDED."))} > {_row(rank("t."))}
        RETURNING {LATEST_COLUMNS}"""  # noqa: S608
    return history, latest


def _latest_sql(s: str, kind: str, table: str, key: tuple[str, ...]) -> str:
    """The later-published message of each key wins (balance, signal)."""
    cols = RECORD_TYPES[kind].COLUMNS
    values = [c for c in cols if c not in key]

    def rank(p: str) -> list[str]:
        return [f"{p}version_ms", f"{p}version_seq", _tiebreak(values, p)]

    return f"""
        INSERT INTO {s}.{table} AS t ({_q(_versioned(cols))})
        SELECT DISTINCT ON ({_q(key)}) {_q(_versioned(cols))} FROM {STAGE_PREFIX}{kind}
        ORDER BY {_q(key)}, {_sort(rank(""), "DESC")}
        ON CONFLICT ({_q(key)}) DO UPDATE SET {_sets(values)}
        WHERE {_row(rank("EXCLUDED."))} > {_row(rank("t."))}"""  # noqa: S608


FILL_KEY: Final = ("exchange", "symbol", "fill_id", "ts")
TRADE_KEY: Final = ("exchange", "symbol", "trade_id", "ts")
BALANCE_KEY: Final = ("account", "exchange", "asset", "ts")
SIGNAL_KEY: Final = ("bot_id", "strategy", "exchange", "symbol", "ts")


def build_writers(schema: str) -> dict[str, KindWriter]:
    events, current, merged = _order_sql(schema)
    history, latest = _bot_state_sql(schema)
    specs = {
        "kline": ("klines", (("klines", _kline_sql(schema)),)),
        "order": ("orders", (("order_events", events), ("orders", current), ("", merged))),
        "fill": ("fills", (("fills", _first_sql(schema, "fill", "fills", FILL_KEY)),)),
        "bot_state": ("bot_state", (("bot_state_history", history), ("bot_state", latest))),
        "balance": ("balances", (("balances", _latest_sql(schema, "balance", "balances", BALANCE_KEY)),)),
        "signal": ("signals", (("signals", _latest_sql(schema, "signal", "signals", SIGNAL_KEY)),)),
        "trade": ("trades", (("trades", _first_sql(schema, "trade", "trades", TRADE_KEY)),)),
    }
    return {
        kind: KindWriter(
            kind, table, _versioned(RECORD_TYPES[kind].COLUMNS), statements,
            kind in ("kline", "fill", "balance", "signal", "trade"),
            "bot_state" if kind == "bot_state" else "",
        )
        for kind, (table, statements) in specs.items()
    }  # fmt: skip


async def create_staging(conn: asyncpg.Connection, schema: str, writers: dict[str, KindWriter]) -> None:
    """Temp tables live per connection and empty themselves at every commit."""
    for w in writers.values():
        await conn.execute(
            f"CREATE TEMP TABLE IF NOT EXISTS {w.stage} "
            f"(LIKE {schema}.{w.source_table} INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"
        )


async def _once(data: bytes) -> AsyncIterator[bytes]:
    yield data  # asyncpg takes bytes only as a path, so hand it an iterable


async def insert(
    conn: asyncpg.Connection, schema: str, w: KindWriter, batch: Sequence[rows.Row], versions: Sequence[str]
) -> dict[str, int] | None:
    """COPY a batch of new rows straight into the table, atomically. None when PostgreSQL
    refuses it (a key already stored or repeated, or any bad value): nothing was written and
    `write` must decide."""
    data = w.copy_text(batch, versions)
    try:
        status = await conn.copy_to_table(
            w.source_table, schema_name=schema, source=_once(data), columns=w.columns, format="text"
        )
    except asyncpg.PostgresError:
        return None
    return {w.source_table: affected(status)}


async def write(
    conn: asyncpg.Connection, w: KindWriter, items: Sequence[Item], versions: Sequence[str]
) -> tuple[dict[str, int], list[asyncpg.Record]]:
    """Write one batch in one transaction; returns rows inserted or updated per table, and the
    rows the `returning` statement wrote (committed by then)."""
    written: dict[str, int] = {}
    returned: list[asyncpg.Record] = []
    data = w.copy_text(items, versions)
    async with conn.transaction():
        await conn.copy_to_table(w.stage, source=_once(data), columns=w.columns, format="text")
        for table, sql in w.statements:
            if table and table == w.returning:
                returned = list(await conn.fetch(sql))
                written[table] = written.get(table, 0) + len(returned)
                continue
            status = await conn.execute(sql)
            if table:
                written[table] = written.get(table, 0) + affected(status)
    return written, returned
