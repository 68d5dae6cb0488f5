"""The kline series the cold tier holds: (exchange, symbol, interval), written by the roller
in the transaction that logs a rolled klines range. Reads list series from it and the hot
table together (`Vault.kline_series`), so a series rolled entirely to the cold tier is still
known, e.g. to resample from it.

Revision ID: 0004
"""

from __future__ import annotations

from alembic import context, op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    schema = context.config.attributes["schema"]
    op.execute(
        f"""CREATE TABLE {schema}.cold_kline_series (
            exchange text NOT NULL,
            symbol text NOT NULL,
            "interval" text NOT NULL,
            PRIMARY KEY (exchange, symbol, "interval")
        )"""
    )


def downgrade() -> None:
    schema = context.config.attributes["schema"]
    op.execute(f"DROP TABLE IF EXISTS {schema}.cold_kline_series")
