"""Acceptance: Binance websocket events through the daemon. Kline streams with many open-candle
updates end with the final closed candle; executionReports give the right order states and
fills (a trade report is one message, two records, acknowledged once); bad payloads between
good ones are dead-lettered with their reasons and the daemon goes on.
"""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal
from typing import Any

import pytest

from tests.helpers import SOURCES, Daemon, TestEnv, wait_until

pytestmark = pytest.mark.parametrize("source", SOURCES, indirect=True)
T0_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z
UTC0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
CANDLES, UPDATES = 5, 20


def kline_event(i: int, update: int, closed: bool) -> dict[str, Any]:
    """Candle i's `update`-th state: the close and volume move with every update."""
    open_ms = T0_MS + i * 60_000
    close = Decimal("87000.00") + i + Decimal(update) / 100
    return {
        "e": "kline", "E": open_ms + update, "s": "BTCUSDT",
        "k": {
            "t": open_ms, "T": open_ms + 59_999, "s": "BTCUSDT", "i": "1m", "f": 1, "L": 2,
            "o": f"{Decimal('87000.00') + i}", "c": f"{close}", "h": f"{close + 1}",
            "l": f"{Decimal('86999.00') + i}", "v": f"{Decimal('0.001') * (update + 1)}",
            "n": update + 1, "x": closed, "q": f"{Decimal('87.5') * (update + 1)}",
            "V": "0", "Q": "0", "B": "0",
        },
    }  # fmt: skip


def combined(event: dict[str, Any]) -> bytes:
    return json.dumps({"stream": "btcusdt@kline_1m", "data": event}).encode()


def report(order_id: int, x: str, status: str, at_ms: int, **changes: Any) -> bytes:
    event = {
        "e": "executionReport", "E": at_ms + 1, "s": "ETHUSDT", "c": f"client-{order_id}",
        "S": "SELL", "o": "LIMIT", "f": "GTC", "q": "2.00000000", "p": "3000.50000000",
        "P": "0.00000000", "F": "0.00000000", "g": -1, "C": "", "x": x, "X": status, "r": "NONE",
        "i": order_id, "l": "0.00000000", "z": "0.00000000", "L": "0.00000000", "n": "0",
        "N": None, "T": at_ms, "t": -1, "I": 1, "w": True, "m": False, "M": False,
        "O": T0_MS, "Z": "0.00000000", "Y": "0.00000000", "Q": "0.00000000",
    }  # fmt: skip
    return json.dumps({**event, **changes}).encode()


def trade_report(order_id: int, trade_id: int, at_ms: int, last: str, cumulative: str, status: str) -> bytes:
    quote = Decimal(cumulative) * Decimal("3000.5")
    return report(
        order_id, "TRADE", status, at_ms, l=last, z=cumulative, L="3000.50000000", n="0.0015",
        N="USDT", t=trade_id, m=trade_id % 2 == 0, Z=f"{quote}",
    )  # fmt: skip


BAD: list[tuple[bytes, str, str]] = [
    (b"{oops", "invalid_json", "invalid JSON"),
    (b'{"e": "depthUpdate", "s": "BTCUSDT"}', "unknown_event", "'depthUpdate' is not stored"),
    (
        json.dumps({**kline_event(9, 0, True), "k": "x"}).encode(),
        "invalid",
        "binance kline: k: not an object",
    ),
    (report(99, "NEW", "NEW", T0_MS, i="99"), "invalid", "i: '99' is not an integer"),
    (report(98, "NEW", "NEW", T0_MS, z=1), "invalid", "z: 1 is not a decimal string"),
]


async def publish(env: TestEnv, stream: str, payloads: list[bytes]) -> list[str]:
    """Publish in order; each message's entry id as the daemon records it."""
    ids = []
    for payload in payloads:
        if env.source == "kafka":
            assert env.kafka is not None
            producer = await env._kafka_producer()
            meta = await producer.send_and_wait(stream, payload, partition=0)
            ids.append(f"{meta.partition}:{meta.offset}")
        else:
            ids.append((await env.redis.xadd(stream, {"data": payload})).decode())
    return ids


