"""The steady-rate run: publish at a fixed rate into a running daemon, measure publish → ack.

Messages go out in 10 ms ticks (pipelined XADD, catching up when a tick runs late) so the
average rate holds. Every 5 ms the poller asks each stream's consumer group how far it has
acknowledged: everything below the oldest pending entry, or up to the last delivered entry
when nothing is pending. A message's latency is the first poll that finds it acknowledged
minus the moment its XADD was sent. The daemon acknowledges only after the COMMIT, so this is
an upper bound of publish → commit (plus up to one poll interval).
"""

from __future__ import annotations

import asyncio
import bisect
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import redis.asyncio as aioredis

TICK_S: Final = 0.01
POLL_S: Final = 0.005
SEQ_BITS: Final = 24


def entry_key(entry_id: bytes | str) -> int:
    text = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
    ms, seq = text.split("-")
    return (int(ms) << SEQ_BITS) + int(seq)


@dataclass
class Published:
    keys: list[int] = field(default_factory=list)  # entry keys in publish order (increasing)
    sent_s: list[float] = field(default_factory=list)


@dataclass
class Acked:
    times_s: list[float] = field(default_factory=list)
    through: list[int] = field(default_factory=list)  # acknowledged up to this key, inclusive


def interleave(payloads: dict[str, list[bytes]], topics: dict[str, str]) -> list[tuple[str, bytes]]:
    """All messages as (stream, payload), kinds mixed evenly in their proportions."""
    streams = {kind: stream for stream, kind in topics.items()}
    tagged = [
        ((i + 0.5) / len(items), streams[kind], payload)
        for kind, items in payloads.items()
        for i, payload in enumerate(items)
    ]
    tagged.sort(key=lambda t: t[0])
    return [(stream, payload) for _, stream, payload in tagged]


async def publish_at_rate(
    redis: aioredis.Redis, messages: Sequence[tuple[str, bytes]], rate: float, published: dict[str, Published]
) -> float:
    """Publish `messages` at `rate` per second; returns the rate achieved."""
    started = time.perf_counter()
    sent = 0
    while sent < len(messages):
        due = min(len(messages), int((time.perf_counter() - started) * rate) + 1)
        if due > sent:
            chunk = messages[sent:due]
            sent_s = time.perf_counter()
            async with redis.pipeline(transaction=False) as pipe:
                for stream, payload in chunk:
                    pipe.xadd(stream, {"data": payload})
                ids = await pipe.execute()
            for (stream, _), entry_id in zip(chunk, ids, strict=True):
                published[stream].keys.append(entry_key(entry_id))
                published[stream].sent_s.append(sent_s)
            sent = due
        await asyncio.sleep(TICK_S)
    return len(messages) / (time.perf_counter() - started)


async def acknowledged_through(redis: aioredis.Redis, stream: str, group: str) -> int:
    pending = await redis.xpending(stream, group)
    if pending["pending"]:
        return entry_key(pending["min"]) - 1
    info = await group_info(redis, stream, group)
    if info is None:
        raise RuntimeError(f"no consumer group {group} on {stream}")
    return entry_key(info["last-delivered-id"])


async def group_info(redis: aioredis.Redis, stream: str, group: str) -> dict[str, Any] | None:
    """XINFO GROUPS of `stream`, the entry of `group`; None when the group does not exist."""
    return next((g for g in await redis.xinfo_groups(stream) if _text(g["name"]) == group), None)


async def poll_acks(redis: aioredis.Redis, group: str, acked: dict[str, Acked], stop: asyncio.Event) -> None:
    while not stop.is_set():
        now_s = time.perf_counter()
        for stream, series in acked.items():
            through = await acknowledged_through(redis, stream, group)
            if series.through and through < series.through[-1]:
                through = series.through[-1]  # never backwards
            series.times_s.append(now_s)
            series.through.append(through)
        await asyncio.sleep(POLL_S)


def latencies_s(published: dict[str, Published], acked: dict[str, Acked]) -> list[float]:
    result: list[float] = []
    for stream, pub in published.items():
        series = acked[stream]
        for key, sent_s in zip(pub.keys, pub.sent_s, strict=True):
            i = bisect.bisect_left(series.through, key)
            if i == len(series.through):
                raise RuntimeError(f"entry {key} of {stream} was never seen acknowledged")
            result.append(max(0.0, series.times_s[i] - sent_s))
    return result


def percentile(sorted_values: Sequence[float], q: float) -> float:
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
