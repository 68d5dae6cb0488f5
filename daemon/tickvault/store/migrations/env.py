"""Alembic environment: runs the migrations over SQLAlchemy's asyncpg dialect.

`tickvault.store.migrate` passes the URL, schema and TimescaleDB mode in `config.attributes`.
"""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy import Connection, pool, text
from sqlalchemy.ext.asyncio import create_async_engine

config = context.config
schema: str = config.attributes["schema"]


def _run(connection: Connection) -> None:
    context.configure(connection=connection, version_table_schema=schema, transaction_per_migration=True)
    with context.begin_transaction():
        context.run_migrations()


async def _main() -> None:
    engine = create_async_engine(config.attributes["url"], poolclass=pool.NullPool)
    try:
        async with engine.connect() as connection:
            await connection.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))
            await connection.commit()
            await connection.run_sync(_run)
    finally:
        await engine.dispose()


asyncio.run(_main())
