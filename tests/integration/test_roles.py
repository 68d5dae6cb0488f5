"""The least-privilege roles of deploy/postgres/roles.sql (README "Security"), run with psql as
the README says, on a database of their own: the reader cannot write anything, the writer
cannot touch tables it does not own, and the daemon does all its work as the writer (migrate,
ingest, new partitions, a roll that drops the rolled ones) while bots read hot and cold as
the reader. Roles are cluster-wide: each test makes uniquely named ones and drops them."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import os
import uuid
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from tests.conftest import ADMIN_DSN
from tests.deploy.tools import ROOT, run
from tests.helpers import Daemon, TestEnv, admin, kill_process, spawn_daemon, wait_until
from tickvault import Vault
from tickvault.archive import roller
from tickvault.store import migrate

pytestmark = pytest.mark.integration
ROLES_SQL = ROOT / "deploy/postgres/roles.sql"
DENIED = asyncpg.InsufficientPrivilegeError  # SQLSTATE 42501, "permission denied" or "must be owner"
DAY_MS = 86_400_000


def dsn(role: str, database: str) -> str:
    return ADMIN_DSN.replace("postgres@", f"{role}@", 1).rsplit("/", 1)[0] + f"/{database}"


@pytest.fixture
async def roles() -> AsyncIterator[dict[str, str]]:
    """A database set up by roles.sql: its name, the writer's and the reader's; all dropped."""
    async with roles_database() as names:
        yield names


@contextlib.asynccontextmanager
async def roles_database() -> AsyncIterator[dict[str, str]]:
    """The `roles` fixture's work, for fixtures that build on it."""
    tag = uuid.uuid4().hex[:8]
    out = {"database": f"tv_roles_{tag}", "writer": f"tv_writer_{tag}", "reader": f"tv_reader_{tag}"}
    await admin(ADMIN_DSN, f'CREATE DATABASE "{out["database"]}"')
    try:
        result = run(
            "psql", "-v", "ON_ERROR_STOP=1", "-q", "-d", dsn("postgres", out["database"]),
            "-v", f"writer={out['writer']}", "-v", "writer_password=not-a-real-password",
            "-v", f"reader={out['reader']}", "-v", "reader_password=not-a-real-password",
            "-v", "schema=tickvault", "-f", str(ROLES_SQL),
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        yield out
    finally:
        await admin(ADMIN_DSN, f'DROP DATABASE IF EXISTS "{out["database"]}" WITH (FORCE)')
        await admin(ADMIN_DSN, f'DROP ROLE IF EXISTS "{out["writer"]}"')
        await admin(ADMIN_DSN, f'DROP ROLE IF EXISTS "{out["reader"]}"')


async def migrated(roles: dict[str, str]) -> None:
    """`tickvault migrate` as the writer."""
    from tickvault.settings import load_settings

    settings = load_settings(
        postgres={"dsn": dsn(roles["writer"], roles["database"]), "create_database": False}
    )
    await migrate.upgrade(settings.postgres, "head", settings)


async def denied(conn: asyncpg.Connection, *statements: str) -> None:
    for sql in statements:
        with pytest.raises(DENIED):
            await conn.execute(sql)


async def test_the_reader_reads_every_table_and_writes_none(roles: dict[str, str]) -> None:
    await migrated(roles)
    writer = await asyncpg.connect(dsn(roles["writer"], roles["database"]))
    reader = await asyncpg.connect(dsn(roles["reader"], roles["database"]))
    try:
        # a table the writer creates later (a new partition does the same) is readable too
        await writer.execute("CREATE TABLE tickvault.created_later (x int)")
        await writer.execute("INSERT INTO tickvault.created_later VALUES (1)")
        assert await reader.fetchval("SELECT count(*) FROM tickvault.klines") == 0
        assert await reader.fetchval("SELECT sum(x) FROM tickvault.created_later") == 1
        await denied(
            reader,
            "INSERT INTO tickvault.created_later VALUES (2)",
            "UPDATE tickvault.created_later SET x = 3",
            "DELETE FROM tickvault.created_later",
            "TRUNCATE tickvault.created_later",
            "TRUNCATE tickvault.klines",
            "DELETE FROM tickvault.bot_state",
            "DROP TABLE tickvault.fills",
            "ALTER TABLE tickvault.klines ADD COLUMN evil int",
            "CREATE TABLE tickvault.reader_was_here (x int)",
            "CREATE TABLE public.reader_was_here (x int)",
            "CREATE SCHEMA reader_was_here",
            "CREATE INDEX ON tickvault.created_later (x)",
        )
        assert await reader.fetchval("SELECT sum(x) FROM tickvault.created_later") == 1
    finally:
        await reader.close()
        await writer.close()


async def test_the_writer_cannot_drop_or_change_tables_it_does_not_own(roles: dict[str, str]) -> None:
    await migrated(roles)
    await admin(dsn("postgres", roles["database"]), "CREATE SCHEMA other; CREATE TABLE other.t (x int)")
    await admin(
        dsn("postgres", roles["database"]), "CREATE TABLE public.t (x int); INSERT INTO public.t VALUES (1)"
    )
    writer = await asyncpg.connect(dsn(roles["writer"], roles["database"]))
    try:
        await denied(
            writer,
            "DROP TABLE public.t",
            "DROP TABLE other.t",
            "TRUNCATE public.t",
            "DELETE FROM public.t",
            "INSERT INTO public.t VALUES (2)",
            "ALTER TABLE public.t ADD COLUMN y int",
            "DROP SCHEMA other CASCADE",
            "CREATE TABLE public.writer_was_here (x int)",
            "CREATE SCHEMA writer_was_here",
            f'CREATE ROLE "w{uuid.uuid4().hex[:8]}"',
            f'CREATE DATABASE "w{uuid.uuid4().hex[:8]}"',
            f'ALTER ROLE "{roles["writer"]}" SUPERUSER',
        )
        flags = await writer.fetchrow(
            "SELECT rolsuper, rolcreaterole, rolcreatedb, rolbypassrls FROM pg_roles "
            "WHERE rolname = current_user"
        )
        assert not any(flags.values())
        # what it does own, it may drop: the daemon drops the partitions it rolled
        await writer.execute("CREATE TABLE tickvault.scratch (x int)")
        await writer.execute("DROP TABLE tickvault.scratch")
    finally:
        await writer.close()
    assert await admin_count(roles, "SELECT count(*) FROM public.t") == 1


async def admin_count(roles: dict[str, str], sql: str) -> int:
    conn = await asyncpg.connect(dsn("postgres", roles["database"]))
    try:
        return int(await conn.fetchval(sql))
    finally:
        await conn.close()


def kline(open_ms: int, close: str) -> bytes:
    return json.dumps({
        "exchange": "okx", "symbol": "BTC-USDT", "interval": "1h", "open_time": open_ms,
        "open": "100.5", "high": "999", "low": "0.5", "close": close, "volume": "10", "closed": True,
    }).encode()  # fmt: skip


async def test_the_daemon_ingests_and_rolls_as_the_writer_and_bots_read_as_the_reader(
    env: TestEnv, roles: dict[str, str], tmp_path: Path
) -> None:
    """Ingest through the source into partitions the writer creates, roll the old days to the
    cold tier (which drops their partitions), then read both tiers as the reader."""
    day0_ms = (int(dt.datetime.now(dt.UTC).timestamp() * 1000) // DAY_MS - 6) * DAY_MS
    sections: dict[str, dict[str, Any]] = {
        "postgres": {
            "dsn": dsn(roles["writer"], roles["database"]), "schema": "tickvault",
            "timescale": "off", "partition_interval_days": 1, "partitions_ahead": 1,
        },
        "archive": {"root": str(tmp_path / "cold"), "hot_retention": "3d"},
    }  # fmt: skip
    settings = env.settings(**sections)
    await migrated(roles)
    daemon = Daemon(env)
    try:
        await daemon.start(settings)
        hours = range(0, 6 * 24, 6)
        await env.publish("kline", (kline(day0_ms + h * 3_600_000, f"{100 + h}.5") for h in hours))

        async def stored() -> bool:
            return await admin_count(roles, "SELECT count(*) FROM tickvault.klines") == len(hours)

        await wait_until(stored, 60, what="klines written by the writer")
    finally:
        assert await daemon.stop_all() == [0]

    outcomes = await roller.roll(settings, older_than_s=3 * 86_400)
    assert outcomes and {o.status for o in outcomes} == {"rolled"}
    hot = await admin_count(roles, "SELECT count(*) FROM tickvault.klines")
    assert 0 < hot < len(hours)  # the writer dropped the rolled days' partitions
    owners = await admin_rows(
        roles, "SELECT DISTINCT tableowner FROM pg_tables WHERE schemaname = 'tickvault'"
    )
    assert owners == [roles["writer"]]  # partitions included: nothing belongs to anyone else

    reader_settings = env.settings(
        **{**sections, "postgres": {**sections["postgres"], "dsn": dsn(roles["reader"], roles["database"])}}
    )
    async with Vault.connect(reader_settings) as vault:
        candles = await vault.klines("okx", "BTC-USDT", "1h", start=day0_ms, end=day0_ms + 7 * DAY_MS)
    assert candles.num_rows == len(hours)  # hot and cold, as the reader
    assert candles.column("close").to_pylist() == [Decimal(f"{100 + h}.5") for h in hours]
    assert os.listdir(tmp_path / "cold")  # the cold tier holds the rolled days


async def admin_rows(roles: dict[str, str], sql: str) -> list[Any]:
    conn = await asyncpg.connect(dsn("postgres", roles["database"]))
    try:
        return [r[0] for r in await conn.fetch(sql)]
    finally:
        await conn.close()


async def test_the_daemon_given_the_readers_dsn_exits_with_one_line_and_loses_nothing(
    env: TestEnv, roles: dict[str, str], tmp_path: Path
) -> None:
    """A statement refused for a missing privilege (SQLSTATE 42501; the reader meets it at the
    daemon's first partition, before any write) is not retried as if PostgreSQL were away:
    the daemon stops, exit code 1, one line naming the cause, the message unacknowledged; the
    writer's daemon then stores it once."""
    await migrated(roles)
    open_ms = (int(dt.datetime.now(dt.UTC).timestamp() * 1000) // 3_600_000) * 3_600_000
    postgres = {"dsn": dsn(roles["reader"], roles["database"]), "schema": "tickvault", "timescale": "off",
                "migrate_on_start": False, "partitions_ahead": 1}  # fmt: skip
    await env.publish("kline", [kline(open_ms, "101.5")])
    reader_log = tmp_path / "reader.log"
    proc = spawn_daemon(env, reader_log, postgres=postgres)
    try:
        code = await asyncio.to_thread(proc.wait, 60)
    finally:
        kill_process(proc)
    assert code == 1
    errors = [line for line in reader_log.read_text().splitlines() if "ERROR" in line or "error:" in line]
    assert any("permission denied" in line and "SQLSTATE 42501" in line for line in errors), errors
    assert "retrying" not in reader_log.read_text()  # not taken for an outage

    daemon = Daemon(env)
    try:
        await daemon.start(
            env.settings(postgres={**postgres, "dsn": dsn(roles["writer"], roles["database"])})
        )

        async def stored() -> bool:
            return await admin_count(roles, "SELECT count(*) FROM tickvault.klines") == 1

        await wait_until(stored, 60, what="the kline the reader's daemon left unacknowledged")
        await daemon.drain()
    finally:
        assert await daemon.stop_all() == [0]
    assert await admin_count(roles, "SELECT count(*) FROM tickvault.klines") == 1
