"""Table definitions shared by the migrations, the partitioner and the writers.

Column names are the message field names (DESIGN.md); `ingested_at` is bookkeeping.
Time-series tables are partitioned by their time column: TimescaleDB hypertables when the
extension is usable (`timescale.unusable_reason`), native range partitions (plus a default
partition) otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final


@dataclass(frozen=True)
class TimeTable:
    name: str
    time_column: str


TIME_TABLES: Final = (
    TimeTable("klines", "open_time"),
    TimeTable("order_events", "updated_at"),
    TimeTable("fills", "ts"),
    TimeTable("balances", "ts"),
    TimeTable("signals", "ts"),
    TimeTable("trades", "ts"),
)
# which time-partitioned table each record kind lands in (bot_state has none)
KIND_TIME_TABLES: Final[dict[str, tuple[TimeTable, ...]]] = {
    "kline": (TIME_TABLES[0],),
    "order": (TIME_TABLES[1],),
    "fill": (TIME_TABLES[2],),
    "bot_state": (),
    "balance": (TIME_TABLES[3],),
    "signal": (TIME_TABLES[4],),
    "trade": (TIME_TABLES[5],),
}
# the tables of the first migration (0001); later migrations add their own
INITIAL_TABLES: Final = ("klines", "orders", "order_events", "fills", "bot_state", "dead_letters")

_ORDER_COLUMNS: Final = """
    order_id text NOT NULL,
    client_order_id text,
    exchange text NOT NULL,
    symbol text NOT NULL,
    side text NOT NULL,
    type text NOT NULL,
    status text NOT NULL,
    quantity numeric NOT NULL,
    price numeric,
    stop_price numeric,
    filled_quantity numeric NOT NULL,
    avg_fill_price numeric,
    bot_id text,
    strategy text,
    created_at timestamptz,
    updated_at timestamptz NOT NULL,
    seq bigint,
    ingested_at timestamptz NOT NULL DEFAULT now()"""

TABLES: Final[dict[str, str]] = {
    "klines": """
    exchange text NOT NULL,
    symbol text NOT NULL,
    "interval" text NOT NULL,
    open_time timestamptz NOT NULL,
    close_time timestamptz,
    open numeric NOT NULL,
    high numeric NOT NULL,
    low numeric NOT NULL,
    close numeric NOT NULL,
    volume numeric NOT NULL,
    quote_volume numeric,
    trades bigint,
    closed boolean NOT NULL,
    ingested_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (exchange, symbol, "interval", open_time)""",
    "orders": _ORDER_COLUMNS
    + """,
    PRIMARY KEY (exchange, order_id)""",
    "order_events": _ORDER_COLUMNS
    + """,
    event_hash uuid NOT NULL,
    UNIQUE (exchange, order_id, updated_at, event_hash)""",
    "fills": """
    fill_id text NOT NULL,
    order_id text NOT NULL,
    exchange text NOT NULL,
    symbol text NOT NULL,
    side text NOT NULL,
    quantity numeric NOT NULL,
    price numeric NOT NULL,
    fee numeric NOT NULL,
    fee_asset text,
    liquidity text,
    bot_id text,
    strategy text,
    ts timestamptz NOT NULL,
    ingested_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (exchange, symbol, fill_id, ts)""",
    "bot_state": """
    bot_id text PRIMARY KEY,
    ts timestamptz NOT NULL,
    seq bigint,
    state jsonb NOT NULL,
    ingested_at timestamptz NOT NULL DEFAULT now()""",
    "dead_letters": """
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    received_at timestamptz NOT NULL DEFAULT now(),
    source text NOT NULL,
    stream text NOT NULL,
    entry_id text NOT NULL,
    kind text,
    category text NOT NULL,
    reason text NOT NULL,
    payload bytea NOT NULL,
    replayed_at timestamptz,
    UNIQUE (source, stream, entry_id)""",
    "balances": """
    account text NOT NULL,
    exchange text NOT NULL,
    asset text NOT NULL,
    free numeric NOT NULL,
    locked numeric NOT NULL,
    ts timestamptz NOT NULL,
    version_ms bigint NOT NULL DEFAULT 0,
    version_seq bigint NOT NULL DEFAULT 0,
    ingested_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (account, exchange, asset, ts)""",
    "signals": """
    bot_id text NOT NULL,
    strategy text NOT NULL,
    exchange text NOT NULL,
    symbol text NOT NULL,
    ts timestamptz NOT NULL,
    action text NOT NULL,
    strength numeric,
    metadata jsonb,
    version_ms bigint NOT NULL DEFAULT 0,
    version_seq bigint NOT NULL DEFAULT 0,
    ingested_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (bot_id, strategy, exchange, symbol, ts)""",
    "trades": """
    exchange text NOT NULL,
    symbol text NOT NULL,
    trade_id text NOT NULL,
    price numeric NOT NULL,
    quantity numeric NOT NULL,
    side text,
    quote_quantity numeric,
    ts timestamptz NOT NULL,
    version_ms bigint NOT NULL DEFAULT 0,
    version_seq bigint NOT NULL DEFAULT 0,
    ingested_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (exchange, symbol, trade_id, ts)""",
}

INDEXES: Final = (  # (table, indexed columns)
    ("orders", "bot_id, updated_at"),
    ("orders", "symbol, updated_at"),
    ("order_events", "exchange, order_id, updated_at"),
    ("fills", "bot_id, ts"),
    ("fills", "exchange, order_id"),
    ("dead_letters", "received_at"),
    ("balances", "exchange, asset, ts"),
    ("signals", "exchange, symbol, ts"),
)


def create_statements(
    schema: str, timescale: bool, chunk_days: int, tables: tuple[str, ...] = INITIAL_TABLES
) -> list[str]:
    """DDL for `tables` (and their indexes), partitioned natively or as hypertables."""
    time_columns = {t.name: t.time_column for t in TIME_TABLES}
    statements = []
    for table in tables:
        columns = TABLES[table]
        column = time_columns.get(table)
        suffix = f" PARTITION BY RANGE ({column})" if column and not timescale else ""
        statements.append(f"CREATE TABLE {schema}.{table} ({columns}\n){suffix}")
        if column and timescale:
            statements.append(
                f"SELECT create_hypertable('{schema}.{table}', '{column}', "
                f"chunk_time_interval => INTERVAL '{chunk_days} days', if_not_exists => TRUE)"
            )
        elif column:
            statements.append(f"CREATE TABLE {schema}.{table}_default PARTITION OF {schema}.{table} DEFAULT")
    statements += [
        f"CREATE INDEX ON {schema}.{table} ({columns})" for table, columns in INDEXES if table in tables
    ]
    return statements


def drop_statements(schema: str, tables: tuple[str, ...] = INITIAL_TABLES) -> list[str]:
    return [f"DROP TABLE IF EXISTS {schema}.{table} CASCADE" for table in reversed(tables)]
