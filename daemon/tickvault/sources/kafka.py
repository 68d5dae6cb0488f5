"""Kafka source: one member of a consumer group, subscribed by topic list or regex.

Offsets are committed by tickvault, never automatically, and only up to the first message
whose rows are not yet durable: each assigned partition keeps the offsets it handed out
in read order, `ack` marks them done, and the commit position is the lowest offset still
in flight (or one past the last read when nothing is). Commits run in a background task,
at most every `commit_interval_s`, so a slow broker never holds up a batch write.

Rebalances: before partitions are revoked the source waits (up to `revoke_timeout_s`) until
every message read from them is acknowledged — the pipeline flushes within `max_age_s` —
and commits them. Whatever is still in flight after that is left uncommitted; the new owner
re-reads it, and the idempotent writes store it once.

A full backlog pauses every assigned partition (`idle`), which keeps the member polling,
and so in the group, while it takes nothing. aiokafka reconnects to the brokers by itself;
commits that fail meanwhile are retried.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any, TypeVar

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError
from aiokafka.helpers import create_ssl_context

from tickvault.errors import SourceError, SourceUnavailable
from tickvault.settings import KafkaSettings
from tickvault.sources import Lag, Message, kafka_version, new_message

log = logging.getLogger(__name__)
T = TypeVar("T")
_FINAL_COMMIT_TIMEOUT_S = 10.0


def client_options(settings: KafkaSettings) -> dict[str, Any]:
    """Connection and security options shared by consumer, producer and admin clients."""
    options: dict[str, Any] = {
        "bootstrap_servers": settings.bootstrap_servers.split(","),
        "client_id": settings.client_id,
        "security_protocol": settings.security_protocol,
    }
    if settings.security_protocol in ("SSL", "SASL_SSL"):
        context = create_ssl_context(
            cafile=_str(settings.ssl_cafile),
            certfile=_str(settings.ssl_certfile),
            keyfile=_str(settings.ssl_keyfile),
            password=settings.ssl_password.get_secret_value() if settings.ssl_password else None,
        )
        context.check_hostname = settings.ssl_check_hostname
        options["ssl_context"] = context
    if settings.security_protocol.startswith("SASL"):
        options["sasl_mechanism"] = settings.sasl_mechanism
        options["sasl_plain_username"] = settings.sasl_username
        password = settings.sasl_password
        options["sasl_plain_password"] = password.get_secret_value() if password else None
    return options


def _str(value: object | None) -> str | None:
    return None if value is None else str(value)


def subscription_pattern(topics: Iterable[str], patterns: Iterable[str]) -> str:
    """One regex matching the whole name of every listed topic and every pattern."""
    parts = [re.escape(t) for t in topics] + [f"(?:{p})" for p in patterns]
    return "^(?:" + "|".join(parts) + ")$"


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {str(exc)[:160]}"


class _Offsets:
    """Offsets of one partition handed out and not yet acknowledged, in read order."""

    __slots__ = ("committed", "in_flight", "last_read", "order")

    def __init__(self) -> None:
        self.order: deque[int] = deque()
        self.in_flight: set[int] = set()
        self.last_read: int | None = None
        self.committed = -1

    def read_all(self, offsets: list[int]) -> None:
        """`offsets` (not empty) handed out, in read order."""
        self.order.extend(offsets)
        self.in_flight.update(offsets)
        self.last_read = offsets[-1]

    def ack_all(self, offsets: Iterable[int]) -> None:
        """`offsets` acknowledged; one never read here (read before a rebalance) changes nothing."""
        self.in_flight.difference_update(offsets)

    def position(self) -> int | None:
        """The offset to commit: nothing before it is still in flight."""
        order = self.order
        while order and order[0] not in self.in_flight:
            order.popleft()
        if order:
            return order[0]
        return None if self.last_read is None else self.last_read + 1


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, source: KafkaSource) -> None:
        self.source = source

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        await self.source._on_revoked(revoked)

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        self.source._on_assigned(assigned)


class KafkaSource:
    name = "kafka"

    def __init__(self, settings: KafkaSettings, topics: Sequence[str], patterns: Sequence[str] = ()) -> None:
        if not topics and not patterns:
            raise SourceError("no topics or patterns configured")
        self.settings = settings
        self.topics = list(topics)
        self.patterns = list(patterns)
        self._consumer: AIOKafkaConsumer | None = None
        self._offsets: dict[TopicPartition, _Offsets] = {}
        self._dirty = asyncio.Event()  # acknowledged offsets wait to be committed
        self._acked = asyncio.Event()  # set by every ack; a revocation waits on it
        self._commit_lock = asyncio.Lock()
        self._committer: asyncio.Task[None] | None = None
        self._paused = False

    @property
    def consumer(self) -> AIOKafkaConsumer:
        if self._consumer is None:
            raise SourceError("source is not open")
        return self._consumer

    async def __aenter__(self) -> KafkaSource:
        s = self.settings
        attempts, backoff_s = s.connect_retries, s.retry_max_backoff_s
        self._consumer = await _retry("connect", self._start_consumer, attempts, backoff_s)
        self._committer = asyncio.create_task(self._commit_loop(), name="kafka-commit")
        log.info(
            "reading kafka %s as %s in group %s",
            ",".join(self.topics + [f"/{p}/" for p in self.patterns]),
            s.client_id,
            s.group_id,
        )
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def _start_consumer(self) -> AIOKafkaConsumer:
        s = self.settings
        consumer = AIOKafkaConsumer(
            group_id=s.group_id,
            enable_auto_commit=False,
            auto_offset_reset=s.auto_offset_reset,
            max_poll_records=s.max_poll_records,
            fetch_max_bytes=s.fetch_max_bytes,
            max_partition_fetch_bytes=s.max_partition_fetch_bytes,
            session_timeout_ms=s.session_timeout_ms,
            heartbeat_interval_ms=s.heartbeat_interval_ms,
            max_poll_interval_ms=s.max_poll_interval_ms,
            metadata_max_age_ms=s.metadata_max_age_ms,
            rebalance_timeout_ms=max(s.session_timeout_ms, int((s.revoke_timeout_s + 5) * 1000)),
            **client_options(s),
        )
        listener = _Listener(self)
        if self.patterns:
            consumer.subscribe(pattern=subscription_pattern(self.topics, self.patterns), listener=listener)
        else:
            consumer.subscribe(topics=self.topics, listener=listener)
        return await _started(consumer)

    async def close(self) -> None:
        consumer = self._consumer
        if consumer is None:
            return
        if self._committer is not None:
            self._committer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._committer
        try:
            await asyncio.wait_for(self._commit(), _FINAL_COMMIT_TIMEOUT_S)
        except TimeoutError:
            log.warning("final offset commit timed out; the next owner re-reads from the last commit")
        self._consumer = None
        await consumer.stop()

    async def read(self, max_n: int, timeout_s: float) -> list[Message]:
        consumer = self.consumer
        if self._paused:
            consumer.resume(*consumer.assignment())
            self._paused = False
        batches = await consumer.getmany(timeout_ms=max(1, int(timeout_s * 1000)), max_records=max_n)
        messages: list[Message] = []
        append, name = messages.append, self.name
        for tp, records in batches.items():
            if not records:
                continue
            offsets = self._offsets.get(tp)
            if offsets is None:  # assigned before the listener ran (never expected)
                offsets = self._offsets[tp] = _Offsets()
            offsets.read_all([record.offset for record in records])
            topic, partition = tp.topic, f"{tp.partition}:"
            for record in records:
                offset, timestamp_ms = record.offset, record.timestamp
                entry_id = f"{partition}{offset}"
                # kafka_version, inlined: one call less per record
                version = (
                    f"{timestamp_ms}\t{offset}" if timestamp_ms >= 0 else kafka_version(timestamp_ms, offset)
                )
                if record.value is None:
                    append(Message(name, topic, entry_id, b"", "kafka record has no value", version))
                else:
                    append(new_message((name, topic, entry_id, record.value, None, version)))
        return messages

    async def idle(self) -> None:
        consumer = self.consumer
        if not self._paused:
            consumer.pause(*consumer.assignment())
            self._paused = True
        # a poll keeps this member in the group; anything it returns anyway (a partition
        # assigned since the pause) is not taken: seek back so it is fetched again later
        for tp, records in (await consumer.getmany(timeout_ms=0)).items():
            if records:
                consumer.seek(tp, records[0].offset)

    async def ack(self, messages: Sequence[Message]) -> None:
        acked: dict[tuple[str, str], list[int]] = {}  # (topic, partition) → offsets
        for m in messages:
            partition, _, offset = m.entry_id.partition(":")
            key = (m.topic, partition)
            offsets = acked.get(key)
            if offsets is None:
                offsets = acked[key] = []
            offsets.append(int(offset))
        for (topic, partition), offsets in acked.items():
            tracked = self._offsets.get(TopicPartition(topic, int(partition)))
            if tracked is not None:  # else revoked meanwhile: the new owner commits it
                tracked.ack_all(offsets)
        self._dirty.set()
        self._acked.set()

    async def _commit_loop(self) -> None:
        while True:
            await self._dirty.wait()
            self._dirty.clear()
            await self._commit()
            await asyncio.sleep(self.settings.commit_interval_s)

    async def _commit(self, only: Iterable[TopicPartition] | None = None) -> None:
        """Commit every owned partition whose durable position moved since the last commit."""
        async with self._commit_lock:
            consumer = self._consumer
            if consumer is None:
                return
            assigned = consumer.assignment()
            wanted = set(assigned if only is None else only) & assigned
            positions = {}
            for tp in wanted:
                tracked = self._offsets.get(tp)
                position = tracked.position() if tracked else None
                if tracked is not None and position is not None and position > tracked.committed:
                    positions[tp] = position
            if not positions:
                return
            try:
                await consumer.commit(positions)
            except (CommitFailedError, IllegalStateError) as exc:
                log.warning("offset commit refused after a rebalance (%s); the new owner re-reads", exc)
                return
            except KafkaError as exc:
                log.warning("offset commit failed (%s); retrying", _describe(exc))
                self._dirty.set()
                return
            for tp, position in positions.items():
                tracked = self._offsets.get(tp)
                if tracked is not None:
                    tracked.committed = max(tracked.committed, position)

    async def _on_revoked(self, revoked: set[TopicPartition]) -> None:
        if not revoked:
            return
        deadline = time.monotonic() + self.settings.revoke_timeout_s

        def in_flight() -> int:
            return sum(len(self._offsets[tp].in_flight) for tp in revoked if tp in self._offsets)

        while in_flight() and time.monotonic() < deadline:
            self._acked.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._acked.wait(), deadline - time.monotonic())
        try:
            await asyncio.wait_for(self._commit(revoked), max(0.1, deadline - time.monotonic()))
        except TimeoutError:
            log.warning("commit before rebalance timed out")
        left = in_flight()
        if left:
            log.warning(
                "%d messages of revoked partitions were not yet durable; their new owner re-reads them",
                left,
            )
        for tp in revoked:
            self._offsets.pop(tp, None)
        log.info("partitions revoked: %s", _names(revoked))

    def _on_assigned(self, assigned: set[TopicPartition]) -> None:
        for tp in assigned:
            self._offsets.setdefault(tp, _Offsets())
        self._paused = False
        log.info("partitions assigned: %s", _names(assigned) or "none")

    async def ping(self) -> None:
        """One metadata request over the consumer's own connections (`topics()`, which tries
        every known broker); raises KafkaError when none answers. For tickvault_dependency_up."""
        await self.consumer.topics()

    async def lag(self) -> list[Lag]:
        """Per assigned partition: high watermark minus the group's committed offset."""
        consumer = self.consumer
        lags = []
        for tp in sorted(consumer.assignment()):
            high = consumer.highwater(tp)
            tracked = self._offsets.get(tp)
            if high is None or tracked is None:
                continue
            committed = tracked.committed
            if committed < 0:
                committed = await consumer.committed(tp) or 0
            lags.append(Lag(tp.topic, str(tp.partition), self.settings.group_id, max(0, high - committed)))
        return lags


