"""Acceptance: what cryptofeed's own Kafka and Redis Streams backends publish lands exactly
(Decimal-equal, same instants), once, and a redelivery of everything changes nothing.

The backends (CandlesKafka/CandlesStream, FillsKafka/FillsStream, OrderInfoKafka/
OrderInfoStream) are fed cryptofeed's own Candle, Fill and OrderInfo objects, as a feed
handler would call them (`await backend(obj, receipt_timestamp)`); no network but the test
broker and Redis.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from cryptofeed.backends import kafka as cf_kafka
from cryptofeed.backends import redis as cf_redis
from cryptofeed.types import Candle, Fill, OrderInfo

from tests.helpers import SOURCES, Daemon, TestEnv, wait_until

pytestmark = [
    pytest.mark.parametrize("source", SOURCES, indirect=True),
    # cryptofeed's Redis writer closes its client with redis-py's deprecated close(), and its
    # Kafka writer passes aiokafka the deprecated `loop`
    pytest.mark.filterwarnings("ignore:Call to deprecated close:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore:The `loop` parameter has been deprecated:DeprecationWarning"),
]
T0 = 1_767_225_600  # 2026-01-01T00:00:00Z, epoch seconds
UTC0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
RECEIPT = T0 + 0.5
EXCHANGE, SYMBOL = "BINANCE", "BTC-USDT"
CANDLES = 30
PARTITIONS = 2


def candles() -> list[Candle]:
    out = []
    for i in range(CANDLES):
        base = Decimal(87000) + i
        out.append(Candle(
            EXCHANGE, SYMBOL, float(T0 + 60 * i), T0 + 60 * i + 59.999, "1m", 100 + i,
            base + Decimal("0.25"), base + Decimal("0.75"), base + Decimal("1.5"), base,
            Decimal("12.345678") + i, True, T0 + 60 * i + 59.9995,
        ))  # fmt: skip
    return out


def order_updates() -> list[OrderInfo]:
    """Order o-1: open, partially filled, filled; order o-2: open, then cancelled."""

    def info(oid: str, status: str, remaining: str, at: float) -> OrderInfo:
        return OrderInfo(
            EXCHANGE, SYMBOL, oid, "buy", status, "limit", Decimal("87000.5"), Decimal("0.5"),
            Decimal(remaining), at, client_order_id=f"c-{oid}", account="acct-1",
        )  # fmt: skip

    return [
        info("o-1", "open", "0.5", T0 + 1.000001),
        info("o-1", "partial", "0.2", T0 + 2.25),
        info("o-1", "filled", "0", T0 + 3.5),
        info("o-2", "open", "0.5", T0 + 4.0),
        info("o-2", "cancelled", "0.5", T0 + 5.0),
    ]


def fills() -> list[Fill]:
    return [
        Fill(EXCHANGE, SYMBOL, "buy", Decimal("0.3"), Decimal("87000.5"), Decimal("0.00003"), "f-1",
             "o-1", "limit", "maker", T0 + 2.25, account="acct-1"),
        Fill(EXCHANGE, SYMBOL, "buy", Decimal("0.2"), Decimal("87000.5"), Decimal("0.00002"), "f-2",
             "o-1", "limit", "taker", T0 + 3.5, account="acct-1"),
    ]  # fmt: skip


def names(env: TestEnv) -> dict[str, str]:
    """Backend key (the topic or stream prefix) per data type, unique to the test."""
    return {dtype: f"t{env.tag}.cf-{dtype}" for dtype in ("candles", "fills", "order_info")}


def topic(key: str) -> str:
    return f"{key}-{EXCHANGE}-{SYMBOL}"  # as cryptofeed names it: key-exchange-symbol


def settings_for(env: TestEnv, group: str) -> Any:
    keys = names(env)
    if env.source == "kafka":
        # candles by pattern (a feed handler writes a topic per symbol), the others by name
        return env.settings(
            source={
                "topics": {
                    topic(keys["fills"]): {"kind": "fill", "codec": "cryptofeed"},
                    topic(keys["order_info"]): {"kind": "order", "codec": "cryptofeed"},
                },
                "patterns": {rf"t{env.tag}\.cf-candles-.*": {"kind": "kline", "codec": "cryptofeed"}},
            },
            kafka={"group_id": group},
        )
    kinds = {"candles": "kline", "fills": "fill", "order_info": "order"}
    topics = {topic(k): {"kind": kinds[d], "codec": "cryptofeed"} for d, k in keys.items()}
    return env.settings(source={"topics": topics}, redis={"group": group})


async def publish(env: TestEnv) -> None:
    """Everything through cryptofeed's backends, as its FeedHandler would call them."""
    keys = names(env)
    if env.source == "kafka":
        assert env.kafka is not None
        await env.kafka.create_topics([topic(k) for k in keys.values()], PARTITIONS)
        # Tansu refuses the idempotent producer; cryptofeed hands these options to aiokafka
        options: dict[str, Any] = {"bootstrap_servers": env.kafka.bootstrap, "enable_idempotence": False}
        backends = {
            "candles": cf_kafka.CandlesKafka(key=keys["candles"], **options),
            "fills": cf_kafka.FillsKafka(key=keys["fills"], **options),
            "order_info": cf_kafka.OrderInfoKafka(key=keys["order_info"], numeric_type=str, **options),
        }
    else:
        url = urlsplit(env.redis_url)
        where = {"host": url.hostname or "127.0.0.1", "port": url.port or 6379}
        backends = {
            "candles": cf_redis.CandlesStream(key=keys["candles"], **where),
            "fills": cf_redis.FillsStream(key=keys["fills"], **where),
            "order_info": cf_redis.OrderInfoStream(key=keys["order_info"], **where),
        }
    loop = asyncio.get_running_loop()
    for backend in backends.values():
        backend.start(loop)
    for dtype, objects in (("candles", candles()), ("fills", fills()), ("order_info", order_updates())):
        for obj in objects:
            await backends[dtype](obj, RECEIPT)
    for backend in backends.values():
        await stop(backend)


