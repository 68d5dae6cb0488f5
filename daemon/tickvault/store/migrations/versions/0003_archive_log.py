"""The cold tier's log: one row per range committed to the cold tier (and its partition
dropped), written in the same transaction as the drop. `tickvault archive --list` shows it.

Revision ID: 0003
"""

from __future__ import annotations

from alembic import context, op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    schema = context.config.attributes["schema"]
    op.execute(
        f"""CREATE TABLE {schema}.archive_log (
            id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            table_name text NOT NULL,
            range_start timestamptz NOT NULL,
            range_end timestamptz NOT NULL,
            files integer NOT NULL,
            rows bigint NOT NULL,
            bytes bigint NOT NULL,
            checksum text NOT NULL,
            snapshot_id bigint,
            written_at timestamptz NOT NULL DEFAULT now()
        )"""
    )
    op.execute(f"CREATE INDEX ON {schema}.archive_log (table_name, range_start)")


def downgrade() -> None:
    schema = context.config.attributes["schema"]
    op.execute(f"DROP TABLE IF EXISTS {schema}.archive_log")
