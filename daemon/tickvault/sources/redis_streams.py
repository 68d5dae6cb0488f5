"""Redis Streams source: one consumer in a consumer group, reading every configured stream.

Delivery, in the order `read` serves it:
1. At start, this consumer's own pending entries (left by a previous run under the same
   consumer name) are re-read from id 0 until each stream's history is exhausted.
2. Every `claim_interval_s`, entries pending longer than `claim_idle_s` in other consumers
   (a crashed replica) are taken over with XAUTOCLAIM. Entries this consumer already holds
   in flight are skipped, so a slow flush is not processed twice by the same process.
3. New entries with XREADGROUP `>`.
An entry stays pending until `ack` (XACK) is called after its rows are committed.
A command that meets NOGROUP (Redis came back empty, or the group was destroyed) recreates
the groups at `redis.start_id` and runs again; both retry connection errors alike, since a
restarted server leaves the pool's idle connections dead.

An entry's payload is its `data` field. On a field-map stream (one whose codec reads flat
field maps, like cryptofeed's Redis backends) an entry with other fields is handed over
whole, as one JSON object of its fields' text; a single `data` field still counts as the
payload there, which is how a replayed dead letter comes back.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable, Collection, Sequence
from itertools import groupby
from operator import attrgetter
from typing import Any, Final, TypeVar
from urllib.parse import urlsplit

import hiredis
import redis.asyncio as aioredis
from redis.asyncio.connection import AbstractConnection
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from tickvault.errors import SourceError, SourceUnavailable
from tickvault.settings import RedisSettings
from tickvault.sources import Lag, Message, new_message, redis_version

log = logging.getLogger(__name__)
T = TypeVar("T")
_RETRIABLE = (RedisConnectionError, RedisTimeoutError, OSError)
_PAYLOAD_FIELD = b"data"
READ_GRACE_S: Final = 5.0  # a blocking read answers within its BLOCK time plus this, or the link is dead


class _HiredisPacking:
    """Commands packed by hiredis in C. redis-py's asyncio connection packs every argument in
    Python, which for an XACK of a 5,000-entry batch costs more than the rest of the ack."""

    def pack_command(self, *args: Any) -> list[bytes]:
        if isinstance(args[0], str) and " " in args[0]:  # "XGROUP CREATE": two words, as redis-py sends
            args = (*args[0].split(), *args[1:])
        return [hiredis.pack_command(args)]


class _Connection(_HiredisPacking, aioredis.Connection):
    pass


class _SSLConnection(_HiredisPacking, aioredis.SSLConnection):
    pass


class _UnixConnection(_HiredisPacking, aioredis.UnixDomainSocketConnection):
    pass


_CONNECTION_CLASSES: Final = {"redis": _Connection, "rediss": _SSLConnection, "unix": _UnixConnection}


def connect(settings: RedisSettings, timeout_s: float | None = None) -> aioredis.Redis:
    """A client for `settings`; credentials and TLS files go to the driver, never to a log.
    With `timeout_s` (the bot-state cache), every command and connect waits at most that
    long and nothing is retried: the caller falls back to PostgreSQL instead."""
    url = settings.url.get_secret_value()
    scheme = urlsplit(url).scheme
    options: dict[str, Any] = {
        "connection_class": _CONNECTION_CLASSES.get(scheme, _Connection),
        "socket_connect_timeout": 5 if timeout_s is None else timeout_s,
    }
    if timeout_s is not None:
        options |= {"socket_timeout": timeout_s, "retry": Retry(NoBackoff(), 0)}
    if settings.username is not None:
        options["username"] = settings.username
    if settings.password is not None:
        options["password"] = settings.password.get_secret_value()
    if scheme == "rediss":
        options["ssl_check_hostname"] = settings.ssl_check_hostname
        for name in ("ssl_ca_certs", "ssl_certfile", "ssl_keyfile"):
            path = getattr(settings, name)
            if path is not None:
                options[name] = str(path)
    return aioredis.Redis.from_url(url, decode_responses=False, health_check_interval=30, **options)


def _unparsed(response: Any, **options: Any) -> Any:
    return response


def _streams(response: Any) -> Any:
    """(stream, entries) pairs of an unparsed XREADGROUP reply: a map (RESP3) or a list."""
    return response.items() if isinstance(response, dict) else response or []


def _share(max_n: int, streams: int) -> int:
    """A COUNT that splits `max_n` among `streams` streams (at least 1 each)."""
    return max(1, -(-max_n // max(1, streams)))


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _describe(exc: BaseException) -> str:
    # redis-py error texts may carry the URL; keep only the class and the first words
    return f"{type(exc).__name__}: {str(exc).split(' to ')[0][:120]}"


def _field_map(source: str, stream: str, entry_id: str, fields: dict[bytes, bytes]) -> Message:
    """An entry of a field-map stream as a Message whose payload is its fields as a JSON
    object of strings (an entry with a non-UTF-8 field is malformed)."""
    version = redis_version(entry_id)
    try:
        text = {k.decode(): v.decode() for k, v in fields.items()}
    except UnicodeDecodeError:
        raw = json.dumps({k.decode(errors="replace"): v.decode(errors="replace") for k, v in fields.items()})
        error = "stream entry has a field that is not UTF-8"
        return Message(source, stream, entry_id, raw.encode(), error, version)
    return Message(source, stream, entry_id, json.dumps(text).encode(), None, version)


class RedisStreamsSource:
    name = "redis"

    def __init__(
        self, settings: RedisSettings, streams: Sequence[str], field_map_streams: Collection[str] = ()
    ) -> None:
        if not streams:
            raise SourceError("no streams configured")
        self.settings = settings
        self.streams = list(streams)
        self._field_maps = frozenset(field_map_streams)
        self._redis: aioredis.Redis | None = None
        # XREADGROUP `>` on a connection of its own: `read` writes the request before it first
        # waits, so the pipeline can have Redis prepare the next batch while it decodes one
        self._reads: AbstractConnection | None = None
        self._recovering: dict[str, str] = {}
        self._busy_streams = len(self.streams)  # streams whose last read returned a full COUNT
        self._claim_cursor: dict[str, str] = {}
        self._next_claim_s = 0.0
        self._in_flight: dict[str, set[str]] = {s: set() for s in self.streams}
        self._closed = False

    async def __aenter__(self) -> RedisStreamsSource:
        self._redis = connect(self.settings)
        # entries as Redis sends them ([id, [field, value, …]]): no per-entry dict to build
        self._redis.set_response_callback("XREADGROUP", _unparsed)
        pool = self._redis.connection_pool
        # no socket timeout: redis-py would then send through asyncio.wait_for, a new task that
        # writes only on a later loop turn; `_read_new` bounds the wait itself
        self._reads = pool.connection_class(**{**pool.connection_kwargs, "socket_timeout": None})
        await self._retry(
            "create consumer groups", self._create_groups, attempts=self.settings.connect_retries
        )
        self._recovering = {s: "0" for s in self.streams}
        self._next_claim_s = time.monotonic() + self.settings.claim_interval_s
        log.info(
            "reading streams %s as consumer %s in group %s",
            ",".join(self.streams),
            self.settings.consumer,
            self.settings.group,
        )
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def close(self) -> None:
        reads, self._reads = self._reads, None
        if reads is not None:
            await reads.disconnect()
        redis, self._redis = self._redis, None
        if redis is not None:
            await redis.aclose()

    @property
    def redis(self) -> aioredis.Redis:
        if self._redis is None:
            raise SourceError("source is not open")
        return self._redis

    async def idle(self) -> None:
        """Nothing to do: an idle Redis consumer keeps its pending entries and its name."""

    async def lag(self) -> list[Lag]:
        """Per stream: entries the group has not read yet (XINFO GROUPS `lag`) plus entries
        read but not acknowledged (`pending`)."""
        lags = []
        for stream in self.streams:
            for group in await self.redis.xinfo_groups(stream):
                if _text(group.get("name")) == self.settings.group and group.get("lag") is not None:
                    undelivered = int(group["lag"])
                    lags.append(Lag(stream, "", self.settings.group, undelivered + int(group["pending"])))
        return lags

    async def _create_groups(self) -> None:
        for stream in self.streams:
            try:
                await self.redis.xgroup_create(
                    stream, self.settings.group, id=self.settings.start_id, mkstream=True
                )
                log.info("created consumer group %s on %s", self.settings.group, stream)
            except ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise

    async def _retry(self, what: str, op: Callable[[], Awaitable[T]], attempts: int | None = None) -> T:
        """Run `op`, retrying connection errors with capped backoff; `attempts=None` retries forever."""
        delay_s = 0.1
        failures = 0
        recreate = False  # the group went missing (Redis restarted empty): create it first
        while True:
            try:
                if recreate:
                    await self._create_groups()
                    recreate = False
                return await op()
            except _RETRIABLE as exc:
                failures += 1
                if attempts is not None and failures > attempts:
                    raise SourceUnavailable(f"redis unreachable: {_describe(exc)}") from None
                left = "" if attempts is None else f"; retries left: {attempts - failures + 1}"
                log.warning(
                    "redis unavailable during %s (%s); retrying in %.1fs%s",
                    what,
                    _describe(exc),
                    delay_s,
                    left,
                )
            except ResponseError as exc:
                if "NOGROUP" not in str(exc):
                    raise SourceError(f"redis refused {what}: {exc}") from None
                log.warning("consumer group missing during %s; recreating it", what)
                recreate = True
                continue
            await asyncio.sleep(delay_s)
            delay_s = min(delay_s * 2, self.settings.retry_max_backoff_s)

    async def read(self, max_n: int, timeout_s: float) -> list[Message]:
        if self._recovering:
            return await self._retry("pending recovery", lambda: self._read_own_pending(max_n))
        if time.monotonic() >= self._next_claim_s:
            claimed = await self._retry("claim", lambda: self._claim(max_n))
            if claimed:
                return claimed
        block_ms = max(1, int(timeout_s * 1000))
        # Redis applies COUNT to each stream: share max_n among the streams that filled their
        # share last time (the others had run dry), so one busy stream is read in full reads
        count = _share(max_n, self._busy_streams)
        response = await self._retry("read", lambda: self._read_new(count, block_ms))
        self._busy_streams = sum(len(entries or ()) >= count for _, entries in _streams(response))
        return self._messages(response)

    async def _read_new(self, count: int, block_ms: int) -> Any:
        if self._reads is None:
            raise SourceError("source is not open")
        s = self.settings
        await self._reads.send_command(
            "XREADGROUP", "GROUP", s.group, s.consumer, "COUNT", count, "BLOCK", block_ms,
            "STREAMS", *self.streams, *[">"] * len(self.streams),
        )  # fmt: skip
        async with asyncio.timeout(block_ms / 1000 + READ_GRACE_S):
            return await self._reads.read_response()

    def _per_stream(self, max_n: int) -> int:
        """Redis applies COUNT to each stream; split `max_n` so one read returns about max_n."""
        return _share(max_n, len(self.streams))

    async def _read_own_pending(self, max_n: int) -> list[Message]:
        cursors: dict[Any, Any] = dict(self._recovering)
        response: Any = await self.redis.xreadgroup(
            self.settings.group, self.settings.consumer, cursors, count=self._per_stream(max_n)
        )
        messages: list[Message] = []
        deleted: list[Message] = []
        for stream_key, entries in _streams(response):
            stream = stream_key.decode()
            if not entries:
                del self._recovering[stream]
                log.info("recovered pending entries of %s", stream)
                continue
            self._recovering[stream] = entries[-1][0].decode()
            for message in self._messages([(stream_key, entries)], keep_deleted=True):
                (messages if message.payload is not None or message.error else deleted).append(message)
        if deleted:  # trimmed from the stream while pending: nothing left to store
            await self.ack(deleted)
        return messages

    async def _claim(self, max_n: int) -> list[Message]:
        if not self._claim_cursor:
            self._claim_cursor = dict.fromkeys(self.streams, "0-0")
        idle_ms = int(self.settings.claim_idle_s * 1000)
        claimed: list[Message] = []
        for stream in list(self._claim_cursor):
            cursor, entries, *_ = await self.redis.xautoclaim(
                stream,
                self.settings.group,
                self.settings.consumer,
                idle_ms,
                self._claim_cursor[stream],
                count=self._per_stream(max_n),
            )
            cursor = cursor.decode() if isinstance(cursor, bytes) else str(cursor)
            if cursor == "0-0":
                del self._claim_cursor[stream]
            else:
                self._claim_cursor[stream] = cursor
            fresh = [e for e in entries if e[0].decode() not in self._in_flight[stream]]
            claimed += self._messages([(stream.encode(), fresh)])
        if not self._claim_cursor:
            self._next_claim_s = time.monotonic() + self.settings.claim_interval_s
        if claimed:
            log.info(
                "claimed %d entries idle for over %.0fs from other consumers",
                len(claimed),
                self.settings.claim_idle_s,
            )
        return claimed

    def _messages(self, response: Any, keep_deleted: bool = False) -> list[Message]:
        messages: list[Message] = []
        append, name = messages.append, self.name
        for stream_key, entries in _streams(response):
            stream = stream_key.decode()
            add = self._in_flight[stream].add
            for entry_id_raw, fields in entries:
                entry_id = entry_id_raw.decode()
                # the rule: one "data" field (a claimed entry comes as a dict: `_message` reads it)
                if len(fields) == 2 and type(fields) is list and fields[0] == _PAYLOAD_FIELD:
                    add(entry_id)
                    # an id of at most 19 characters has parts of at most 17 digits: no clamping
                    version = entry_id.replace("-", "\t") if len(entry_id) < 20 else redis_version(entry_id)
                    append(new_message((name, stream, entry_id, fields[1], None, version)))
                elif fields:
                    add(entry_id)
                    append(self._message(stream, entry_id, fields))
                elif keep_deleted:
                    append(Message(name, stream, entry_id, None, None, redis_version(entry_id)))
        return messages

    def _message(self, stream: str, entry_id: str, fields: list[bytes] | dict[bytes, bytes]) -> Message:
        if isinstance(fields, list):  # XREADGROUP, unparsed: [field, value, …]
            fields = dict(zip(fields[::2], fields[1::2], strict=False))
        if stream in self._field_maps:
            return _field_map(self.name, stream, entry_id, fields)
        payload = fields.get(_PAYLOAD_FIELD)
        if payload is not None:
            return Message(self.name, stream, entry_id, payload, None, redis_version(entry_id))
        raw = json.dumps({k.decode(errors="replace"): v.decode(errors="replace") for k, v in fields.items()})
        error = "stream entry has no 'data' field"
        return Message(self.name, stream, entry_id, raw.encode(), error, redis_version(entry_id))

    async def ack(self, messages: Sequence[Message]) -> None:
        by_stream: dict[str, list[str]] = {}
        for stream, run in groupby(messages, key=attrgetter("topic")):  # batches come in runs
            by_stream.setdefault(stream, []).extend(map(attrgetter("entry_id"), run))

        async def send() -> None:
            async with self.redis.pipeline(transaction=False) as pipe:
                for stream, ids in by_stream.items():
                    pipe.xack(stream, self.settings.group, *ids)
                await pipe.execute()

        await self._retry("ack", send)
        for stream, ids in by_stream.items():
            self._in_flight[stream].difference_update(ids)
