"""deploy/postgres/roles.sql on TimescaleDB (README "Security"; skips where the extension is not
usable): with the extension created first by a superuser, as roles.sql's header says, the
writer alone makes the hypertables, their compression policy and the kline aggregates, writes,
compresses and rolls chunks; the reader reads hypertables, compressed chunks and aggregates
and changes none of them; the writer cannot touch another role's hypertable or its jobs."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from tests.helpers import TestEnv, admin
from tests.integration.test_archive import write
from tests.integration.test_archive_timescale import candles, pause_schema_jobs
from tests.integration.test_partitions import require_timescale
from tests.integration.test_roles import admin_count, admin_rows, denied, dsn, roles_database
from tickvault import Vault
from tickvault.archive import roller
from tickvault.store import Store, migrate
from tickvault.store.schema import TIME_TABLES

pytestmark = pytest.mark.integration


@pytest.fixture
async def roles() -> AsyncIterator[dict[str, str]]:
    """test_roles' `roles`, in a database where a superuser has created the timescaledb
    extension (roles.sql's header); skips where TimescaleDB is not usable."""
    async with roles_database() as names:
        await require_timescale(dsn("postgres", names["database"]))
        await admin(dsn("postgres", names["database"]), "CREATE EXTENSION IF NOT EXISTS timescaledb")
        yield names


async def connect(role: str, roles: dict[str, str]) -> asyncpg.Connection:
    return await asyncpg.connect(dsn(roles[role], roles["database"]))


async def test_the_writer_runs_hypertables_compression_aggregates_and_rolls_and_the_reader_only_reads(
    env: TestEnv, roles: dict[str, str], tmp_path: Path
) -> None:
    sections: dict[str, dict[str, Any]] = {
        "postgres": {"dsn": dsn(roles["writer"], roles["database"]), "schema": "tickvault",
                     "timescale": "on", "partition_interval_days": 1},
        "archive": {"root": str(tmp_path / "cold"), "hot_retention": "3d"},
        "timescale": {"compress_after": "2d", "kline_aggregates": ["1h"]},
    }  # fmt: skip
    settings = env.settings(**sections)
    await migrate.upgrade(settings.postgres, "head", settings)  # as the writer
    hypertables = await admin_rows(
        roles, "SELECT hypertable_name || ' ' || owner FROM timescaledb_information.hypertables "
        "WHERE hypertable_schema = 'tickvault'"
    )  # fmt: skip
    assert sorted(hypertables) == sorted(f"{t.name} {roles['writer']}" for t in TIME_TABLES)
    job_owners = await admin_rows(
        roles, "SELECT DISTINCT owner::text FROM timescaledb_information.jobs "
        "WHERE hypertable_schema = 'tickvault'"
    )  # fmt: skip
    assert job_owners == [roles["writer"]]  # compression and refresh policies run as the writer

    today = dt.datetime.now(dt.UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    sent = candles(today - dt.timedelta(days=6), 5 * 1440, ("BTC-USDT",))
    writer = await connect("writer", roles)
    try:
        await pause_schema_jobs(writer.fetch, "tickvault")  # as the writer, the jobs' owner
        async with Store(settings.postgres, writer=True) as store:
            await write(store, "kline", sent)
        for (job_id,) in await writer.fetch(
            "SELECT job_id FROM timescaledb_information.jobs WHERE hypertable_schema = 'tickvault' "
            "AND hypertable_name = 'klines' AND proc_name = 'policy_compression'"
        ):
            await writer.execute(f"CALL run_job({int(job_id)})")
        await writer.execute("CALL refresh_continuous_aggregate('tickvault.klines_1h', NULL, NULL)")
        compressed = await writer.fetchval(
            "SELECT count(*) FILTER (WHERE is_compressed) FROM timescaledb_information.chunks "
            "WHERE hypertable_schema = 'tickvault' AND hypertable_name = 'klines'"
        )
        assert compressed >= 3  # the 5 days end yesterday: all but the last two are older than 2d
    finally:
        await writer.close()

    outcomes = await roller.roll(settings, tables=["klines"])  # as the writer: drops rolled chunks
    assert outcomes and {o.status for o in outcomes} == {"rolled"}
    hot = await admin_count(roles, "SELECT count(*) FROM tickvault.klines")
    assert 0 < hot < len(sent)

    reader = await connect("reader", roles)
    try:
        assert await reader.fetchval("SELECT count(*) FROM tickvault.klines") == hot  # compressed chunks too
        assert await reader.fetchval("SELECT count(*) FROM tickvault.klines_1h") == 5 * 24
        chunk = await reader.fetchval(
            "SELECT chunk_schema || '.' || chunk_name FROM timescaledb_information.chunks "
            "WHERE hypertable_schema = 'tickvault' AND hypertable_name = 'klines' "
            "ORDER BY range_start LIMIT 1"
        )
        job_id = await reader.fetchval(
            "SELECT min(job_id) FROM timescaledb_information.jobs WHERE hypertable_schema = 'tickvault'"
        )
        await denied(
            reader,
            'INSERT INTO tickvault.klines (exchange, symbol, "interval", open_time, open, high, low, '
            "close, volume, closed) VALUES ('okx', 'X', '1m', now(), 1, 1, 1, 1, 1, true)",
            f"DELETE FROM {chunk}",  # noqa: S608 (a chunk's name, from TimescaleDB's catalog)
            f"DROP TABLE {chunk}",
            "SELECT drop_chunks('tickvault.klines', older_than => now())",
            f"SELECT decompress_chunk('{chunk}')",
            "SELECT add_retention_policy('tickvault.klines', INTERVAL '1 day')",
            "SELECT remove_compression_policy('tickvault.klines')",
            f"SELECT alter_job({job_id}, scheduled => true)",
            f"SELECT delete_job({job_id})",
            "DROP MATERIALIZED VIEW tickvault.klines_1h",
        )
    finally:
        await reader.close()
    assert await admin_count(roles, "SELECT count(*) FROM tickvault.klines") == hot

    reader_dsn = dsn(roles["reader"], roles["database"])
    async with Vault.connect(
        env.settings(**{**sections, "postgres": {**sections["postgres"], "dsn": reader_dsn}})
    ) as vault:
        start_ms = int((today - dt.timedelta(days=6)).timestamp() * 1000)
        read = await vault.klines("okx", "BTC-USDT", "1m", start=start_ms, end=start_ms + 7 * 86_400_000)
    assert read.num_rows == len(sent)  # hot, compressed and cold, as the reader
    assert read.column("close").to_pylist() == [Decimal(c["close"]) for c in sent]  # Decimal-equal


async def test_the_writer_cannot_touch_another_roles_hypertable_or_its_jobs(
    roles: dict[str, str],
) -> None:
    await admin(
        dsn("postgres", roles["database"]),
        "CREATE TABLE public.h (at timestamptz NOT NULL, x int); "
        "SELECT create_hypertable('public.h', 'at'); "
        "INSERT INTO public.h VALUES (now() - interval '30 days', 1); "
        "ALTER TABLE public.h SET (timescaledb.compress)",
    )
    job_id = await admin_rows(roles, "SELECT add_retention_policy('public.h', INTERVAL '10 years')")
    chunk = (await admin_rows(roles, "SELECT show_chunks('public.h')::text"))[0]
    writer = await connect("writer", roles)
    try:
        await denied(
            writer,
            "DROP TABLE public.h",
            "SELECT drop_chunks('public.h', older_than => now())",
            f"SELECT compress_chunk('{chunk}')",
            f"DELETE FROM {chunk}",  # noqa: S608 (a chunk's name, from TimescaleDB's catalog)
            "SELECT add_retention_policy('public.h', INTERVAL '1 day', if_not_exists => true)",
            "SELECT remove_retention_policy('public.h')",
            f"SELECT alter_job({job_id[0]}, scheduled => false)",
            f"SELECT delete_job({job_id[0]})",
        )
    finally:
        await writer.close()
    assert await admin_count(roles, "SELECT count(*) FROM public.h") == 1
    jobs = "SELECT count(*) FROM timescaledb_information.jobs WHERE hypertable_name = 'h'"
    assert await admin_count(roles, jobs) == 1
