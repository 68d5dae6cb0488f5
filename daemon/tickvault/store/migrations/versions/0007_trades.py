"""Trades: the time table of the `trade` message kind (public market trades, tick data),
partitioned like the others (native range partitions or hypertables, as klines already are).

Revision ID: 0007
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context, op

from tickvault.store.schema import create_statements, drop_statements

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

TABLES = ("trades",)


def _klines_are_native(schema: str) -> bool:
    """How this schema's time tables are partitioned: as klines are (which the extension's
    availability today does not tell: it may have come or gone since 0001)."""
    found = op.get_bind().execute(
        sa.text("SELECT EXISTS (SELECT 1 FROM pg_partitioned_table WHERE partrelid = to_regclass(:t))"),
        {"t": f"{schema}.klines"},
    )
    return bool(found.scalar())


def upgrade() -> None:
    attributes = context.config.attributes
    schema = attributes["schema"]
    timescale = not _klines_are_native(schema)
    for statement in create_statements(schema, timescale, attributes["chunk_days"], TABLES):
        op.execute(statement)


def downgrade() -> None:
    for statement in drop_statements(context.config.attributes["schema"], TABLES):
        op.execute(statement)