async def stop(backend: Any) -> None:
    """Wait until the backend's writer has sent everything queued, then stop it. (Its
    `stop()` alone may end the writer before it has taken anything from the queue.)"""
    joined = asyncio.ensure_future(backend.queue.join())
    await asyncio.wait([joined, backend.worker], timeout=30, return_when=asyncio.FIRST_COMPLETED)
    if backend.worker.done():
        backend.worker.result()  # the writer failed: raise its error
    assert joined.done(), f"{type(backend).__name__} sent nothing within 30s"
    await backend.stop()
    await backend.worker


async def settled(env: TestEnv, group: str) -> bool:
    """True when `group` has read and acknowledged every message of the test's topics."""
    keys = [topic(k) for k in names(env).values()]
    if env.source == "redis":
        for stream in keys:
            for info in await env.redis.xinfo_groups(stream):
                if info["name"].decode() == group and (info["lag"] or info["pending"]):
                    return False
        return True
    assert env.kafka is not None
    consumer = AIOKafkaConsumer(bootstrap_servers=env.kafka.bootstrap)
    await consumer.start()
    try:
        partitions = [TopicPartition(t, p) for t in keys for p in range(PARTITIONS)]
        ends = await consumer.end_offsets(partitions)
    finally:
        await consumer.stop()
    committed = await env.kafka.committed(group, [(tp.topic, tp.partition) for tp in partitions])
    return all(committed[(tp.topic, tp.partition)] == end for tp, end in ends.items())


async def snapshot(env: TestEnv) -> dict[str, list[dict[str, Any]]]:
    out = {}
    for table, order_by in (("klines", "open_time"), ("orders", "order_id"), ("fills", "fill_id"),
                            ("order_events", "order_id, updated_at"), ("dead_letters", "id")):  # fmt: skip
        rows = await env.fetch(f"SELECT * FROM {{s}}.{table} ORDER BY {order_by}")  # noqa: S608
        out[table] = [dict(r) for r in rows]
    return out


