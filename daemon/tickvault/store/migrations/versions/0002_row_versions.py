"""Row versions: klines, orders, fills and bot_state keep the version (place in publish
order) of the message that wrote each row, so that the stored row never depends on the order
messages arrive in. Rows stored before this migration count as the oldest (0, 0).

Revision ID: 0002
"""

from __future__ import annotations

from alembic import context, op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

VERSIONED_TABLES = ("klines", "orders", "fills", "bot_state")


def upgrade() -> None:
    schema = context.config.attributes["schema"]
    for table in VERSIONED_TABLES:
        op.execute(
            f"ALTER TABLE {schema}.{table} ADD COLUMN version_ms bigint NOT NULL DEFAULT 0, "
            "ADD COLUMN version_seq bigint NOT NULL DEFAULT 0"
        )


def downgrade() -> None:
    schema = context.config.attributes["schema"]
    for table in VERSIONED_TABLES:
        op.execute(f"ALTER TABLE {schema}.{table} DROP COLUMN version_ms, DROP COLUMN version_seq")
