"""Trades: the time table of the `trade` message kind (public market trades, tick data),
partitioned like the others (native range partitions or hypertables, as klines already are).

Revision ID: 0007
"""

from __future__ import annotations

from tickvault.store.migrations import time_tables

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

TABLES = ("trades",)


def upgrade() -> None:
    time_tables.create(TABLES)


def downgrade() -> None:
    time_tables.drop(TABLES)
