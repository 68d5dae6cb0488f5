"""What the daemon measures beyond counting: after each committed batch, the event and
publish latency of a sample of its records and the newest event time per market series;
every `metrics.lag_interval_s`, whether each dependency answers; at scrape time, the pool.

Per batch, not per record: a batch's newest time per series takes one sort of the batch by
event time (Timsort runs in about one comparison per record on the nearly ordered batches a
feed sends) and one dict built from it, both in C; the latency histograms observe every
`len(batch) // SAMPLE_PER_BATCH`-th record (a systematic sample of 8 to 15 records, every
record of a batch of fewer than 16), so their quantiles estimate those of all records
without an observation per record.

A kline's event is its close (open_time + interval; the commit time while the candle is
still open, which its updates report as it goes): a 1h candle published on close is fresh
then, not an hour old. Its series' newest time is the close of the batch's newest candle
by open_time (computed for that one candle per series).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from operator import attrgetter
from typing import Any, Final

from tickvault import metrics
from tickvault.reads.intervals import LENGTH_US, MONTH, from_us, next_open, to_us
from tickvault.rows import Row
from tickvault.sources import Message

log = logging.getLogger(__name__)
SAMPLE_PER_BATCH: Final = 8
MIN_PROBE_TIMEOUT_S: Final = 2.0  # a probe may take this long, however short the interval
_TIME: Final = attrgetter("time")
_SERIES: Final = attrgetter("series")
_EXCHANGE_SYMBOL: Final = attrgetter("exchange", "symbol")

Probe = Callable[[], Awaitable[Any]]


def committed(
    kind: str, items: Sequence[Any], messages: Sequence[Message], refused: Collection[int] = ()
) -> None:
    """After a batch of `kind` is committed: `items` are its records (each with `time`, a UTC
    datetime, and `series`, "exchange<TAB>symbol" or ""), `messages[i]` the message of
    `items[i]`; `refused` the indexes of the records the database refused (not counted)."""
    if refused:
        kept = [i for i in range(len(items)) if i not in refused]
        items, messages = [items[i] for i in kept], [messages[i] for i in kept]
    if not items:
        return
    now_s = time.time()
    event_time = _event_time(kind, dt.datetime.fromtimestamp(now_s, dt.UTC))
    step = max(1, len(items) // SAMPLE_PER_BATCH)
    event = metrics.EVENT_LATENCY.labels(kind)
    for item in items[::step]:
        event.observe(now_s - event_time(item).timestamp())
    _observe_publish(kind, messages[::step], now_s)
    if items[0].series:  # kinds without an exchange and a symbol have no series at all
        newest = [(series, event_time(record)) for series, record in _newest(items)]
        metrics.NEWEST_EVENTS.update(kind, newest)


def _event_time(kind: str, now: dt.datetime) -> Callable[[Any], dt.datetime]:
    """A record's event time: its `time`; a kline's close, or `now` (the commit time) while
    the candle is still open."""
    if kind == "kline":  # a candle opening at or after now closes later: now (and no date overflow
        # for one opening at the end of the calendar)
        return lambda row: now if row.time >= now else min(candle_close(row), now)
    return _TIME


def candle_close(row: Row) -> dt.datetime:
    """When a kline row's candle closes: its open_time (`time`) plus its interval (the third
    field of its COPY text: exchange, symbol, interval, ...); the next month for 1M."""
    interval = row.text.split("\t", 3)[2]
    if interval == MONTH:
        return from_us(next_open(to_us(row.time), MONTH))
    return row.time + dt.timedelta(microseconds=LENGTH_US[interval])


def _newest(items: Sequence[Any]) -> list[tuple[str, Any]]:
    """(series, the newest record of that series) for each series of a batch. Rows carry
    both as tuple fields; records (orders) are read by attribute, not through the `time` and
    `series` properties, which cost a Python call per record."""
    first = items[0]
    if isinstance(first, Row):
        ordered = sorted(items, key=_TIME)  # ties keep their order: the dict takes the last
        return list(dict(zip(map(_SERIES, ordered), ordered, strict=True)).items())
    ordered = sorted(items, key=attrgetter(first.TIME_COLUMN))
    newest = dict(zip(map(_EXCHANGE_SYMBOL, ordered), ordered, strict=True))
    return [(f"{exchange}\t{symbol}", record) for (exchange, symbol), record in newest.items()]


def _observe_publish(kind: str, messages: Sequence[Message], now_s: float) -> None:
    """Publish latency from each message's version, "<ms>\\t<seq>": a Redis entry id's time, a
    Kafka record's timestamp (0 when the record has none: not observed)."""
    for message in messages:
        version = message.version
        ms = int(version[: version.index("\t")])
        if ms > 0:
            metrics.PUBLISH_LATENCY.labels(kind, message.source).observe(now_s - ms / 1000)


async def probe_dependencies(
    probes: Mapping[str, Probe], interval_s: float, on_change: Callable[[str, bool], None] | None = None
) -> None:
    """Set tickvault_dependency_up for each named probe now and every `interval_s`, until
    cancelled; a probe that raises or takes longer than max(interval_s, 2 s) counts as down.
    `on_change(name, up)` is called when a probe's verdict changes (the first verdict is a
    change only if it is down). The series go when this ends, so a stopped daemon reports no
    dependency."""
    timeout_s = max(interval_s, MIN_PROBE_TIMEOUT_S)
    up: dict[str, bool] = {}
    try:
        while True:
            results = await asyncio.gather(
                *(_within(probe, timeout_s) for probe in probes.values()), return_exceptions=True
            )
            for name, result in zip(probes, results, strict=True):
                ok = not isinstance(result, BaseException)
                if up.get(name, True) != ok:
                    if ok:
                        log.info("%s answers again", name)
                    else:
                        log.warning("%s does not answer (%s)", name, type(result).__name__)
                    if on_change is not None:
                        on_change(name, ok)
                up[name] = ok
                metrics.DEPENDENCY_UP.labels(name).set(1 if ok else 0)
            await asyncio.sleep(interval_s)
    finally:
        for name in up:
            metrics.DEPENDENCY_UP.remove(name)


async def _within(probe: Probe, timeout_s: float) -> Any:
    """Await `probe()` for at most `timeout_s` (TimeoutError after). The probe's coroutine is
    made here, inside the task gather runs, not by the caller: a stop that cancels the round
    before its tasks start then leaves no coroutine made and never awaited."""
    async with asyncio.timeout(timeout_s):
        return await probe()


def watch_pool(size: Callable[[], int], idle: Callable[[], int]) -> None:
    """Report the pool's open and checked-out connections at every scrape (asyncpg's
    `get_size` / `get_idle_size`, which only read the pool's state)."""
    metrics.DB_POOL_SIZE.set_function(size)
    metrics.DB_POOL_IN_USE.set_function(lambda: size() - idle())


def unwatch_pool() -> None:
    for gauge in (metrics.DB_POOL_SIZE, metrics.DB_POOL_IN_USE):
        gauge.set_function(lambda: 0)
