"""The asyncpg pool, and the translation of driver errors into tickvault's own."""

from __future__ import annotations

import asyncio
import logging
import os
import ssl
from collections.abc import Awaitable, Callable
from typing import Any, Final, TypeVar
from urllib.parse import parse_qs, parse_qsl, unquote, urlencode, urlsplit, urlunsplit

import asyncpg

from tickvault.errors import ConfigError, RowRejected, StoreError, StoreUnavailable
from tickvault.settings import PostgresSettings

log = logging.getLogger(__name__)
T = TypeVar("T")

# SQLSTATE classes that blame the values of a row: data exception, integrity constraint
# violation, program limit exceeded (e.g. an index row too large).
ROW_CLASSES: Final = frozenset({"22", "23", "54"})
# SQLSTATE classes that no retry cures: authorization failure, database does not exist.
REFUSED_CLASSES: Final = frozenset({"28", "3D"})
# insufficient_privilege: the role of postgres.dsn lacks a right (the reader's DSN given to the
# daemon, say); no retry cures it, and retrying would hide it
DENIED: Final = "42501"
# SQLSTATEs (or their class) → the cause of a retry (tickvault_store_retries_total)
SQLSTATE_CAUSES: Final = {
    "40001": "serialization", "40P01": "deadlock", "57014": "timeout", "08": "connection",
    "57P01": "connection", "57P02": "connection", "57P03": "connection",
}  # fmt: skip
# timezone and DateStyle fix the text of timestamps, which the writers hash to break ties
SERVER_SETTINGS: Final = {"timezone": "UTC", "datestyle": "ISO, MDY", "application_name": "tickvault"}


TLS_SETTINGS: Final = ("sslmode", "sslrootcert", "sslcert", "sslkey")


def dsn_of(pg: PostgresSettings) -> str:
    """`postgres.dsn` with the TLS settings that are set (`postgres.sslmode`, `sslrootcert`,
    `sslcert`, `sslkey`) written into its query, replacing the same parameters there: libpq
    (psycopg, the cold tier's catalog) and asyncpg read them alike, so every client tickvault
    opens connects the same way. A DSN that is not a postgresql:// URL comes back unchanged.
    Raises ConfigError when a TLS file setting names no readable file (the drivers would
    report it as an unreachable server, and retry)."""
    dsn = pg.dsn.get_secret_value()
    tls = {k: str(v) for k in TLS_SETTINGS if (v := getattr(pg, k)) is not None}
    for key in TLS_SETTINGS[1:]:
        path = tls.get(key)
        if path is not None and not (os.path.isfile(path) and os.access(path, os.R_OK)):
            raise ConfigError(f"postgres.{key}: {path} is not a readable file")
    parts = urlsplit(dsn)
    if not tls or parts.scheme not in ("postgres", "postgresql"):
        return dsn
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k not in tls]
    return urlunsplit(parts._replace(query=urlencode([*query, *tls.items()])))


def endpoint(dsn: str) -> str:
    """Where a DSN points, for messages, without user or password: "host:port" (comma-separated
    when several), or "socket DIR/.s.PGSQL.PORT" for a Unix-socket DSN (`?host=/dir`)."""
    parts = urlsplit(dsn)
    if parts.scheme not in ("postgres", "postgresql"):
        return "the server of postgres.dsn"
    query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    port = query.get("port", "5432")
    hosts = [unquote(h) for h in parts.netloc.rpartition("@")[2].split(",") if h] or [query.get("host", "")]
    out = []
    for host in hosts:
        if host.startswith("/"):
            out.append(f"socket {host.rstrip('/')}/.s.PGSQL.{port}")
        elif host.endswith("]") or ":" not in host:  # no port of its own ("[::1]" is a host alone)
            out.append(f"{host or 'localhost'}:{port}")
        else:
            out.append(host)
    return ",".join(out)


def translate(exc: BaseException, at: str = "") -> StoreError:
    """Map an asyncpg/OS error to RowRejected (the rows are at fault), StoreUnavailable (a
    retry may cure it) or StoreError (none will: the connection refused, a privilege missing,
    a bad option). `at` (from `endpoint`) names the server in connection errors."""
    where = f" at {at}" if at else ""
    if isinstance(exc, asyncpg.PostgresError):
        sqlstate = exc.sqlstate or ""
        if sqlstate[:2] in REFUSED_CLASSES:
            return StoreError(f"postgres{where} refused the connection: {exc} (SQLSTATE {sqlstate})")
        if sqlstate == DENIED:
            return StoreError(
                f"postgres{where} refused: {' '.join(str(exc).split())} (SQLSTATE {sqlstate}); "
                "the role of postgres.dsn lacks a right tickvault needs (README Security, "
                "deploy/postgres/roles.sql)"
            )
        if sqlstate[:2] in ROW_CLASSES:
            detail = " ".join(str(exc).split())  # one line: the server's DETAIL comes on its own line
            return RowRejected(f"database rejected the row: {detail} (SQLSTATE {sqlstate})")
        cause = SQLSTATE_CAUSES.get(sqlstate) or SQLSTATE_CAUSES.get(sqlstate[:2], "other")
        return StoreUnavailable(f"{type(exc).__name__}: {exc} (SQLSTATE {sqlstate})", cause)
    if isinstance(exc, asyncpg.ClientConfigurationError):  # a bad option: no retry cures it
        return StoreError(f"postgres.dsn is not usable: {exc}")
    if isinstance(exc, ssl.SSLCertVerificationError):  # the server is not who the root cert says
        return StoreError(
            f"postgres{where}: TLS certificate not trusted ({exc.verify_message}; "
            "see postgres.sslmode and postgres.sslrootcert)"
        )
    if isinstance(exc, ssl.SSLError):
        return StoreError(f"postgres{where}: TLS failed: {type(exc).__name__}: {exc}")
    if isinstance(exc, ValueError):  # the DSN does not parse; its text may hold the password
        return StoreError(f"postgres.dsn is not a valid postgresql:// URL ({type(exc).__name__})")
    detail = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    cause = "timeout" if isinstance(exc, asyncio.TimeoutError) else "connection"
    return StoreUnavailable(f"postgres unreachable{where}: {detail}", cause)


