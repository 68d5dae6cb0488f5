"""decode → validate → route → batch → write → ack. Imports no driver.

One reader task pulls messages from the source while the backlog has room, decodes each
into a record (or a dead letter) and appends it to its writer's batch; it asks the source
for the next messages (and lets that request go out) before decoding the last ones, so
broker and decoder work side by side.
Each kind has `writers_per_kind` writers (flusher tasks with batches of their own), and one
more writes dead letters. A record goes to the writer its `writer_key` hashes to, so every
update of one row is written by one writer, in the order it was read, while other rows are
written side by side. A writer writes its batch when it reaches `max_rows` or `max_age_s`,
retrying while PostgreSQL is unavailable, writes rows the database refused to dead_letters,
and only then acknowledges the batch's messages to the source. A message that decodes into
several records (a Binance trade report: an order and a fill) is acknowledged only when the
last of its records is written. After a bot_state batch is
committed, the snapshots it made the latest go to the Redis cache (`state.CacheKeeper`,
which never fails the batch) before the acknowledgement.

The backlog counts messages read but not yet acknowledged; when it reaches
`max_backlog_rows` the reader stops reading (calling the source's `idle` now and then, so a
Kafka consumer pauses its partitions yet stays in its group), memory stays bounded and the
broker keeps the rest. On stop, the reader stops first, then every flusher writes and
acknowledges what it holds and exits.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from itertools import groupby
from operator import attrgetter
from typing import TYPE_CHECKING, Any, Final

from tickvault import metrics, observe
from tickvault.codecs import Codec
from tickvault.errors import RecordError, StoreUnavailable
from tickvault.records import KINDS
from tickvault.rows import Item
from tickvault.settings import MAX_MESSAGE_BYTES
from tickvault.sources import Message, Source
from tickvault.store import DeadLetter, Store

if TYPE_CHECKING:
    from tickvault.state import CacheKeeper

log = logging.getLogger(__name__)
DEAD: Final = "dead_letter"
_TOPIC: Final = attrgetter("topic")
_VERSION: Final = attrgetter("version")
IDLE_POLL_S: Final = 1.0  # how often a reader blocked by a full backlog tells the source it is alive


@dataclass(frozen=True)
class Route:
    kind: str | None  # the kind messages on this topic default to; None: each message says
    codec: Codec


class Routes:
    """Topic name → Route: exact names first, then the first pattern that matches the whole
    name (Kafka subscriptions by regex); the answer is cached per topic."""

    def __init__(self, exact: Mapping[str, Route], patterns: Mapping[str, Route] | None = None) -> None:
        self._cache: dict[str, Route | None] = dict(exact)
        self._patterns = [(re.compile(p), route) for p, route in (patterns or {}).items()]

    def get(self, topic: str) -> Route | None:
        try:
            return self._cache[topic]
        except KeyError:
            route = next((r for p, r in self._patterns if p.fullmatch(topic)), None)
            self._cache[topic] = route
            return route


@dataclass(frozen=True)
class PipelineConfig:
    max_rows: int = 5000
    max_age_s: float = 0.2
    max_backlog_rows: int = 100_000
    read_count: int = 1000
    read_timeout_s: float = 0.2
    max_message_bytes: int = MAX_MESSAGE_BYTES
    retry_max_backoff_s: float = 5.0
    writers_per_kind: int = 2


@dataclass
class _Batch:
    items: list[Any] = field(default_factory=list)  # Items, or DeadLetters for DEAD
    messages: list[Message] = field(default_factory=list)
    first_added_s: float = 0.0


class Batcher:
    """Per-kind batches that are ready when full or old enough. Pure; no I/O."""

    def __init__(self, max_rows: int, max_age_s: float) -> None:
        self.max_rows = max_rows
        self.max_age_s = max_age_s
        self._batches: dict[str, _Batch] = {}

    def extend(self, key: str, items: list[Any], messages: list[Message], now_s: float) -> bool:
        """Append items and their messages; True when that makes the batch full."""
        batch = self._batches.setdefault(key, _Batch())
        if not batch.items:
            batch.first_added_s = now_s
        batch.items += items
        batch.messages += messages
        return len(batch.items) >= self.max_rows

    def size(self, key: str) -> int:
        batch = self._batches.get(key)
        return len(batch.items) if batch else 0

    def deadline_s(self, key: str) -> float | None:
        batch = self._batches.get(key)
        return batch.first_added_s + self.max_age_s if batch and batch.items else None

    def ready(self, key: str, now_s: float, force: bool = False) -> bool:
        size = self.size(key)
        deadline = self.deadline_s(key)
        return size >= self.max_rows or (size > 0 and (force or (deadline is not None and now_s >= deadline)))

    def take(self, key: str) -> tuple[list[Any], list[Message]]:
        """Remove and return up to `max_rows` items and their messages, oldest first."""
        batch = self._batches.get(key)
        if batch is None:
            return [], []
        items, messages = batch.items[: self.max_rows], batch.messages[: self.max_rows]
        del batch.items[: self.max_rows], batch.messages[: self.max_rows]
        return items, messages  # a remainder keeps the older start time, so it flushes no later


class Backlog:
    """Counts messages read but not acknowledged; readers wait while it is full."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.size = 0
        self._room = asyncio.Event()
        self._room.set()

    def add(self, n: int) -> None:
        self.size += n
        metrics.BACKLOG_ROWS.set(self.size)
        if self.size >= self.limit:
            self._room.clear()

    def release(self, n: int) -> None:
        self.size -= n
        metrics.BACKLOG_ROWS.set(self.size)
        if self.size < self.limit:
            self._room.set()

    async def wait_for_room(self, *interrupts: asyncio.Event, timeout_s: float | None = None) -> bool:
        """Return True when there is room; False when any of `interrupts` is set or
        `timeout_s` passes first."""
        if self._room.is_set():
            return True
        waiters = {asyncio.ensure_future(e.wait()) for e in (self._room, *interrupts)}
        _, pending = await asyncio.wait(waiters, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED)
        for task in pending:
            task.cancel()
        return self._room.is_set()


