"""Initial tables: klines, orders, order_events, fills, bot_state, dead_letters.

Revision ID: 0001
"""

from __future__ import annotations

from alembic import context, op
from sqlalchemy import text

from tickvault.store.schema import create_statements, drop_statements

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def _use_timescale() -> bool:
    mode = context.config.attributes["timescale"]
    if mode == "off":
        return False
    if mode == "on":
        return True
    found = (
        op.get_bind()
        .execute(text("SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb'"))
        .scalar()
    )
    return found is not None


def upgrade() -> None:
    attributes = context.config.attributes
    timescale = _use_timescale()
    if timescale:
        op.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
    for statement in create_statements(attributes["schema"], timescale, attributes["chunk_days"]):
        op.execute(statement)


def downgrade() -> None:
    for statement in drop_statements(context.config.attributes["schema"]):
        op.execute(statement)
