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
)
# which time-partitioned table each record kind lands in (bot_state has none)
KIND_TIME_TABLES: Final[dict[str, tuple[TimeTable, ...]]] = {
    "kline": (TIME_TABLES[0],),
    "order": (TIME_TABLES[1],),
    "fill": (TIME_TABLES[2],),
    "bot_state": (),
}

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
}

INDEXES: Final = (
    "CREATE INDEX ON {s}.orders (bot_id, updated_at)",
    "CREATE INDEX ON {s}.orders (symbol, updated_at)",
    "CREATE INDEX ON {s}.order_events (exchange, order_id, updated_at)",
    "CREATE INDEX ON {s}.fills (bot_id, ts)",
    "CREATE INDEX ON {s}.fills (exchange, order_id)",
    "CREATE INDEX ON {s}.dead_letters (received_at)",
)


def create_statements(schema: str, timescale: bool, chunk_days: int) -> list[str]:
    """DDL for every table, partitioned natively or as hypertables."""
    time_columns = {t.name: t.time_column for t in TIME_TABLES}
    statements = []
    for table, columns in TABLES.items():
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
    statements += [index.format(s=schema) for index in INDEXES]
    return statements


def drop_statements(schema: str) -> list[str]:
    return [f"DROP TABLE IF EXISTS {schema}.{table} CASCADE" for table in reversed(TABLES)]
