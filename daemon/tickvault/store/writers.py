"""Set-based idempotent writes: COPY a batch into a temp staging table, then one
INSERT … SELECT … ON CONFLICT per target table, all in one transaction.

Klines and fills are mostly new rows, so `insert` first COPYs their batch straight into the
table: one atomic statement, and less than half of PostgreSQL's work per row. When a row's
key is already stored or repeats within the batch, PostgreSQL refuses the whole COPY and the
batch is upserted as above; both give the same rows.

The COPY is in text format: rows arrive as COPY text already (`tickvault.rows`), and
PostgreSQL parses text numbers and timestamps faster than the driver encodes them in Python.

Each kind's rule lives in its ON CONFLICT clause:
- kline: a closed candle is never replaced by an open one; an open candle only by one whose
  volume is not lower (an open candle's volume never shrinks, so a redelivered old update
  cannot roll it back); identical rows are not rewritten.
- order: the current row only moves forward — by (updated_at, seq, status rank,
  filled_quantity) — and never from a terminal status to a non-terminal one nor to a lower
  filled_quantity. Several updates of one order in a batch are first folded in that order
  (`fold_orders`). Every update is also appended to order_events, deduplicated by a hash of
  its values.
- fill: first write wins; redelivered fills are dropped.
- bot_state: the newest (ts, seq) wins.
Within one batch, duplicates of a key are collapsed first by the same ordering (ON CONFLICT
cannot touch one row twice in a statement); `ord` keeps arrival order as the last tiebreak.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from operator import attrgetter
from typing import Any, Final

import asyncpg

from tickvault import rows
from tickvault.records import RECORD_TYPES, TERMINAL_STATUSES, Order
from tickvault.rows import Item
from tickvault.store.db import affected

STAGE_PREFIX: Final = "tv_stage_"
_TEXT: Final = attrgetter("text")


def _q(names: Sequence[str], prefix: str = "") -> str:
    return ", ".join(f'{prefix}"{n}"' for n in names)


def _status_rank(expr: str) -> str:
    terminal = ", ".join(f"'{s}'" for s in sorted(TERMINAL_STATUSES))
    return (
        f"(CASE WHEN {expr} IN ({terminal}) THEN 3 WHEN {expr} = 'partially_filled' THEN 2 "
        f"WHEN {expr} = 'open' THEN 1 ELSE 0 END)"
    )


def _updates(columns: Sequence[str], keep_old: Sequence[str] = ()) -> str:
    sets = [
        f'"{c}" = coalesce(EXCLUDED."{c}", t."{c}")' if c in keep_old else f'"{c}" = EXCLUDED."{c}"'
        for c in columns
    ]
    return ", ".join([*sets, "ingested_at = now()"])


@dataclass(frozen=True)
class KindWriter:
    kind: str
    source_table: str
    columns: tuple[str, ...]
    statements: tuple[tuple[str, str], ...]  # (target table, SQL) run in order after the COPY
    extra_columns: tuple[str, ...] = ("ord",)  # staging-only columns after the record's own
    insert_first: bool = False  # new keys are the rule: try `insert` before the upsert

    @property
    def stage(self) -> str:
        return STAGE_PREFIX + self.kind

    def copy_text(self, items: Sequence[Item]) -> bytes:
        """The batch as COPY text for the staging table, staging-only columns included."""
        if self.kind == "order":
            lines = [rows.line(values) for values in order_rows(items)]  # type: ignore[arg-type]
        else:
            lines = [f"{row.text}\t{i}" for i, row in enumerate(items)]  # type: ignore[union-attr]
        lines.append("")
        return "\n".join(lines).encode()


STATUS_RANK: Final = {"new": 0, "open": 1, "partially_filled": 2} | dict.fromkeys(TERMINAL_STATUSES, 3)
ORDER_KEEP_OLD: Final = ("client_order_id", "bot_id", "strategy", "created_at")


def _progress(o: Order) -> tuple[Any, ...]:
    return (o.updated_at, -1 if o.seq is None else o.seq, STATUS_RANK[o.status], o.filled_quantity)


def supersedes(new: Order, current: Order) -> bool:
    """True when `new` may replace `current`: newer, and no step backwards."""
    return (
        _progress(new) > _progress(current)
        and new.filled_quantity >= current.filled_quantity
        and (new.status in TERMINAL_STATUSES or current.status not in TERMINAL_STATUSES)
    )


def fold_orders(updates: Sequence[Order]) -> list[Order]:
    """Collapse each order's updates in one batch to the state they reach when applied in
    progress order, each only if it supersedes the state so far (optional fields an update
    omits are kept). The result is checked once more against the stored row in SQL."""
    by_key: dict[tuple[str, str], Order] = {}
    for update in sorted(updates, key=_progress):
        key = (update.exchange, update.order_id)
        current = by_key.get(key)
        if current is None:
            by_key[key] = update
        elif supersedes(update, current):
            kept = {f: getattr(current, f) for f in ORDER_KEEP_OLD if getattr(update, f) is None}
            by_key[key] = update.model_copy(update=kept) if kept else update
    return list(by_key.values())


def order_rows(records: Sequence[Order]) -> list[tuple[Any, ...]]:
    """Every update (current=false) for order_events, plus one folded row per order (current=true)."""
    events = [(*r.row(), i, False) for i, r in enumerate(records)]
    return events + [(*r.row(), 0, True) for r in fold_orders(records)]


def _kline_sql(s: str) -> str:
    cols = RECORD_TYPES["kline"].COLUMNS
    key = ("exchange", "symbol", "interval", "open_time")
    values = [c for c in cols if c not in key]
    return f"""
        INSERT INTO {s}.klines AS t ({_q(cols)})
        SELECT DISTINCT ON ({_q(key)}) {_q(cols)} FROM {STAGE_PREFIX}kline
        ORDER BY {_q(key)}, closed DESC, (CASE WHEN closed THEN 0 ELSE volume END) DESC, ord DESC
        ON CONFLICT ({_q(key)}) DO UPDATE SET {_updates(values)}
        WHERE (EXCLUDED.closed OR (NOT t.closed AND EXCLUDED.volume >= t.volume))
          AND ({_q(values, "t.")}) IS DISTINCT FROM ({_q(values, "EXCLUDED.")})"""  # noqa: S608


def _order_sql(s: str) -> tuple[str, str]:
    cols = RECORD_TYPES["order"].COLUMNS
    key = ("exchange", "order_id")
    values = [c for c in cols if c not in key]
    terminal = ", ".join(f"'{x}'" for x in sorted(TERMINAL_STATUSES))

    def progress(p: str) -> str:
        return f"({p}updated_at, coalesce({p}seq, -1), {_status_rank(p + 'status')}, {p}filled_quantity)"

    events = f"""
        INSERT INTO {s}.order_events ({_q(cols)}, event_hash)
        SELECT {_q(cols)}, md5(ROW({_q(cols)})::text)::uuid FROM {STAGE_PREFIX}order WHERE NOT current
        ON CONFLICT (exchange, order_id, updated_at, event_hash) DO NOTHING"""  # noqa: S608
    current = f"""
        INSERT INTO {s}.orders AS t ({_q(cols)})
        SELECT {_q(cols)} FROM {STAGE_PREFIX}order WHERE current
        ON CONFLICT ({_q(key)}) DO UPDATE SET {_updates(values, keep_old=ORDER_KEEP_OLD)}
        WHERE {progress("EXCLUDED.")} > {progress("t.")}
          AND EXCLUDED.filled_quantity >= t.filled_quantity
          AND (EXCLUDED.status IN ({terminal}) OR t.status NOT IN ({terminal}))"""  # noqa: S608
    return events, current


def _fill_sql(s: str) -> str:
    cols = RECORD_TYPES["fill"].COLUMNS
    return f"""
        INSERT INTO {s}.fills ({_q(cols)}) SELECT {_q(cols)} FROM {STAGE_PREFIX}fill
        ON CONFLICT (exchange, symbol, fill_id, ts) DO NOTHING"""  # noqa: S608


def _bot_state_sql(s: str) -> str:
    cols = RECORD_TYPES["bot_state"].COLUMNS
    return f"""
        INSERT INTO {s}.bot_state AS t ({_q(cols)})
        SELECT DISTINCT ON (bot_id) {_q(cols)} FROM {STAGE_PREFIX}bot_state
        ORDER BY bot_id, ts DESC, coalesce(seq, -1) DESC, ord DESC
        ON CONFLICT (bot_id) DO UPDATE SET {_updates(("ts", "seq", "state"))}
        WHERE (EXCLUDED.ts, coalesce(EXCLUDED.seq, -1)) > (t.ts, coalesce(t.seq, -1))"""  # noqa: S608


def build_writers(schema: str) -> dict[str, KindWriter]:
    events, current = _order_sql(schema)
    specs = {
        "kline": ("klines", (("klines", _kline_sql(schema)),)),
        "order": ("orders", (("order_events", events), ("orders", current))),
        "fill": ("fills", (("fills", _fill_sql(schema)),)),
        "bot_state": ("bot_state", (("bot_state", _bot_state_sql(schema)),)),
    }
    return {
        kind: KindWriter(
            kind, table, RECORD_TYPES[kind].COLUMNS, statements,
            ("ord", "current") if kind == "order" else ("ord",), kind in ("kline", "fill"),
        )
        for kind, (table, statements) in specs.items()
    }  # fmt: skip


async def create_staging(conn: asyncpg.Connection, schema: str, writers: dict[str, KindWriter]) -> None:
    """Temp tables live per connection and empty themselves at every commit."""
    for w in writers.values():
        await conn.execute(
            f"CREATE TEMP TABLE IF NOT EXISTS {w.stage} "
            f"(LIKE {schema}.{w.source_table} INCLUDING DEFAULTS, ord integer, current boolean) "
            "ON COMMIT DELETE ROWS"
        )


async def _once(data: bytes) -> AsyncIterator[bytes]:
    yield data  # asyncpg takes bytes only as a path, so hand it an iterable


async def insert(
    conn: asyncpg.Connection, schema: str, w: KindWriter, batch: Sequence[rows.Row]
) -> dict[str, int] | None:
    """COPY a batch of new rows straight into the table, atomically. None when PostgreSQL
    refuses it (a key already stored or repeated, or any bad value): nothing was written and
    `write` must decide."""
    data = ("\n".join(map(_TEXT, batch)) + "\n").encode()
    try:
        status = await conn.copy_to_table(
            w.source_table, schema_name=schema, source=_once(data), columns=w.columns, format="text"
        )
    except asyncpg.PostgresError:
        return None
    return {w.source_table: affected(status)}


async def write(conn: asyncpg.Connection, w: KindWriter, items: Sequence[Item]) -> dict[str, int]:
    """Write one batch in one transaction; returns rows inserted or updated per table."""
    written: dict[str, int] = {}
    data = w.copy_text(items)
    async with conn.transaction():
        await conn.copy_to_table(
            w.stage, source=_once(data), columns=(*w.columns, *w.extra_columns), format="text"
        )
        for table, sql in w.statements:
            status = await conn.execute(sql)
            written[table] = written.get(table, 0) + affected(status)
    return written
