"""Builds the daemon's components, owns its tasks and signals, and closes them in order.

Shutdown: SIGTERM or SIGINT sets `stop`; the pipeline stops reading, flushes and
acknowledges what it holds. If that takes longer than `run.drain_grace_s` (PostgreSQL down,
say) the pipeline is cancelled: unacknowledged messages stay pending in the source and are
redelivered on the next start, so nothing is lost, and the exit code is 1.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import gc
import logging
import signal
from functools import partial
from typing import Final

from tickvault import codecs, metrics, observe
from tickvault.errors import StoreError
from tickvault.pipeline import Pipeline, PipelineConfig, Route, Routes
from tickvault.settings import Settings, TopicSettings
from tickvault.sources import Source
from tickvault.sources.kafka import KafkaSource
from tickvault.sources.redis_streams import RedisStreamsSource, connect
from tickvault.state import CacheKeeper, StateCache
from tickvault.store import Store, db, history, migrate
from tickvault.store.schema import TIME_TABLES

log = logging.getLogger(__name__)


# The daemon allocates a few container objects per message (tuples, lists), almost none in
# cycles. At the default threshold of 700 the cyclic collector ran every few hundred messages
# and its older generations re-scanned the whole backlog: about 13% of the daemon's CPU.
GC_THRESHOLDS: Final = (100_000, 50, 100)


def tune_gc() -> None:
    """For a daemon process (not a library caller): what exists at startup (modules, models,
    settings) is never collected, and young collections come every 100,000 allocations."""
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def build_source(settings: Settings) -> Source:
    if settings.source.kind == "kafka":
        return KafkaSource(settings.kafka, list(settings.source.topics), list(settings.source.patterns))
    topics = settings.source.topics
    field_maps = [name for name, t in topics.items() if t.codec in codecs.FIELD_MAP_CODECS]
    return RedisStreamsSource(settings.redis, list(topics), field_maps)


def build_routes(settings: Settings) -> Routes:
    limits = (settings.source.min_epoch_ms, settings.state.max_bytes)
    built = {name: make(*limits) for name, make in codecs.CODECS.items()}

    def route(topic: TopicSettings) -> Route:
        return Route(None if topic.kind == "mixed" else topic.kind, built[topic.codec])

    return Routes(
        {name: route(t) for name, t in settings.source.topics.items()},
        {pattern: route(t) for pattern, t in settings.source.patterns.items()},
    )


def pipeline_config(settings: Settings) -> PipelineConfig:
    if settings.source.kind == "kafka":
        read_count, read_timeout_s = settings.kafka.max_poll_records, settings.kafka.poll_timeout_ms / 1000
    else:
        read_count, read_timeout_s = settings.redis.read_count, settings.redis.block_ms / 1000
    return PipelineConfig(
        max_rows=settings.batch.max_rows,
        max_age_s=settings.batch.max_age_s,
        max_backlog_rows=settings.batch.max_backlog_rows,
        read_count=read_count,
        read_timeout_s=read_timeout_s,
        max_message_bytes=settings.source.max_message_bytes,
        retry_max_backoff_s=settings.postgres.retry_max_backoff_s,
        writers_per_kind=settings.batch.writers_per_kind,
    )


def _install_signals(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()

    def on_signal(signum: int) -> None:
        if stop.is_set():
            log.info("%s received again; still draining", signal.Signals(signum).name)
            return
        log.info("%s received; stopping", signal.Signals(signum).name)
        stop.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signum, on_signal, signum)


async def _maintain_partitions(store: Store, interval_s: float) -> None:
    while True:
        await asyncio.sleep(interval_s)
        try:
            await store.ensure_partitions_ahead()
        except Exception as exc:
            log.warning("partition maintenance failed (%s); next try in %.0fs", exc, interval_s)


async def _prune_history(store: Store, retention_s: int, interval_s: float) -> None:
    """Delete bot_state_history rows older than state.history_retention, now and every
    `interval_s`; failures are logged and retried at the next round."""
    while True:
        older_than = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=retention_s)
        try:
            pruned = await store.run(partial(history.prune, schema=store.schema, older_than=older_than))
        except Exception as exc:
            log.warning("bot state history pruning failed (%s); next try in %.0fs", exc, interval_s)
        else:
            metrics.STATE_HISTORY_PRUNED.inc(pruned)
            if pruned:
                log.info("pruned %d bot state history rows older than %s", pruned, older_than.isoformat())
        await asyncio.sleep(interval_s)


async def _report_lag(source: Source, name: str, interval_s: float) -> None:
    """Keep tickvault_source_lag_messages current; series of partitions no longer owned go."""
    shown: set[tuple[str, str, str, str]] = set()
    try:
        while True:
            try:
                lags = await asyncio.wait_for(source.lag(), interval_s)
            except Exception as exc:
                log.debug("lag not measured (%s)", type(exc).__name__)
            else:
                now = set()
                for lag in lags:
                    labels = (name, lag.group, lag.topic, lag.partition)
                    metrics.SOURCE_LAG.labels(*labels).set(lag.messages)
                    now.add(labels)
                for labels in shown - now:
                    metrics.SOURCE_LAG.remove(*labels)
                shown = now
            await asyncio.sleep(interval_s)
    finally:
        for labels in shown:
            metrics.SOURCE_LAG.remove(*labels)


async def run(
    settings: Settings, stop: asyncio.Event | None = None, health: metrics.Health | None = None
) -> int:
    """Run the daemon and its metrics endpoint until `stop` (or a signal); returns the exit code.
    Raises ConfigError before anything else starts when the metrics port cannot be bound."""
    health = health or metrics.Health()
    with serve_metrics(settings, health) as port:
        if port is not None:
            log.info("metrics on %s", metrics.url(settings.metrics.host, port))
        return await run_daemon(settings, stop, health)


def serve_metrics(
    settings: Settings, health: metrics.Health, port_setting: str = metrics.PORT_SETTING
) -> contextlib.AbstractContextManager[int | None]:
    """The metrics endpoint when enabled (yields its port), else nothing (yields None)."""
    if not settings.metrics.enabled:
        return contextlib.nullcontext()
    return metrics.serve(settings.metrics, health, port_setting)


async def _roll_periodically(settings: Settings) -> None:
    """The cold-tier roller, every archive.interval_s from start; its failures are logged per
    partition and never stop ingest."""
    from tickvault.archive import roller  # pyarrow and pyiceberg load only when archiving is on

    interval_s = settings.archive.interval_s
    while True:
        try:
            await roller.roll(settings)
        except Exception as exc:
            log.warning("archive round failed (%s); next try in %.0fs", exc, interval_s)
        await asyncio.to_thread(roller.release_memory)
        await asyncio.sleep(interval_s)


def series_from_start(settings: Settings, tables: list[str]) -> None:
    """Create at 0 the series whose label values are known at start: the tables' rows, the
    messages consumed of each configured topic's kind, and with the cold tier on, each time
    table's archive counters. Alerts see them at once: `increase()` of a series born at 1 is
    0, and a quiet feed has no rate at all without a series."""
    for table in tables:
        metrics.ROWS_WRITTEN.labels(table)
        metrics.ROWS_UNCHANGED.labels(table)
    topics = [*settings.source.topics.values(), *settings.source.patterns.values()]
    for kind in sorted({topic.kind for topic in topics}):
        metrics.MESSAGES_CONSUMED.labels(kind, settings.source.kind)
    if settings.archive.enabled:
        for t in TIME_TABLES:
            for counter in (metrics.ARCHIVE_PARTITIONS, metrics.ARCHIVE_ROWS, metrics.ARCHIVE_FAILURES):
                counter.labels(t.name)


async def _restore_last_roll(store: Store) -> None:
    """tickvault_archive_last_success_timestamp_seconds from the newest archive_log row
    (rolled by any process): after a restart, TickvaultArchiveStale judges the last roll,
    not the start. A failure is logged; the gauge then waits for this process's first roll."""
    sql = f"SELECT max(written_at) FROM {store.schema}.archive_log"  # noqa: S608 - our identifier
    try:
        newest = await store.run(lambda conn: conn.fetchval(sql))
    except StoreError as exc:
        log.warning("last roll not read from the archive log (%s)", exc)
        return
    metrics.ARCHIVE_LAST_SUCCESS.set(0 if newest is None else newest.timestamp())


