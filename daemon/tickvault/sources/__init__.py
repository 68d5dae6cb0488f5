"""Message sources. A source reads raw messages and acknowledges them; it never validates
and never writes to the store.

Contract of a `Source`:
- `read(max_n, timeout_s)` returns up to `max_n` messages, waiting at most about `timeout_s`
  for the first one (an empty list is normal). A message returned by `read` is redelivered —
  to this or another consumer, after a restart or a crash — until it is acknowledged.
- `ack(messages)` is called only after every record decoded from those messages is durable
  in PostgreSQL (or the message is durable in dead_letters). Acknowledging the same message
  twice is harmless. Messages may be acknowledged in any order; a source whose broker tracks
  a single position per partition must not move that position past an unacknowledged message.
- `idle()` is called instead of `read` while the pipeline's backlog is full: the source
  takes nothing but keeps its consumer-group membership alive (Kafka pauses its partitions).
- Connection losses are retried inside the source with bounded backoff; `read` and `ack`
  return normally once the broker is back, and raise only on unrecoverable errors.
- `lag()` reports, per topic (and partition), how many messages the consumer group has not
  yet committed; it only reads broker state.
- Entering the context connects (creating consumer groups if missing); leaving it closes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from typing import Final, NamedTuple, Protocol


class Message(NamedTuple):  # a tuple: made for every message read, so made cheaply
    source: str  # "redis" or "kafka"
    topic: str  # stream or topic name
    entry_id: str  # stream entry id, or "partition:offset"
    payload: bytes | None  # None only for an entry deleted from the stream while pending
    error: str | None = None  # the entry itself is malformed; `payload` then holds what it had
    # the message's place in publish order, as COPY text of two bigints "ms<TAB>seq": a Redis
    # entry id's two parts; a Kafka record's timestamp and offset. A redelivered message has
    # the same version, a later-published one a greater version (`redis_version`, Kafka's
    # read). The store keeps the version of each row, so a redelivered older update cannot
    # replace a newer one.
    version: str = "0\t0"


# Message(...) runs a Python-level __new__; this builds the same tuple in C (all six fields)
new_message: Final = partial(tuple.__new__, Message)
MAX_VERSION_PART: Final = 2**63 - 1  # the version columns are bigint
_SAFE_DIGITS: Final = 18  # a part of at most 18 digits is below 2**63: no clamping


def redis_version(entry_id: str) -> str:
    """A Redis stream entry id "<ms>-<seq>" as a version: ids grow in publish order within a
    stream, and their ms part is the server's clock, so they order streams of one server too.
    Redis allows parts up to 2**64-1 (only ids set by hand come near); a part beyond a
    bigint is clamped to 2**63-1, and messages whose versions are clamped alike are ordered
    by their values."""
    dash = entry_id.find("-")
    if 0 < dash <= _SAFE_DIGITS and len(entry_id) - dash - 1 <= _SAFE_DIGITS:
        return entry_id.replace("-", "\t")
    ms, _, seq = entry_id.partition("-")
    return f"{min(int(ms), MAX_VERSION_PART)}\t{min(int(seq or 0), MAX_VERSION_PART)}"


def kafka_version(timestamp_ms: int, offset: int) -> str:
    """A Kafka record's version: its timestamp (CreateTime or LogAppendTime, ms; a record
    without one counts as 0), then its offset, which orders one partition."""
    return f"{max(timestamp_ms, 0)}\t{offset}"


@dataclass(frozen=True, slots=True)
class Lag:
    topic: str
    partition: str  # Kafka partition number; "" for a Redis stream
    group: str
    messages: int  # not yet committed by the group: undelivered plus delivered-unacknowledged


class Source(Protocol):
    name: str

    async def __aenter__(self) -> Source: ...

    async def __aexit__(self, *exc_info: object) -> None: ...

    async def read(self, max_n: int, timeout_s: float) -> list[Message]: ...

    async def ack(self, messages: Sequence[Message]) -> None: ...

    async def idle(self) -> None: ...

    async def lag(self) -> list[Lag]: ...
