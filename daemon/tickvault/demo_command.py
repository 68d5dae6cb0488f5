"""`tickvault demo`: the synthetic market of tickvault.demo, published to the configured source
(`source.kind`) until SIGTERM/SIGINT: what a feed adapter and a bot would send, for a stack
(docker-compose.yml) or a daemon to show live data.

Redis: XADD to the streams, as `tickvault dev --demo` does. Kafka: one record per message,
the same JSON, keyed by symbol, order or bot (one key's messages stay in order in one
partition), `acks="all"`; on start the last messages are read back from the end of each
topic's partitions, so that a restarted demo continues its market and its bot.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
from dataclasses import dataclass
from typing import Any, Final

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from tickvault import app, demo
from tickvault.errors import ConfigError
from tickvault.settings import KafkaSettings, Settings
from tickvault.sources import kafka
from tickvault.sources.redis_streams import connect as redis_connect

log = logging.getLogger(__name__)
KINDS: Final = ("kline", "order", "fill", "bot_state")
HISTORY_TIMEOUT_S: Final = 30.0
Tail = list[tuple[int, int, bytes]]  # (broker timestamp ms, offset, value) of records read back
# the field whose value keys a kind's records: one symbol's candles, one order's updates and one
# bot's states each stay in one partition, in publish order
KEY_FIELD: Final = {"kline": "symbol", "order": "order_id", "fill": "order_id", "bot_state": "bot_id"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seed", type=int, metavar="N", help="seed of the random market (default: random)")


async def run(settings: Settings, args: argparse.Namespace) -> int:
    """Publish until a signal; 0. ConfigError when a kind has no stream or topic."""
    streams = demo.stream_names(settings)
    missing = [kind for kind in KINDS if kind not in streams]
    if missing:
        raise ConfigError(f"source.topics has no stream or topic of kind {', '.join(missing)} (or mixed)")
    stop = asyncio.Event()
    app._install_signals(stop)
    log.info(
        "demo market publishing to %s: %s", settings.source.kind, ", ".join(sorted(set(streams.values())))
    )
    if settings.source.kind == "kafka":
        producer = await kafka.producer(settings.kafka)  # retried while the brokers start
        try:
            await demo.publish_until(KafkaChannel(settings.kafka, streams, producer), stop, args.seed)
        finally:
            await producer.stop()
    else:
        redis = redis_connect(settings.redis)
        try:
            await demo.publish_until(demo.RedisChannel(redis, streams), stop, args.seed)
        finally:
            await redis.aclose()
    return 0


@dataclass
class KafkaChannel:
    """Kafka topics (demo.Channel): sent by `producer`, read back by a consumer of no group
    that seeks to the last `HISTORY_ENTRIES[kind]` offsets of every partition."""

    settings: KafkaSettings
    topics: dict[str, str]
    producer: AIOKafkaProducer

    async def publish(self, messages: list[tuple[str, dict[str, Any]]]) -> None:
        futures = []
        for kind, message in messages:
            value = json.dumps({"kind": kind, **message}).encode()
            key = str(message.get(KEY_FIELD[kind], "")).encode()
            futures.append(await self.producer.send(self.topics[kind], value, key=key))
        await self.producer.flush()
        for future in futures:
            await future

    async def history(self, kind: str) -> list[dict[str, Any]]:
        consumer = AIOKafkaConsumer(enable_auto_commit=False, **kafka.client_options(self.settings))
        records: Tail = []
        try:
            await consumer.start()  # the producer has connected: the brokers answer
            await asyncio.wait_for(
                _tail(consumer, self.topics[kind], demo.HISTORY_ENTRIES[kind], records), HISTORY_TIMEOUT_S
            )
        except TimeoutError:  # a broker that reports wrong end offsets: go on with what was read
            log.warning("reading the last %s messages back timed out; continuing from %d", kind, len(records))
        finally:
            await consumer.stop()
        # newest first: by broker time, then by position within a partition
        records.sort(key=lambda r: (r[0], r[1]), reverse=True)
        return demo.parsed([value for _, _, value in records], kind)


async def _tail(
    consumer: AIOKafkaConsumer, topic: str, count: int, out: list[tuple[int, int, bytes]]
) -> None:
    """Append (timestamp ms, offset, value) of up to `count` last records of each partition of
    `topic` to `out`; none when the topic does not exist yet."""
    partitions = [TopicPartition(topic, p) for p in sorted(await _partitions(consumer, topic))]
    if not partitions:
        return
    consumer.assign(partitions)
    starts = await consumer.beginning_offsets(partitions)
    ends = await consumer.end_offsets(partitions)
    for tp in partitions:
        consumer.seek(tp, max(starts[tp], ends[tp] - count))
    while await _behind(consumer, ends):
        batches = await consumer.getmany(timeout_ms=500)
        out += [(r.timestamp, r.offset, r.value) for rs in batches.values() for r in rs if r.value]


async def _behind(consumer: AIOKafkaConsumer, ends: dict[TopicPartition, int]) -> bool:
    for tp, end in ends.items():
        if await consumer.position(tp) < end:
            return True
    return False


async def _partitions(consumer: AIOKafkaConsumer, topic: str) -> set[int]:
    if topic not in await consumer.topics():
        return set()
    return consumer.partitions_for_topic(topic) or set()
