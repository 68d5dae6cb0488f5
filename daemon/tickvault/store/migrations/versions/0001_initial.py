"""Initial tables: klines, orders, order_events, fills, bot_state, dead_letters.

Revision ID: 0001
"""

from __future__ import annotations

from alembic import context, op

from tickvault.store.schema import create_statements, drop_statements

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def _use_timescale() -> bool:
    # settled by tickvault.store.migrate.use_timescale before anything was created: asking
    # here would be too late to refuse "on" cleanly, and a probe by CREATE EXTENSION cannot
    # be rolled back to a savepoint where the library is not preloaded (the error is FATAL)
    return bool(context.config.attributes["timescale"])


def upgrade() -> None:
    attributes = context.config.attributes
    timescale = _use_timescale()
    if timescale:
        # the migrate lock is per schema; two schemas migrating at once in one database would
        # both try to create the extension, and the second would hit a unique violation
        op.execute("SELECT pg_advisory_xact_lock(hashtext('tickvault.create_extension'))")
        op.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
    for statement in create_statements(attributes["schema"], timescale, attributes["chunk_days"]):
        op.execute(statement)


def downgrade() -> None:
    for statement in drop_statements(context.config.attributes["schema"]):
        op.execute(statement)
