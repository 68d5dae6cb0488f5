"""deploy/compose/initdb/10-tickvault-roles.sh, as the timescaledb image runs it on a new
volume, against the real PostgreSQL: `tickvault migrate` succeeds as the writer it creates,
and the role it creates for Grafana reads the tables the writer creates, and cannot write
them. Likewise the README's SQL for a read-only role in a database that exists already."""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest

from tests.conftest import ADMIN_DSN
from tests.deploy.tools import DEPLOY, ROOT, run
from tests.helpers import admin
from tickvault.settings import load_settings
from tickvault.store import migrate

pytestmark = pytest.mark.integration
SCRIPT = DEPLOY / "compose/initdb/10-tickvault-roles.sh"
README = ROOT / "README.md"


@pytest.fixture
async def names() -> AsyncIterator[dict[str, str]]:
    """An owner role (a superuser, as POSTGRES_USER is), its database, and the reader's name;
    all dropped afterwards."""
    tag = uuid.uuid4().hex[:8]
    out = {
        "owner": f"tv_owner_{tag}", "writer": f"tv_writer_{tag}", "reader": f"tv_grafana_{tag}",
        "database": f"tv_initdb_{tag}",
    }  # fmt: skip
    await admin(ADMIN_DSN, f'CREATE ROLE "{out["owner"]}" LOGIN SUPERUSER')
    await admin(ADMIN_DSN, f'CREATE DATABASE "{out["database"]}" OWNER "{out["owner"]}"')
    yield out
    # the database and, with it, its default privileges
    await admin(ADMIN_DSN, f'DROP DATABASE IF EXISTS "{out["database"]}" WITH (FORCE)')
    await admin(ADMIN_DSN, f'DROP ROLE IF EXISTS "{out["reader"]}"')
    await admin(ADMIN_DSN, f'DROP ROLE IF EXISTS "{out["writer"]}"')
    await admin(ADMIN_DSN, f'DROP ROLE "{out["owner"]}"')


def dsn(role: str, database: str) -> str:
    return ADMIN_DSN.replace("postgres@", f"{role}@", 1).rsplit("/", 1)[0] + f"/{database}"


async def test_the_writer_migrates_and_the_grafana_role_reads_what_it_creates_and_writes_nothing(
    names: dict[str, str],
) -> None:
    host = ADMIN_DSN.split("@", 1)[1].split("/", 1)[0]
    environ = dict(
        os.environ, PGHOST=host.split(":")[0], PGPORT=host.split(":")[1] if ":" in host else "5432",
        POSTGRES_USER=names["owner"], POSTGRES_DB=names["database"],
        TICKVAULT_PG_USER=names["writer"], TICKVAULT_PG_PASSWORD="not-a-real-password",
        GRAFANA_PG_USER=names["reader"], GRAFANA_PG_PASSWORD="not-a-real-password",
        TICKVAULT_ROLES_SQL=str(DEPLOY / "postgres/roles.sql"),  # compose mounts it on /tickvault
    )  # fmt: skip
    result = run("sh", str(SCRIPT), env=environ)
    assert result.returncode == 0, result.stderr

    settings = load_settings(
        postgres={"dsn": dsn(names["writer"], names["database"]), "create_database": False}
    )
    await migrate.upgrade(settings.postgres, "head", settings)

    reader = await asyncpg.connect(dsn(names["reader"], names["database"]))
    try:
        owner = "SELECT tableowner FROM pg_tables WHERE schemaname = 'tickvault' AND tablename = 'klines'"
        assert await reader.fetchval(owner) == names["writer"]
        assert await reader.fetchval("SELECT count(*) FROM tickvault.klines") == 0
        assert await reader.fetchval("SELECT count(*) FROM tickvault.fills") == 0
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await reader.execute("DELETE FROM tickvault.klines")
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await reader.execute("CREATE TABLE tickvault.grafana_was_here (x int)")
    finally:
        await reader.close()


def readme_reader_sql(owner: str, reader: str) -> str:
    """The README's statements that create Grafana's read-only role, for these role names."""
    text = README.read_text().split("Give Grafana a role that can only read", 1)[1]
    sql = text.split("```sql\n", 1)[1].split("```", 1)[0]
    assert "FOR ROLE tickvault " in sql  # the owner's name in the README
    sql = sql.replace("FOR ROLE tickvault ", f'FOR ROLE "{owner}" ').replace("'…'", "'not-a-real-password'")
    return re.sub(r"\bgrafana\b", f'"{reader}"', sql)


async def test_the_readme_s_reader_role_reads_tables_the_owner_creates_later(names: dict[str, str]) -> None:
    """Run by an administrator (not the owner): the default privileges must be the owner's,
    or tables the daemon creates afterwards (partitions, aggregates) stay unreadable."""
    settings = load_settings(
        postgres={"dsn": dsn(names["owner"], names["database"]), "create_database": False}
    )
    await migrate.upgrade(settings.postgres, "head", settings)
    await admin(dsn("postgres", names["database"]), readme_reader_sql(names["owner"], names["reader"]))
    await admin(dsn(names["owner"], names["database"]), "CREATE TABLE tickvault.created_later (x int)")

    reader = await asyncpg.connect(dsn(names["reader"], names["database"]))
    try:
        assert await reader.fetchval("SELECT count(*) FROM tickvault.klines") == 0
        assert await reader.fetchval("SELECT count(*) FROM tickvault.created_later") == 0
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await reader.execute("DELETE FROM tickvault.created_later")
    finally:
        await reader.close()