async def run_daemon(settings: Settings, stop: asyncio.Event | None, health: metrics.Health) -> int:
    """Everything but the metrics endpoint, which the caller serves (see `run`)."""
    stop = stop or asyncio.Event()
    _install_signals(stop)
    async with contextlib.AsyncExitStack() as stack:
        if settings.postgres.migrate_on_start:
            await migrate.upgrade(settings.postgres, settings=settings)
        store = await stack.enter_async_context(Store(settings.postgres, writer=True))
        source = await stack.enter_async_context(build_source(settings))
        keeper = None
        if settings.state.cache:
            cache = await stack.enter_async_context(StateCache(settings.redis, settings.state))
            keeper = CacheKeeper(cache, store)
        pipeline = Pipeline(source, store, build_routes(settings), pipeline_config(settings), health, keeper)
        metrics.NEWEST_EVENTS.reset(settings.metrics.max_symbol_series)
        series_from_start(settings, store.tables)
        if settings.archive.enabled:
            await _restore_last_roll(store)
        observe.watch_pool(store.pool.get_size, store.pool.get_idle_size)
        stack.callback(observe.unwatch_pool)
        probes = await _probes(settings, source, stack)
        backgrounds = [
            _maintain_partitions(store, settings.run.partition_check_interval_s),
            _report_lag(source, settings.source.kind, settings.metrics.lag_interval_s),
            observe.probe_dependencies(probes, settings.metrics.lag_interval_s, partial(_probed, health)),
        ]
        if keeper is not None:  # refills every bot at start, then repairs; stopped by its event
            keeper_stop = asyncio.Event()
            keeping = asyncio.create_task(keeper.run(keeper_stop))
            stack.push_async_callback(_cancel_and_wait, keeping, keeper_stop)
        if (retention_s := settings.state.history_retention_s) is not None:
            backgrounds.append(_prune_history(store, retention_s, settings.state.prune_interval_s))
        if settings.archive.enabled:
            backgrounds.append(_roll_periodically(settings))
        for background in backgrounds:  # stopped, and done, before what they use is closed
            task = asyncio.create_task(background)
            stack.push_async_callback(_cancel_and_wait, task)
        return await _supervise(pipeline, stop, settings.run.drain_grace_s, health)
    return 1  # pragma: no cover - the exit stack re-raises


