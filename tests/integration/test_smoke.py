from __future__ import annotations

import json

import pytest

from tests.helpers import SOURCES, Daemon, TestEnv

pytestmark = pytest.mark.parametrize("source", SOURCES, indirect=True)


async def test_one_message_per_kind_lands(env: TestEnv, daemon: Daemon) -> None:
    from tickvault.record_schemas import EXAMPLES

    await daemon.start()
    for kind, example in EXAMPLES.items():
        await env.publish(kind, [json.dumps(example)])
    await daemon.drain()
    for table in ("klines", "orders", "order_events", "fills", "bot_state"):
        assert await env.count(table) == 1, table
    assert await env.count("dead_letters") == 0
    assert await daemon.stop_all() == [0]
