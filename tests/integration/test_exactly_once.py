"""Acceptance: 100k mixed messages arrive exactly once, field for field; publishing them
again changes nothing."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest

from tests.helpers import SOURCES, Daemon, TestEnv
from tests.integration import workload
from tickvault.records import RECORD_TYPES


async def stored_rows(env: TestEnv, kind: str) -> dict[tuple[Any, ...], dict[str, Any]]:
    table, key = workload.KEYS[kind]
    columns = RECORD_TYPES[kind].COLUMNS
    rows = await env.fetch(f"SELECT {', '.join(chr(34) + c + chr(34) for c in columns)} FROM {{s}}.{table}")  # noqa: S608
    out = {}
    for r in rows:
        row = dict(r)
        if kind == "bot_state":
            row["state"] = json.loads(row["state"], parse_float=Decimal)
        out[tuple(row[k] for k in key)] = row
    return out


async def ingested_at(env: TestEnv) -> dict[str, list[Any]]:
    snapshot = {}
    for table in ("klines", "orders", "order_events", "fills", "bot_state"):
        rows = await env.fetch(f"SELECT ingested_at FROM {{s}}.{table} ORDER BY 1")  # noqa: S608
        snapshot[table] = [r[0] for r in rows]
    return snapshot


@pytest.mark.slow
@pytest.mark.parametrize("source", SOURCES, indirect=True)
async def test_100k_mixed_messages_exactly_once_then_replay_changes_nothing(
    env: TestEnv, daemon: Daemon
) -> None:
    w = workload.build(klines=80_000, orders=5_000, fills=10_000, states=5_000)
    assert w.total() == 100_000
    await daemon.start(env.settings(batch={"max_rows": 5000, "max_age_s": 0.1}))
    for kind, payloads in w.payloads.items():
        await env.publish(kind, payloads)
    await daemon.drain(timeout_s=240)

    for kind, expected in w.expected.items():
        stored = await stored_rows(env, kind)
        assert len(stored) == len(expected), kind
        for key, row in expected.items():
            assert stored[key] == row, (kind, key)
    assert await env.count("order_events") == 5_000
    assert await env.count("dead_letters") == 0
    before = await ingested_at(env)

    for kind, payloads in w.payloads.items():
        await env.publish(kind, payloads)
    await daemon.drain(timeout_s=240)
    assert await ingested_at(env) == before  # no row inserted, none rewritten
    for kind, expected in w.expected.items():
        assert len(await stored_rows(env, kind)) == len(expected)
    assert await daemon.stop_all() == [0]