def _count(counts: Counter[tuple[Any, ...]]) -> None:
    for (counter, *labels), n in counts.items():
        counter.labels(*labels).inc(n)


class Pipeline:
    def __init__(
        self,
        source: Source,
        store: Store,
        routes: Routes,
        config: PipelineConfig,
        health: metrics.Health | None = None,
        keeper: CacheKeeper | None = None,
    ) -> None:
        self.source = source
        self.keeper = keeper
        self.store = store
        self.routes = routes
        self.config = config
        self.health = health or metrics.Health()
        self.batcher = Batcher(config.max_rows, config.max_age_s)
        self.backlog = Backlog(config.max_backlog_rows)
        writers = range(config.writers_per_kind)
        self._writers = {kind: tuple(f"{kind}/{i}" for i in writers) for kind in KINDS}  # batch keys
        self._kind_of = {key: kind for kind, keys in self._writers.items() for key in keys} | {DEAD: DEAD}
        self._wake = {key: asyncio.Event() for key in self._kind_of}
        # id of a message decoded into several records → how many of them are not yet written
        self._parts: dict[int, int] = {}
        self._draining = False

    async def run(self, stop: asyncio.Event) -> None:
        """Consume until `stop` is set, then flush and acknowledge everything read."""
        flushers = [asyncio.create_task(self._flush_loop(key), name=f"flush-{key}") for key in self._wake]
        failed = asyncio.Event()  # a flusher died: stop reading, so the failure is not silent
        for task in flushers:
            task.add_done_callback(lambda t: failed.set() if not t.cancelled() and t.exception() else None)
        try:
            await self._read_loop(stop, failed)
        finally:
            self._draining = True
            for event in self._wake.values():
                event.set()
            log.info("draining %d unacknowledged messages", self.backlog.size)
            results = await asyncio.gather(*flushers, return_exceptions=True)
            for result in results:
                if isinstance(result, BaseException) and not isinstance(result, asyncio.CancelledError):
                    raise result
        log.info("pipeline drained")

    async def _read_loop(self, stop: asyncio.Event, failed: asyncio.Event) -> None:
        self.health.set(True)
        reading: asyncio.Task[list[Message]] | None = None
        try:
            while not stop.is_set() and not failed.is_set():
                if reading is None:
                    if not await self.backlog.wait_for_room(stop, failed, timeout_s=IDLE_POLL_S):
                        if not stop.is_set() and not failed.is_set():
                            await self.source.idle()  # full: stay in the consumer group, take nothing
                        continue
                    reading = self._start_read()
                messages = await reading
                self.backlog.add(len(messages))
                # the broker prepares the next batch while this one is decoded
                reading = self._start_read() if self.backlog.size < self.backlog.limit else None
                if reading is not None:
                    await asyncio.sleep(0)  # one loop turn: the read sends its request now
                self._take(messages)
        except BaseException:
            if reading is not None:
                reading.cancel()  # what it had read stays unacknowledged: redelivered
            raise
        if reading is not None:  # read before the stop: decoded now, so the drain writes it
            messages = await reading
            self.backlog.add(len(messages))
            self._take(messages)

    def _start_read(self) -> asyncio.Task[list[Message]]:
        room = max(1, min(self.config.read_count, self.backlog.limit - self.backlog.size))
        return asyncio.create_task(self.source.read(room, self.config.read_timeout_s), name="read")

    def _take(self, messages: list[Message]) -> None:
        """Decode one read into a list per writer (or dead letters), then batch each list."""
        taken: dict[str, tuple[list[Any], list[Message]]] = {key: ([], []) for key in self._wake}
        counts: Counter[tuple[Any, ...]] = Counter()  # metrics: labels() per message costs too much
        limit = self.config.max_message_bytes
        source = messages[0].source if messages else ""  # one read, one source
        # per kind, the (items, messages) lists of its writers, in writer order
        slots = {kind: [taken[key] for key in keys] for kind, keys in self._writers.items()}
        letters, letter_messages = taken[DEAD]
        for topic, run in groupby(messages, key=_TOPIC):  # a read comes in runs of one stream
            route = self.routes.get(topic)
            label = (route.kind if route else None) or "mixed"
            codec, kind = (route.codec, route.kind) if route is not None else (None, None)
            n = 0
            for message in run:
                n += 1
                payload = message.payload or b""
                try:
                    if codec is not None and message.error is None and len(payload) <= limit:
                        item = codec(payload, kind)
                    else:
                        raise self._refusal(message, route)
                except RecordError as exc:
                    counts[(metrics.MESSAGES_REJECTED, label, source, exc.category)] += 1
                    letters.append(
                        DeadLetter(
                            message.source, message.topic, message.entry_id, kind,
                            exc.category, exc.reason, payload,
                        )
                    )  # fmt: skip
                    letter_messages.append(message)
                    continue
                if isinstance(item, list):
                    self._take_parts(item, message, taken)
                    continue
                writers = slots[item.KIND]
                items, item_messages = writers[hash(item.writer_key) % len(writers)]
                items.append(item)
                item_messages.append(message)
            counts[(metrics.MESSAGES_CONSUMED, label, source)] += n
        now_s = time.monotonic()
        for key, (items, item_messages) in taken.items():
            if items:
                if key != DEAD:
                    counts[(metrics.MESSAGES_ACCEPTED, self._kind_of[key], source)] += len(items)
                was_empty = self.batcher.size(key) == 0
                if self.batcher.extend(key, items, item_messages, now_s) or was_empty:
                    self._wake[key].set()
        _count(counts)

    def _take_parts(
        self, parts: list[Item], message: Message, taken: dict[str, tuple[list[Any], list[Message]]]
    ) -> None:
        """Place the records of a message that holds several; it is acknowledged with the last."""
        self._parts[id(message)] = len(parts)
        for part in parts:
            writers = self._writers[part.KIND]
            items, item_messages = taken[writers[hash(part.writer_key) % len(writers)]]
            items.append(part)
            item_messages.append(message)

    def _refusal(self, message: Message, route: Route | None) -> RecordError:
        """Why a message goes to dead_letters without being decoded."""
        if message.error is not None:
            return RecordError(message.error, "malformed_entry")
        if route is None:
            return RecordError(f"no route for topic {message.topic!r}", "unknown_topic")
        size, limit = len(message.payload or b""), self.config.max_message_bytes
        return RecordError(f"message of {size} bytes exceeds the {limit}-byte limit", "too_large")

    async def _flush_loop(self, key: str) -> None:
        wake = self._wake[key]
        while True:
            now_s = time.monotonic()
            if self.batcher.ready(key, now_s, force=self._draining):
                items, messages = self.batcher.take(key)
                await self._flush(key, items, messages)
                continue
            if self._draining:
                return
            deadline = self.batcher.deadline_s(key)
            wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), None if deadline is None else max(0.0, deadline - now_s))

    async def _flush(self, key: str, items: list[Any], messages: list[Message]) -> None:
        started_s = time.monotonic()
        kind = self._kind_of[key]
        if kind == DEAD:
            await self._write_dead_letters(items)
        else:
            await self._write_records(kind, items, messages)
        if self._parts:
            messages = self._whole(messages)
        await self.source.ack(messages)
        self.backlog.release(len(messages))
        metrics.FLUSH_SECONDS.labels(kind).observe(time.monotonic() - started_s)
        metrics.BATCH_ROWS.labels(kind).observe(len(items))

    def _whole(self, messages: list[Message]) -> list[Message]:
        """The messages of a written batch whose every record is now written. A message that
        decoded into several records (in batches of other kinds or writers) is held back
        until the batch holding its last record is written: acknowledged once, after all."""
        whole = []
        for message in messages:
            key = id(message)  # the message object stays alive in its batches until then
            left = self._parts.get(key)
            if left is not None:
                if left > 1:
                    self._parts[key] = left - 1
                    continue
                del self._parts[key]
            whole.append(message)
        return whole

    async def _write_records(self, kind: str, items: list[Item], messages: list[Message]) -> None:
        versions = list(map(_VERSION, messages))
        result = await self._retrying(
            f"{len(items)} {kind} rows", lambda: self.store.write(kind, items, versions)
        )
        for table, n in result.written.items():
            metrics.ROWS_WRITTEN.labels(table).inc(n)
        for table, n in result.unchanged.items():
            metrics.ROWS_UNCHANGED.labels(table).inc(n)
        observe.committed(kind, items, messages, {i for i, _ in result.rejected})
        if result.latest and self.keeper is not None:
            await self.keeper.written(result.latest)
        if result.rejected:
            letters = []
            for index, reason in result.rejected:
                m = messages[index]
                letters.append(
                    DeadLetter(m.source, m.topic, m.entry_id, kind, "db_rejected", reason, m.payload or b"")
                )
                metrics.MESSAGES_REJECTED.labels(kind, m.source, "db_rejected").inc()
            log.warning(
                "database refused %d of %d %s rows; sent to dead_letters", len(letters), len(items), kind
            )
            await self._write_dead_letters(letters)

    async def _write_dead_letters(self, letters: list[DeadLetter]) -> None:
        await self._retrying(f"{len(letters)} dead letters", lambda: self.store.write_dead_letters(letters))
        for letter in letters:
            metrics.DEAD_LETTERS.labels(letter.category).inc()
        log.info("stored %d dead letters", len(letters))

    async def _retrying(self, what: str, write: Any) -> Any:
        """Retry a write while PostgreSQL is unavailable, with capped backoff; never give up on
        data already read (the drain deadline of the app is the only bound)."""
        delay_s = 0.1
        attempt = 0
        while True:
            try:
                result = await write()
            except StoreUnavailable as exc:
                attempt += 1
                metrics.STORE_RETRIES.labels(exc.cause).inc()
                self.health.set(False, metrics.POSTGRES_UNAVAILABLE)
                log.warning(
                    "postgres unavailable writing %s (%s); attempt %d, retrying in %.1fs",
                    what,
                    exc,
                    attempt,
                    delay_s,
                )
                await asyncio.sleep(delay_s)
                delay_s = min(delay_s * 2, self.config.retry_max_backoff_s)
                continue
            if attempt:
                log.info("postgres back after %d retries; wrote %s", attempt, what)
                self.health.set(True)
            return result
