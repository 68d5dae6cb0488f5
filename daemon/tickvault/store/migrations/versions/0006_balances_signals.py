"""Balances and signals: two time tables of the `balance` and `signal` message kinds,
partitioned like the others (native range partitions or hypertables, as klines already are).

Revision ID: 0006
"""

from __future__ import annotations

from tickvault.store.migrations import time_tables

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

TABLES = ("balances", "signals")


def upgrade() -> None:
    time_tables.create(TABLES)


def downgrade() -> None:
    time_tables.drop(TABLES)
