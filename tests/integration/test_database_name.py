"""The database `tickvault migrate` creates is named by the DSN as asyncpg reads it
(percent-decoded), and a name that would close the quoted identifier is refused."""

from __future__ import annotations

import uuid

import asyncpg
import pytest

from tests.conftest import ADMIN_DSN
from tests.helpers import admin
from tickvault.errors import ConfigError
from tickvault.settings import load_settings
from tickvault.store import migrate

pytestmark = pytest.mark.integration


def dsn_for(database: str) -> str:
    return ADMIN_DSN.rsplit("/", 1)[0] + "/" + database


async def test_a_percent_encoded_name_is_created_as_asyncpg_reads_it() -> None:
    name = f"tv name {uuid.uuid4().hex[:8]}"
    pg = load_settings(postgres={"dsn": dsn_for(name.replace(" ", "%20"))}).postgres
    try:
        assert await migrate.create_database_if_missing(pg) is True
        conn = await asyncpg.connect(ADMIN_DSN)
        try:
            assert await conn.fetchval("SELECT count(*) FROM pg_database WHERE datname = $1", name) == 1
        finally:
            await conn.close()
    finally:
        await admin(ADMIN_DSN, f'DROP DATABASE IF EXISTS "{name}"')


async def test_a_name_with_a_double_quote_is_refused() -> None:
    tag = uuid.uuid4().hex[:8]
    pg = load_settings(postgres={"dsn": dsn_for(f"tv_{tag}%22; DROP DATABASE postgres; --")}).postgres
    with pytest.raises(ConfigError, match="names no usable database"):
        await migrate.create_database_if_missing(pg)
