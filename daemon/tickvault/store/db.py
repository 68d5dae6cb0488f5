"""The asyncpg pool, and the translation of driver errors into tickvault's own."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Final, TypeVar

import asyncpg

from tickvault.errors import RowRejected, StoreError, StoreUnavailable
from tickvault.settings import PostgresSettings

log = logging.getLogger(__name__)
T = TypeVar("T")

# SQLSTATE classes that blame the values of a row: data exception, integrity constraint
# violation, program limit exceeded (e.g. an index row too large).
ROW_CLASSES: Final = frozenset({"22", "23", "54"})
# SQLSTATE classes that no retry cures: authorization failure, database does not exist.
REFUSED_CLASSES: Final = frozenset({"28", "3D"})
SERVER_SETTINGS: Final = {"timezone": "UTC", "application_name": "tickvault"}


def translate(exc: BaseException) -> StoreError:
    """Map an asyncpg/OS error to RowRejected (the rows are at fault) or StoreUnavailable."""
    if isinstance(exc, asyncpg.PostgresError):
        sqlstate = exc.sqlstate or ""
        if sqlstate[:2] in REFUSED_CLASSES:
            return StoreError(f"postgres refused the connection: {exc} (SQLSTATE {sqlstate})")
        if sqlstate[:2] in ROW_CLASSES:
            detail = " ".join(str(exc).split())  # one line: the server's DETAIL comes on its own line
            return RowRejected(f"database rejected the row: {detail} (SQLSTATE {sqlstate})")
        return StoreUnavailable(f"{type(exc).__name__}: {exc} (SQLSTATE {sqlstate})")
    detail = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return StoreUnavailable(f"postgres unreachable: {detail}")


DRIVER_ERRORS: Final = (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, asyncio.TimeoutError)


def affected(status: str) -> int:
    """The row count of a command status: "INSERT 0 5", "UPDATE 5", "COPY 5" → 5."""
    return int(status.rsplit(" ", 1)[-1])


async def retrying(pg: PostgresSettings, what: str, op: Callable[[], Awaitable[T]]) -> T:
    """Run `op`, retrying up to `connect_retries` times while the server is unreachable."""
    retries = pg.connect_retries
    delay_s = 0.5
    while True:
        try:
            return await op()
        except DRIVER_ERRORS as exc:
            error = translate(exc)
            if not error.retriable or retries <= 0:
                raise error from None
            log.warning("postgres not reachable to %s (%s); %d retries remaining", what, error, retries)
            retries -= 1
            await asyncio.sleep(delay_s)
            delay_s = min(delay_s * 2, pg.retry_max_backoff_s)


async def create_pool(
    pg: PostgresSettings, init: Callable[[asyncpg.Connection], Awaitable[None]] | None = None
) -> asyncpg.Pool:
    """Open the pool, retrying a bounded number of times while the server is unreachable."""
    pool: asyncpg.Pool = await retrying(
        pg,
        "open a pool",
        lambda: asyncpg.create_pool(
            pg.dsn.get_secret_value(),
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
