"""Schema migrations (Alembic), database creation, and the "are migrations current" check.

Whether the time tables become TimescaleDB hypertables is settled here, before anything is
created: `postgres.timescale = "on"` on a server where TimescaleDB is not usable fails with
one error and leaves no database or schema behind; "auto" then takes native partitions.
The migrations get the answer as `config.attributes["timescale"]` (a bool).

After the migrations, where the time tables are hypertables, the `[timescale]` settings are
applied (`apply_timescale`): the compression policy and the kline aggregates with their
refresh policies. Unlike a migration this runs every time, so a changed setting takes effect
at the next `tickvault migrate` or daemon start.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path
from urllib.parse import unquote, urlsplit, urlunsplit

import asyncpg
from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy.exc import SQLAlchemyError

from tickvault.errors import ConfigError, StoreError
from tickvault.settings import PostgresSettings, Settings
from tickvault.store import aggregates, compression, db, timescale

log = logging.getLogger(__name__)
MIGRATIONS_DIR = Path(__file__).parent / "migrations"


def _alembic_config(pg: PostgresSettings, hypertables: bool = False) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes.update(
        dsn=db.dsn_of(pg), schema=pg.schema_name, timescale=hypertables, chunk_days=pg.partition_interval_days
    )
    return config


def _admin_dsn(dsn: str) -> str:
    """The same server's `postgres` database, for work before the DSN's database exists."""
    return urlunsplit(urlsplit(dsn)._replace(path="/postgres"))


def head_revision() -> str:
    script = ScriptDirectory.from_config(_alembic_config(PostgresSettings()))
    head = script.get_current_head()
    assert head is not None
    return head


async def create_database_if_missing(pg: PostgresSettings) -> bool:
    """Create the DSN's database when the server says it does not exist."""
    dsn = db.dsn_of(pg)
    try:
        conn = await asyncpg.connect(dsn, timeout=pg.connect_timeout_s)
    except asyncpg.InvalidCatalogNameError:
        if not pg.create_database:
            raise
    else:
        await conn.close()
        return False
    name = unquote(urlsplit(dsn).path.lstrip("/"))  # as asyncpg reads it: %20 is a space
    if not name or '"' in name or "\x00" in name:
        raise ConfigError("postgres.dsn names no usable database")
    admin = await asyncpg.connect(_admin_dsn(dsn), timeout=pg.connect_timeout_s)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    except asyncpg.DuplicateDatabaseError:
        return False
    finally:
        await admin.close()
    log.info("created database %s", name)
    return True


async def use_timescale(pg: PostgresSettings) -> bool:
    """Whether tables the migrations create now are hypertables: by `postgres.timescale`, and
    for "auto" whether TimescaleDB is usable (`timescale.unusable_reason`). Asks the server only
    while the schema is unmigrated: once the tables exist the answer no longer matters.
    Raises ConfigError for "on" where TimescaleDB is not usable."""
    if pg.timescale == "off":
        return False
    dsn = db.dsn_of(pg)
    try:
        conn = await asyncpg.connect(dsn, timeout=pg.connect_timeout_s)
        missing = False
    except asyncpg.InvalidCatalogNameError:
        if not pg.create_database:
            raise
        conn = await asyncpg.connect(_admin_dsn(dsn), timeout=pg.connect_timeout_s)
        missing = True
    try:
        if not missing and await current_revision(conn, pg.schema_name) is not None:
            return pg.timescale == "on"
        reason = await timescale.unusable_reason(conn, will_own_database=missing)
    finally:
        await conn.close()
    if reason is None:
        return True
    if pg.timescale == "on":
        raise ConfigError(f'postgres.timescale is "on", but {reason}')
    log.info("TimescaleDB not used, time tables get native partitions: %s", reason)
    return False


async def _alembic(
    pg: PostgresSettings, action: Callable[[Config, str], None], revision: str, hypertables: bool = False
) -> None:
    await db.retrying(pg, "migrate", lambda: create_database_if_missing(pg))
    try:
        await asyncio.to_thread(action, _alembic_config(pg, hypertables), revision)
    except SQLAlchemyError as exc:
        cause = getattr(exc, "orig", None) or exc
        raise StoreError(f"migration failed: {' '.join(str(cause).split())}") from None


async def upgrade(pg: PostgresSettings, revision: str = "head", settings: Settings | None = None) -> None:
    """Migrate to `revision`, creating the database (`postgres.create_database`) and the schema
    when missing, then apply `settings.timescale` (when `settings` is given; `pg` must be its
    postgres section). Raises ConfigError before creating anything when `postgres.timescale`
    is "on" and TimescaleDB is not usable, or when the timescale settings cannot be applied;
    StoreError when a migration fails."""
    hypertables = await db.retrying(pg, "migrate", lambda: use_timescale(pg))
    await _alembic(pg, command.upgrade, revision, hypertables)
    log.info("schema %s migrated to %s", pg.schema_name, revision)
    if settings is not None:
        await apply_timescale(settings)


async def apply_timescale(settings: Settings) -> None:
    """Bring compression and kline aggregates in line with `settings.timescale` where the
    schema's time tables are hypertables; nothing on native partitions. One transaction under
    the migrations' lock. Raises ConfigError (aggregates.policy_offsets), StoreError."""
    pg, ts = settings.postgres, settings.timescale
    conn = await db.retrying(
        pg, "migrate", lambda: asyncpg.connect(db.dsn_of(pg), timeout=pg.connect_timeout_s)
    )
    try:
        if not await _has_hypertables(conn, pg.schema_name):
            if ts.compress_after_s is not None or ts.kline_aggregates:
                log.info(
                    "schema %s has no hypertables; the [timescale] settings do not apply", pg.schema_name
                )
            return
        async with conn.transaction():
            await conn.execute(
                "SELECT pg_advisory_xact_lock(hashtext($1))", f"tickvault.migrate:{pg.schema_name}"
            )
            await compression.apply(conn, pg.schema_name, ts.compress_after_s)
            await aggregates.apply(
                conn, pg.schema_name, ts.kline_aggregates, settings.archive.hot_retention_s
            )
    except asyncpg.PostgresError as exc:
        raise StoreError(f"applying the timescale settings failed: {' '.join(str(exc).split())}") from None
    finally:
        await conn.close()


async def _has_hypertables(conn: asyncpg.Connection, schema: str) -> bool:
    if await conn.fetchval("SELECT to_regclass('timescaledb_information.hypertables')") is None:
        return False
    return bool(
        await conn.fetchval(
            "SELECT EXISTS (SELECT 1 FROM timescaledb_information.hypertables "
            "WHERE hypertable_schema = $1 AND hypertable_name = 'klines')",
            schema,
        )
    )


async def downgrade(pg: PostgresSettings, revision: str) -> None:
    await _alembic(pg, command.downgrade, revision)
    log.info("schema %s downgraded to %s", pg.schema_name, revision)


async def current_revision(conn: asyncpg.Connection, schema: str) -> str | None:
    exists = await conn.fetchval("SELECT to_regclass($1)", f"{schema}.alembic_version")
    if exists is None:
        return None
    value = await conn.fetchval(f"SELECT version_num FROM {schema}.alembic_version")  # noqa: S608 - validated identifier
    return str(value) if value is not None else None