def check_exact(stored: dict[str, list[dict[str, Any]]]) -> None:
    klines = stored["klines"]
    assert len(klines) == CANDLES
    for i, (row, c) in enumerate(zip(klines, candles(), strict=True)):
        assert (row["exchange"], row["symbol"], row["interval"]) == (EXCHANGE, SYMBOL, "1m")
        assert row["open_time"] == UTC0 + dt.timedelta(minutes=i)
        assert row["close_time"] == UTC0 + dt.timedelta(minutes=i, seconds=59, milliseconds=999)
        assert (row["open"], row["high"], row["low"], row["close"]) == (c.open, c.high, c.low, c.close)
        assert (row["volume"], row["trades"], row["closed"]) == (c.volume, 100 + i, True)
        assert row["quote_volume"] is None

    orders = {r["order_id"]: r for r in stored["orders"]}
    assert orders.keys() == {"o-1", "o-2"}
    o1, o2 = orders["o-1"], orders["o-2"]
    assert (o1["status"], o1["filled_quantity"], o1["quantity"], o1["price"]) == (
        "filled", Decimal("0.5"), Decimal("0.5"), Decimal("87000.5"),
    )  # fmt: skip
    identity = (o1["client_order_id"], o1["bot_id"], o1["type"], o1["side"])
    assert identity == ("c-o-1", "acct-1", "limit", "buy")
    assert o1["updated_at"] == UTC0 + dt.timedelta(seconds=3.5)
    assert (o2["status"], o2["filled_quantity"]) == ("canceled", Decimal(0))
    events = [(e["order_id"], e["status"], e["updated_at"]) for e in stored["order_events"]]
    assert events == [
        ("o-1", "open", UTC0 + dt.timedelta(seconds=1, microseconds=1)),
        ("o-1", "partially_filled", UTC0 + dt.timedelta(seconds=2.25)),
        ("o-1", "filled", UTC0 + dt.timedelta(seconds=3.5)),
        ("o-2", "open", UTC0 + dt.timedelta(seconds=4)),
        ("o-2", "canceled", UTC0 + dt.timedelta(seconds=5)),
    ]

    got = [(f["fill_id"], f["order_id"], f["quantity"], f["price"], f["fee"], f["liquidity"], f["ts"])
           for f in stored["fills"]]  # fmt: skip
    assert got == [
        ("f-1", "o-1", Decimal("0.3"), Decimal("87000.5"), Decimal("0.00003"), "maker",
         UTC0 + dt.timedelta(seconds=2.25)),
        ("f-2", "o-1", Decimal("0.2"), Decimal("87000.5"), Decimal("0.00002"), "taker",
         UTC0 + dt.timedelta(seconds=3.5)),
    ]  # fmt: skip
    assert stored["dead_letters"] == []


async def test_cryptofeed_backends_land_exactly_once(env: TestEnv, daemon: Daemon) -> None:
    first, second = f"g{env.tag}", f"g{env.tag}-again"
    await publish(env)
    await daemon.start(settings_for(env, first))
    await wait_until(lambda: settled(env, first), 90, what="the first group to read everything")
    assert await daemon.stop_all() == [0]
    stored = await snapshot(env)
    check_exact(stored)

    # a second consumer group is handed every message again: a redelivery of all of them
    await daemon.start(settings_for(env, second))
    await wait_until(lambda: settled(env, second), 90, what="the second group to read everything")
    assert await daemon.stop_all() == [0]
    assert await snapshot(env) == stored  # same rows, same ingested_at: nothing rewritten
    if env.kafka is not None:
        await env.kafka.delete_topics([topic(k) for k in names(env).values()])


async def test_cryptofeed_trades_land_exactly(env: TestEnv, daemon: Daemon) -> None:
    from cryptofeed.types import Trade

    key = f"t{env.tag}.cf-trades"
    trades = [
        Trade(EXCHANGE, SYMBOL, "buy" if i % 2 else "sell", Decimal("0.001") * (i + 1),
              Decimal("87000.25") + i, T0 + i + 0.123456, id=str(1000 + i))
        for i in range(20)
    ]  # fmt: skip
    if env.source == "kafka":
        assert env.kafka is not None
        await env.kafka.create_topics([topic(key)], 1)
        backend: Any = cf_kafka.TradeKafka(
            key=key, bootstrap_servers=env.kafka.bootstrap, enable_idempotence=False
        )
    else:
        url = urlsplit(env.redis_url)
        backend = cf_redis.TradeStream(key=key, host=url.hostname, port=url.port or 6379)
    settings = env.settings(source={"topics": {topic(key): {"kind": "trade", "codec": "cryptofeed"}}})
    backend.start(asyncio.get_running_loop())
    for trade in trades:
        await backend(trade, RECEIPT)
    await stop(backend)
    await daemon.start(settings)

    async def all_in() -> bool:
        return await env.count("trades") == len(trades)

    await wait_until(all_in, 60, what="every trade")
    rows = await env.fetch("SELECT trade_id, price, quantity, side, ts FROM {s}.trades ORDER BY trade_id")
    assert [tuple(r) for r in rows] == [
        (t.id, t.price, t.amount, t.side, UTC0 + dt.timedelta(seconds=i, microseconds=123456))
        for i, t in enumerate(trades)
    ]
