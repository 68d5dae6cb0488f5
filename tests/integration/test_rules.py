"""Acceptance: updates follow each kind's rule, including order updates and bot-state
snapshots that arrive out of order, within one batch and across batches."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest

from tests.helpers import Daemon, TestEnv

T0 = 1_767_225_600_000


def kline(open_: str, high: str, low: str, close: str, volume: str, closed: bool) -> str:
    return json.dumps({
        "exchange": "okx", "symbol": "ETH-USDT", "interval": "1m", "open_time": T0,
        "open": open_, "high": high, "low": low, "close": close, "volume": volume, "closed": closed,
    })  # fmt: skip


def order(status: str, filled: str, updated_ms: int, seq: int | None = None, **extra: Any) -> str:
    body = {
        "order_id": "A1", "exchange": "okx", "symbol": "ETH-USDT", "side": "buy", "type": "limit",
        "status": status, "quantity": "2", "price": "3000", "filled_quantity": filled,
        "updated_at": updated_ms, **extra,
    }  # fmt: skip
    if seq is not None:
        body["seq"] = seq
    return json.dumps(body)


def state(ts_ms: int, seq: int | None, value: int) -> str:
    body: dict[str, Any] = {"bot_id": "b1", "ts": ts_ms, "state": {"v": value}}
    if seq is not None:
        body["seq"] = seq
    return json.dumps(body)


@pytest.fixture(params=["one_batch", "batch_per_message"])
def batch_rows(request: pytest.FixtureRequest) -> int:
    return 10_000 if request.param == "one_batch" else 1


async def publish_one_by_one(env: TestEnv, daemon: Daemon, kind: str, payloads: list[str]) -> None:
    for p in payloads:
        await env.publish(kind, [p])
        await daemon.drain()


async def test_klines_open_updates_then_closed_never_reopened(
    env: TestEnv, daemon: Daemon, batch_rows: int
) -> None:
    await daemon.start(env.settings(batch={"max_rows": batch_rows}))
    payloads = [
        kline("10", "11", "9", "10.5", "5", closed=False),
        kline("10", "12", "9", "11.5", "8", closed=False),
        kline("10", "12", "9", "11", "6", closed=False),  # stale open update: lower volume
        kline("10", "12", "8", "11.25", "9.5", closed=True),
        kline("10", "13", "8", "12", "12", closed=False),  # late open update after close
    ]
    if batch_rows == 1:
        await publish_one_by_one(env, daemon, "kline", payloads)
    else:
        await env.publish("kline", payloads)
        await daemon.drain()
    rows = await env.fetch("SELECT high, low, close, volume, closed FROM {s}.klines")
    assert [tuple(r) for r in rows] == [(Decimal("12"), Decimal("8"), Decimal("11.25"), Decimal("9.5"), True)]

    await env.publish("kline", [kline("10", "12", "8", "11.30", "9.75", closed=True)])  # correction
    await daemon.drain()
    rows = await env.fetch("SELECT close, volume, closed FROM {s}.klines")
    assert [tuple(r) for r in rows] == [(Decimal("11.30"), Decimal("9.75"), True)]


async def test_open_kline_update_advances_an_open_row(env: TestEnv, daemon: Daemon) -> None:
    await daemon.start()
    await publish_one_by_one(env, daemon, "kline", [
        kline("10", "11", "9", "10.5", "5", closed=False),
        kline("10", "12", "9", "11.5", "8", closed=False),
    ])  # fmt: skip
    rows = await env.fetch("SELECT close, volume, closed FROM {s}.klines")
    assert [tuple(r) for r in rows] == [(Decimal("11.5"), Decimal("8"), False)]


async def test_orders_never_move_backwards(env: TestEnv, daemon: Daemon, batch_rows: int) -> None:
    await daemon.start(env.settings(batch={"max_rows": batch_rows}))
    payloads = [
        order("new", "0", T0, seq=1, client_order_id="cid", bot_id="b1"),
        order("partially_filled", "1.5", T0 + 20, seq=3),
        order("open", "0", T0 + 10, seq=2),  # older: ignored for the current row
        order("filled", "2", T0 + 30, seq=4),
        order("partially_filled", "1.5", T0 + 40, seq=5),  # non-terminal after terminal
        order("canceled", "1", T0 + 50, seq=6),  # filled_quantity would decrease
    ]
    if batch_rows == 1:
        await publish_one_by_one(env, daemon, "order", payloads)
    else:
        await env.publish("order", payloads)
        await daemon.drain()
    rows = await env.fetch("SELECT status, filled_quantity, seq, client_order_id, bot_id FROM {s}.orders")
    # optional fields an update omits keep their earlier value
    assert [tuple(r) for r in rows] == [("filled", Decimal("2"), 4, "cid", "b1")]
    events = await env.fetch("SELECT status, seq FROM {s}.order_events ORDER BY updated_at")
    assert [tuple(e) for e in events] == [
        ("new", 1), ("open", 2), ("partially_filled", 3), ("filled", 4),
        ("partially_filled", 5), ("canceled", 6),
    ]  # fmt: skip

    await env.publish("order", payloads)  # redelivery: history is not duplicated
    await daemon.drain()
    assert await env.count("order_events") == 6


async def test_order_updates_with_equal_timestamps_progress_by_status(env: TestEnv, daemon: Daemon) -> None:
    await daemon.start()
    await publish_one_by_one(env, daemon, "order", [
        order("partially_filled", "1", T0),
        order("new", "0", T0),
        order("filled", "2", T0),
    ])  # fmt: skip
    rows = await env.fetch("SELECT status, filled_quantity FROM {s}.orders")
    assert [tuple(r) for r in rows] == [("filled", Decimal("2"))]
    assert await env.count("order_events") == 3


async def test_newest_bot_state_wins(env: TestEnv, daemon: Daemon, batch_rows: int) -> None:
    await daemon.start(env.settings(batch={"max_rows": batch_rows}))
    payloads = [state(T0 + 5, 1, 1), state(T0 + 9, 1, 3), state(T0 + 7, 9, 2), state(T0 + 9, 0, 99)]
    if batch_rows == 1:
        await publish_one_by_one(env, daemon, "bot_state", payloads)
    else:
        await env.publish("bot_state", payloads)
        await daemon.drain()
    rows = await env.fetch("SELECT state::text, seq FROM {s}.bot_state")
    assert [(json.loads(r[0]), r[1]) for r in rows] == [({"v": 3}, 1)]
    await env.publish("bot_state", [state(T0 + 9, 2, 4)])  # same ts, higher seq
    await daemon.drain()
    rows = await env.fetch("SELECT state::text FROM {s}.bot_state")
    assert json.loads(rows[0][0]) == {"v": 4}


async def test_duplicate_fills_are_stored_once(env: TestEnv, daemon: Daemon, batch_rows: int) -> None:
    await daemon.start(env.settings(batch={"max_rows": batch_rows}))
    fill = json.dumps({
        "fill_id": "F1", "order_id": "A1", "exchange": "okx", "symbol": "ETH-USDT", "side": "buy",
        "quantity": "0.5", "price": "3000.10", "ts": T0,
    })  # fmt: skip
    await env.publish("fill", [fill, fill, fill])
    await daemon.drain()
    rows = await env.fetch("SELECT fill_id, quantity, fee FROM {s}.fills")
    assert [tuple(r) for r in rows] == [("F1", Decimal("0.5"), Decimal("0"))]


async def test_mixed_topic_routes_by_kind(env: TestEnv, daemon: Daemon) -> None:
    await daemon.start()
    await env.publish("mixed", [
        json.dumps({"kind": "bot_state", "bot_id": "m1", "ts": T0, "state": {}}),
        json.dumps({"kind": "fill", "fill_id": "F9", "order_id": "A9", "exchange": "okx",
                    "symbol": "ETH-USDT", "side": "sell", "quantity": "1", "price": "1", "ts": T0}),
    ])  # fmt: skip
    await daemon.drain()
    assert await env.count("bot_state") == 1
    assert await env.count("fills") == 1


async def test_rows_outside_premade_partitions_get_their_own(env: TestEnv, daemon: Daemon) -> None:
    await daemon.start(env.settings(postgres={"timescale": "off"}))
    old = json.dumps({
        "exchange": "okx", "symbol": "ETH-USDT", "interval": "1d", "open_time": "2019-03-04T00:00:00Z",
        "open": "1", "high": "1", "low": "1", "close": "1", "volume": "0",
    })  # fmt: skip
    await env.publish("kline", [old])
    await daemon.drain()
    rows = await env.fetch("SELECT tableoid::regclass::text FROM {s}.klines")
    assert rows[0][0].startswith(f"{env.schema}.klines_p2019")
    assert await env.count("klines_default") == 0


async def test_a_cancel_that_omits_filled_quantity_keeps_the_fills(env: TestEnv, daemon: Daemon) -> None:
    await daemon.start()
    await publish_one_by_one(env, daemon, "order", [
        order("partially_filled", "1.5", T0, seq=1, avg_fill_price="3000.5"),
        json.dumps({
            "order_id": "A1", "exchange": "okx", "symbol": "ETH-USDT", "side": "buy", "type": "limit",
            "status": "canceled", "quantity": "2", "price": "3000", "updated_at": T0 + 10, "seq": 2,
        }),  # filled_quantity omitted: 0
    ])  # fmt: skip
    rows = await env.fetch("SELECT status, filled_quantity::text, avg_fill_price::text, seq FROM {s}.orders")
    assert [tuple(r) for r in rows] == [("canceled", "1.5", "3000.5", 2)]
