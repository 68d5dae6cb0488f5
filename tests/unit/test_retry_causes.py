"""Driver errors map to the cause label of tickvault_store_retries_total (store/db.py)."""

from __future__ import annotations

import asyncpg
import pytest

from tickvault.errors import RowRejected, StoreUnavailable
from tickvault.store.db import translate


@pytest.mark.parametrize(
    ("error", "cause"),
    [
        (asyncpg.SerializationError("could not serialize access"), "serialization"),
        (asyncpg.DeadlockDetectedError("deadlock detected"), "deadlock"),
        (asyncpg.QueryCanceledError("canceling statement due to statement timeout"), "timeout"),
        (asyncpg.AdminShutdownError("terminating connection"), "connection"),
        (asyncpg.CannotConnectNowError("the database system is starting up"), "connection"),
        (asyncpg.ConnectionFailureError("connection failure"), "connection"),
        (asyncpg.ConnectionDoesNotExistError("connection was closed"), "connection"),
        (ConnectionRefusedError(111, "Connection refused"), "connection"),
        (TimeoutError(), "timeout"),
        (asyncpg.TooManyConnectionsError("too many clients"), "other"),
        (asyncpg.DiskFullError("no space left"), "other"),
    ],
)
def test_retriable_errors_carry_their_cause(error: BaseException, cause: str) -> None:
    translated = translate(error)
    assert isinstance(translated, StoreUnavailable)
    assert translated.retriable
    assert translated.cause == cause


def test_row_errors_are_not_retries() -> None:
    assert isinstance(translate(asyncpg.UniqueViolationError("duplicate key")), RowRejected)