async def test_binance_events(env: TestEnv, daemon: Daemon) -> None:
    stream = f"t{env.tag}.binance"
    if env.kafka is not None:
        await env.kafka.create_topics([stream], 1)
    klines = [kline_event(i, u, False) for i in range(CANDLES) for u in range(UPDATES)]
    klines += [kline_event(i, UPDATES, True) for i in range(CANDLES)]
    klines.append(kline_event(0, 3, False))  # a late open update after candle 0 closed
    orders = [
        report(1, "NEW", "NEW", T0_MS + 1000),
        trade_report(1, 501, T0_MS + 2000, "0.50000000", "0.50000000", "PARTIALLY_FILLED"),
        trade_report(1, 502, T0_MS + 3000, "1.50000000", "2.00000000", "FILLED"),
        report(2, "NEW", "NEW", T0_MS + 4000),
        report(2, "CANCELED", "CANCELED", T0_MS + 5000, c="cancel-req", C="client-2"),
    ]
    bad = [payload for payload, _, _ in BAD]
    payloads = (
        [combined(k) for k in klines[:50]] + bad[:2] + orders + bad[2:] + [combined(k) for k in klines[50:]]
    )
    settings = env.settings(source={"topics": {stream: {"kind": "mixed", "codec": "binance"}}})
    await daemon.start(settings)
    ids = await publish(env, stream, payloads)

    async def stored() -> bool:
        letters = await env.count("dead_letters")
        return letters == len(BAD) and await env.count("fills") == 2 and await env.count("order_events") == 5

    await wait_until(stored, 60, what="every event stored")
    await wait_until(lambda: settled(env, stream, len(payloads)), 60, what="every message acknowledged")
    assert await daemon.stop_all() == [0]

    rows = await env.fetch("SELECT * FROM {s}.klines ORDER BY open_time")
    assert len(rows) == CANDLES
    for i, row in enumerate(rows):
        final = kline_event(i, UPDATES, True)["k"]
        assert row["open_time"] == UTC0 + dt.timedelta(minutes=i)
        assert row["close_time"] == UTC0 + dt.timedelta(minutes=i, seconds=59, milliseconds=999)
        assert row["closed"] is True
        assert (row["close"], row["high"], row["volume"], row["quote_volume"], row["trades"]) == (
            Decimal(final["c"]), Decimal(final["h"]), Decimal(final["v"]), Decimal(final["q"]), UPDATES + 1,
        )  # fmt: skip

    orders_by_id = {r["order_id"]: r for r in await env.fetch("SELECT * FROM {s}.orders")}
    one, two = orders_by_id["1"], orders_by_id["2"]
    assert (one["status"], one["filled_quantity"], one["avg_fill_price"]) == (
        "filled",
        Decimal(2),
        Decimal("3000.5"),
    )
    assert (one["side"], one["type"], one["price"], one["client_order_id"]) == (
        "sell",
        "limit",
        Decimal("3000.5"),
        "client-1",
    )
    assert one["updated_at"] == UTC0 + dt.timedelta(seconds=3)
    assert one["created_at"] == UTC0
    assert (two["status"], two["client_order_id"], two["filled_quantity"]) == (
        "canceled",
        "client-2",
        Decimal(0),
    )
    events = await env.fetch("SELECT order_id, status FROM {s}.order_events ORDER BY order_id, updated_at")
    assert [tuple(e) for e in events] == [
        ("1", "new"),
        ("1", "partially_filled"),
        ("1", "filled"),
        ("2", "new"),
        ("2", "canceled"),
    ]
    fills = await env.fetch("SELECT * FROM {s}.fills ORDER BY fill_id")
    assert [(f["fill_id"], f["order_id"], f["side"], f["quantity"], f["price"], f["fee"], f["fee_asset"],
             f["liquidity"], f["ts"]) for f in fills] == [
        ("501", "1", "sell", Decimal("0.5"), Decimal("3000.5"), Decimal("0.0015"), "USDT", "taker",
         UTC0 + dt.timedelta(seconds=2)),
        ("502", "1", "sell", Decimal("1.5"), Decimal("3000.5"), Decimal("0.0015"), "USDT", "maker",
         UTC0 + dt.timedelta(seconds=3)),
    ]  # fmt: skip

    letters = await env.fetch("SELECT entry_id, category, reason, payload FROM {s}.dead_letters")
    by_entry = {r["entry_id"]: r for r in letters}
    bad_ids = ids[50:52] + ids[52 + len(orders) : 52 + len(orders) + 3]
    for entry_id, (payload, category, words) in zip(bad_ids, BAD, strict=True):
        letter = by_entry[entry_id]
        assert (letter["category"], bytes(letter["payload"])) == (category, payload)
        assert words in letter["reason"]
    if env.kafka is not None:
        await env.kafka.delete_topics([stream])


async def settled(env: TestEnv, stream: str, published: int) -> bool:
    """Every one of the `published` messages is acknowledged."""
    if env.source == "redis":
        groups = await env.redis.xinfo_groups(stream)
        return all(not g["lag"] and not g["pending"] for g in groups if g["name"].decode() == env.group)
    assert env.kafka is not None
    committed = await env.kafka.committed(env.group, [(stream, 0)])
    return committed[(stream, 0)] == published