DRIVER_ERRORS: Final = (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, asyncio.TimeoutError)


def affected(status: str) -> int:
    """The row count of a command status: "INSERT 0 5", "UPDATE 5", "COPY 5" → 5."""
    return int(status.rsplit(" ", 1)[-1])


async def retrying(pg: PostgresSettings, what: str, op: Callable[[], Awaitable[T]]) -> T:
    """Run `op`, retrying up to `connect_retries` times while the server is unreachable."""
    retries = pg.connect_retries
    delay_s = 0.5
    at = endpoint(dsn_of(pg))
    while True:
        try:
            return await op()
        except (*DRIVER_ERRORS, ValueError) as exc:  # ValueError: the DSN does not parse
            error = translate(exc, at)
            if not error.retriable or retries <= 0:
                raise error from None
            log.warning("postgres not reachable to %s (%s); retries left: %d", what, error, retries)
            retries -= 1
            await asyncio.sleep(delay_s)
            delay_s = min(delay_s * 2, pg.retry_max_backoff_s)


async def connect(pg: PostgresSettings, what: str) -> asyncpg.Connection:
    """One connection with tickvault's session settings, retrying a bounded number of times
    while the server is unreachable (`what` names the work in the log)."""
    conn: asyncpg.Connection = await retrying(
        pg,
        what,
        lambda: asyncpg.connect(dsn_of(pg), timeout=pg.connect_timeout_s, server_settings=SERVER_SETTINGS),
    )
    return conn


async def create_pool(
    pg: PostgresSettings, init: Callable[[asyncpg.Connection], Awaitable[None]] | None = None
) -> asyncpg.Pool:
    """Open the pool, retrying a bounded number of times while the server is unreachable."""
    pool: asyncpg.Pool = await retrying(
        pg,
        "open a pool",
        lambda: asyncpg.create_pool(
            dsn_of(pg),
            min_size=1,
            max_size=pg.pool_max_size,
            timeout=pg.connect_timeout_s,
            server_settings=SERVER_SETTINGS,
            init=init,
        ),
    )
    return pool


async def run(pool: asyncpg.Pool, work: Callable[[asyncpg.Connection], Awaitable[Any]]) -> Any:
    """Run `work` on a pooled connection, translating driver errors."""
    try:
        async with pool.acquire() as conn:
            return await work(conn)
    except DRIVER_ERRORS as exc:
        raise translate(exc) from exc
    except (ValueError, OverflowError, RecursionError) as exc:  # a value of a row cannot be encoded
        raise RowRejected(f"cannot encode the row for PostgreSQL: {exc}") from exc


class Pinger:
    """A connection of its own that answers `SELECT 1`: whether the server takes work, even
    while every pooled connection is busy. `ping` connects on first use and again after a
    failure (once, no retries) and raises StoreUnavailable or StoreError; a ping cancelled
    (its caller's timeout) drops the connection, which its unanswered query would keep busy,
    so the next ping starts afresh. `close` is harmless twice."""

    def __init__(self, pg: PostgresSettings) -> None:
        self.pg = pg
        self._conn: asyncpg.Connection | None = None

    async def ping(self) -> None:
        try:
            if self._conn is None or self._conn.is_closed():
                self._conn = await asyncpg.connect(
                    dsn_of(self.pg), timeout=self.pg.connect_timeout_s,
                    server_settings=SERVER_SETTINGS,
                )  # fmt: skip
            await self._conn.fetchval("SELECT 1")
        except (*DRIVER_ERRORS, ValueError) as exc:
            await self.close()
            raise translate(exc) from None
        except asyncio.CancelledError:
            conn, self._conn = self._conn, None
            if conn is not None:
                conn.terminate()
            raise

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is None or conn.is_closed():
            return
        try:
            await conn.close(timeout=1)
        except DRIVER_ERRORS:  # a cancelled probe left a query in flight, or the server is gone
            conn.terminate()
        except asyncio.CancelledError:
            conn.terminate()
            raise
