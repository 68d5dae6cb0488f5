"""Bot state history: every accepted bot_state snapshot, once. The bot_state writer inserts
into it in the transaction that updates the latest row; a redelivered snapshot (same
bot_id, ts, seq and state) adds nothing. The daemon deletes snapshots older than
`state.history_retention` by `ts`, through the (ts) index.

Revision ID: 0005
"""

from __future__ import annotations

from alembic import context, op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    schema = context.config.attributes["schema"]
    op.execute(
        f"""CREATE TABLE {schema}.bot_state_history (
            bot_id text NOT NULL,
            ts timestamptz NOT NULL,
            seq bigint,
            state jsonb NOT NULL,
            state_hash uuid NOT NULL,
            ingested_at timestamptz NOT NULL DEFAULT now()
        )"""
    )
    # the dedup key, and the index of a bot's history by time; a missing seq counts as -1
    op.execute(
        f"CREATE UNIQUE INDEX bot_state_history_key ON {schema}.bot_state_history "
        "(bot_id, ts, (coalesce(seq, -1)), state_hash)"
    )
    op.execute(f"CREATE INDEX bot_state_history_ts ON {schema}.bot_state_history (ts)")


def downgrade() -> None:
    schema = context.config.attributes["schema"]
    op.execute(f"DROP TABLE IF EXISTS {schema}.bot_state_history")
