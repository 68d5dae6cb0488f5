"""What the migrations that add time tables (0006, 0007) share: the tables are partitioned as
the schema's klines already are — native range partitions or hypertables — which the
extension's availability today does not tell (it may have come or gone since 0001)."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context, op

from tickvault.store.schema import create_statements, drop_statements


def _klines_are_native(schema: str) -> bool:
    found = op.get_bind().execute(
        sa.text("SELECT EXISTS (SELECT 1 FROM pg_partitioned_table WHERE partrelid = to_regclass(:t))"),
        {"t": f"{schema}.klines"},
    )
    return bool(found.scalar())


def create(tables: tuple[str, ...]) -> None:
    """Create `tables` (and their indexes) in the migrated schema, partitioned like klines."""
    attributes = context.config.attributes
    schema = attributes["schema"]
    timescale = not _klines_are_native(schema)
    for statement in create_statements(schema, timescale, attributes["chunk_days"], tables):
        op.execute(statement)


def drop(tables: tuple[str, ...]) -> None:
    for statement in drop_statements(context.config.attributes["schema"], tables):
        op.execute(statement)