def _names(tps: Iterable[TopicPartition]) -> str:
    return ",".join(f"{tp.topic}[{tp.partition}]" for tp in sorted(tps))


async def _retry(what: str, op: Callable[[], Awaitable[T]], attempts: int, max_backoff_s: float) -> T:
    delay_s = 0.2
    for attempt in range(attempts + 1):
        try:
            return await op()
        except KafkaError as exc:
            if attempt == attempts:
                raise SourceUnavailable(f"kafka unreachable: {_describe(exc)}") from None
            log.warning(
                "kafka unavailable during %s (%s); retrying in %.1fs; retries left: %d",
                what,
                _describe(exc),
                delay_s,
                attempts - attempt,
            )
        await asyncio.sleep(delay_s)
        delay_s = min(delay_s * 2, max_backoff_s)
    raise AssertionError("unreachable")  # pragma: no cover


C = TypeVar("C", AIOKafkaConsumer, AIOKafkaProducer)


async def _started(client: C) -> C:
    """Start a client; a client that failed to start is stopped, so it leaks no connection."""
    try:
        await client.start()
    except BaseException:
        await client.stop()
        raise
    return client


async def ping(settings: KafkaSettings) -> None:
    """Connect to the cluster and fetch its metadata once; raises SourceUnavailable."""
    consumer = await _retry(
        "ping",
        lambda: _started(AIOKafkaConsumer(request_timeout_ms=10_000, **client_options(settings))),
        0,
        settings.retry_max_backoff_s,
    )
    try:
        await consumer.topics()
    finally:
        await consumer.stop()


async def producer(settings: KafkaSettings) -> AIOKafkaProducer:
    """A started producer (acks="all", not idempotent), retried while the brokers cannot be
    reached; raises SourceUnavailable after `kafka.connect_retries`. The caller stops it."""
    started: AIOKafkaProducer = await _retry(
        "connect",
        lambda: _started(AIOKafkaProducer(acks="all", linger_ms=5, **client_options(settings))),
        settings.connect_retries,
        settings.retry_max_backoff_s,
    )
    return started


async def publish(settings: KafkaSettings, records: Iterable[tuple[str, bytes]]) -> int:
    """Send (topic, value) records and wait until the brokers have them all."""
    sender = await producer(settings)
    try:
        futures = [await sender.send(topic, value) for topic, value in records]
        await sender.flush()
        for future in futures:
            await future
    finally:
        await sender.stop()
    return len(futures)