def _probed(health: metrics.Health, name: str, up: bool) -> None:
    """Readiness follows the PostgreSQL probe too: a quiet feed has no write to fail."""
    if name == "postgres":
        health.postgres_answers(up)


async def _cancel_and_wait(
    task: asyncio.Task[None], stop: asyncio.Event | None = None, timeout_s: float = 10.0
) -> None:
    """Stop a background task (set `stop`, or else cancel it) and wait, at most `timeout_s`,
    until it has ended, so the connections it holds are released before the exit stack
    closes their clients. A task that does not end by its event is cancelled then."""
    if stop is None:
        task.cancel()
    else:
        stop.set()
    done, _ = await asyncio.wait([task], timeout=timeout_s)
    if not done and stop is not None:
        task.cancel()
        done, _ = await asyncio.wait([task], timeout=timeout_s)
    if not done:
        log.warning("background task %r did not stop within %.0f s", task.get_coro(), timeout_s)
    elif not task.cancelled() and task.exception() is not None:
        log.error("background task %r failed: %r", task.get_coro(), task.exception())


async def _probes(
    settings: Settings, source: Source, stack: contextlib.AsyncExitStack
) -> dict[str, observe.Probe]:
    """What tickvault_dependency_up probes: PostgreSQL on a connection of its own; Redis (when
    it is the source or holds the state cache) with PING on a client of its own; Kafka (when
    it is the source) with a metadata request over the consumer's connections."""
    pinger = db.Pinger(settings.postgres)
    stack.push_async_callback(pinger.close)
    probes: dict[str, observe.Probe] = {"postgres": pinger.ping}
    if settings.source.kind == "redis" or settings.state.cache:
        timeout_s = max(settings.metrics.lag_interval_s, observe.MIN_PROBE_TIMEOUT_S)
        redis = connect(settings.redis, timeout_s)
        stack.push_async_callback(redis.aclose)
        probes["redis"] = redis.ping
    if isinstance(source, KafkaSource):
        probes["kafka"] = source.ping
    return probes


async def _supervise(pipeline: Pipeline, stop: asyncio.Event, grace_s: float, health: metrics.Health) -> int:
    task = asyncio.create_task(pipeline.run(stop), name="pipeline")
    stopped = asyncio.create_task(stop.wait())
    await asyncio.wait({task, stopped}, return_when=asyncio.FIRST_COMPLETED)
    stopped.cancel()
    health.set(False, "stopping")
    if not task.done():
        try:
            await asyncio.wait_for(asyncio.shield(task), grace_s)
        except TimeoutError:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            log.error(
                "drain did not finish within %.0fs; %d messages stay pending and will be redelivered",
                grace_s,
                pipeline.backlog.size,
            )
            return 1
    if task.exception() is not None:
        log.error("pipeline failed: %s", task.exception())
        return 1
    stop.set()
    log.info("stopped cleanly")
    return 0
