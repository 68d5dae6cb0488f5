"""Whether TimescaleDB is usable on a server, the question behind `postgres.timescale = "auto"`.

Usable means three things. The extension is installed on the server (`pg_available_extensions`).
Its loader library is preloaded (`shared_preload_libraries`): without it, loading the extension
ends the session with a FATAL `extension "timescaledb" must be preloaded`, so trying
`CREATE EXTENSION` inside a savepoint is no probe, it kills the connection. And the extension
exists in the database already or the role may create it (it is a trusted extension: CREATE on
the database is enough).

The preload is seen through `pg_settings`: the loader defines `timescaledb.max_background_workers`
in the postmaster, so every session of a server that preloads it has that setting, and no
session of a server that does not. `pg_settings` lists no placeholders (a `timescaledb.*` line
left in postgresql.conf without the library does not count), and any role may read it, unlike
`shared_preload_libraries` itself, which needs superuser or pg_read_all_settings.
"""

from __future__ import annotations

from typing import Final

import asyncpg

LOADER_SETTING: Final = "timescaledb.max_background_workers"

_PROBE: Final = """
SELECT
    EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb') AS installed,
    EXISTS (SELECT 1 FROM pg_settings WHERE name = $1) AS preloaded,
    EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'timescaledb') AS created,
    has_database_privilege(current_database(), 'CREATE') AS may_create
"""


async def unusable_reason(conn: asyncpg.Connection, *, will_own_database: bool = False) -> str | None:
    """None when the migrations can use TimescaleDB in `conn`'s database, else why not (one
    line, for a log or an error). `will_own_database`: `conn` is on another database of the
    server because the target one does not exist yet, and the role will own it once created
    (so it may create the extension there)."""
    row = await conn.fetchrow(_PROBE, LOADER_SETTING)
    if not row["installed"]:
        return "the timescaledb extension is not installed on this PostgreSQL server"
    if not row["preloaded"]:
        return (
            "the timescaledb extension is installed but not preloaded "
            "(add 'timescaledb' to shared_preload_libraries and restart the server)"
        )
    if not (row["created"] or row["may_create"] or will_own_database):
        return (
            "the timescaledb extension is not created in this database "
            "and the role lacks the CREATE privilege to create it"
        )
    return None
