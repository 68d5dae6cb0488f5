"""The PostgreSQL probe of tickvault_dependency_up (`store.db.Pinger`) against the real server:
a probe cancelled by its timeout while its query waits does not spoil the next probe."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal

import pytest

from tests.helpers import TestEnv
from tickvault.store import db


async def test_a_timed_out_probe_leaves_the_next_one_a_fresh_connection(env: TestEnv) -> None:
    """The server process of the probe's connection is stopped (SIGSTOP; the tests run as
    root), so its `SELECT 1` never answers and the timeout cancels it. The next probe must
    not reuse that connection: asyncpg would refuse it ("another operation is in progress")
    for as long as the query stays unanswered."""
    pinger = db.Pinger(env.settings().postgres)
    try:
        await pinger.ping()
        assert pinger._conn is not None
        backend = pinger._conn.get_server_pid()  # the server process of the probe's connection
        os.kill(backend, signal.SIGSTOP)
        try:
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(pinger.ping(), 1)
            await asyncio.wait_for(pinger.ping(), 30)  # while the old query is still unanswered
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.kill(backend, signal.SIGCONT)
    finally:
        await pinger.close()
