"""Alembic environment: runs the migrations over SQLAlchemy's asyncpg dialect.

`tickvault.store.migrate` passes the DSN (`tickvault.store.db.dsn_of`), the schema, whether to
make hypertables (`timescale`, a bool) and their chunk width in days (`chunk_days`) in
`config.attributes`.
"""

from __future__ import annotations

import asyncio

import asyncpg
from alembic import context
from sqlalchemy import Connection, pool, text
from sqlalchemy.ext.asyncio import create_async_engine

config = context.config
schema: str = config.attributes["schema"]


def _run(connection: Connection) -> None:
    context.configure(connection=connection, version_table_schema=schema, transaction_per_migration=True)
    with context.begin_transaction():
        context.run_migrations()


def _lock_key() -> str:
    return f"tickvault.migrate:{schema}"


async def _connect() -> asyncpg.Connection:
    # asyncpg itself with the DSN every other client uses (its TLS parameters included), which
    # SQLAlchemy's URL would turn into keyword arguments asyncpg does not take
    return await asyncpg.connect(config.attributes["dsn"])


async def _main() -> None:
    engine = create_async_engine("postgresql+asyncpg://", async_creator=_connect, poolclass=pool.NullPool)
    try:
        async with engine.connect() as connection:
            # replicas starting together migrate one at a time; the others then find head
            # (a session lock: held across the per-migration transactions, freed on close)
            await connection.execute(text("SELECT pg_advisory_lock(hashtext(:key))"), {"key": _lock_key()})
            await connection.commit()
            # only when missing: CREATE SCHEMA IF NOT EXISTS needs CREATE on the database even
            # when the schema exists, which the least-privilege writer (README "Security") lacks
            found = text("SELECT 1 FROM pg_namespace WHERE nspname = :s")
            exists = await connection.scalar(found, {"s": schema})
            if exists is None:
                await connection.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))
            await connection.commit()
            await connection.run_sync(_run)
    finally:
        await engine.dispose()


asyncio.run(_main())
