"""Every metric, defined once, and the HTTP endpoint serving /metrics, /healthz and /readyz.

Names follow Prometheus conventions: base units (seconds, bytes), `_total` on counters.
`source` is the message source ("redis" or "kafka"). The README's Metrics section lists
every metric with its labels and what is observed when.
"""

from __future__ import annotations

import datetime as dt
import errno
import importlib.metadata
import logging
import platform
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from socketserver import ThreadingMixIn
from typing import Any, Final
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import REGISTRY, Counter, Gauge, Histogram, make_wsgi_app
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from tickvault.errors import ConfigError
from tickvault.settings import MetricsSettings

log = logging.getLogger(__name__)
REQUEST_TIMEOUT_S: Final = 5.0  # per read or write on a connection to the HTTP endpoint
RETRY_CAUSES: Final = ("connection", "timeout", "serialization", "deadlock", "other")
# the symbol label of pairs beyond metrics.max_symbol_series (and the exchange label of their
# exchanges that have no pair of their own)
OTHER_SYMBOL: Final = "_other"

MESSAGES_CONSUMED = Counter(
    "tickvault_messages_consumed_total", "Messages read from the source, by the topic's kind and source",
    ["kind", "source"],
)  # fmt: skip
MESSAGES_ACCEPTED = Counter(
    "tickvault_messages_accepted_total", "Messages decoded and validated, by record kind and source",
    ["kind", "source"],
)  # fmt: skip
MESSAGES_REJECTED = Counter(
    "tickvault_messages_rejected_total", "Messages refused by decoding, validation or the database",
    ["kind", "source", "reason"],
)  # fmt: skip
ROWS_WRITTEN = Counter("tickvault_rows_written_total", "Rows inserted or updated, by table", ["table"])
ROWS_UNCHANGED = Counter(
    "tickvault_rows_unchanged_total",
    "Rows of committed batches that inserted or updated nothing (duplicates, redeliveries, "
    "updates outranked by the stored row or by another in the batch), by table",
    ["table"],
)
DEAD_LETTERS = Counter(
    "tickvault_dead_letters_total", "Messages stored in dead_letters, by reason", ["reason"]
)
FLUSH_SECONDS = Histogram(
    "tickvault_flush_duration_seconds", "Time to write one batch durably, by kind", ["kind"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)  # fmt: skip
BATCH_ROWS = Histogram(
    "tickvault_batch_rows", "Records per flushed batch, by kind", ["kind"],
    buckets=(1, 10, 100, 500, 1000, 2500, 5000, 10000, 50000),
)  # fmt: skip
EVENT_LATENCY = Histogram(
    "tickvault_event_latency_seconds",
    "Commit time minus the record's event time (a kline's close, open_time + interval, or the "
    "commit time while the candle is open; updated_at; ts), for a sample of the records of "
    "each committed batch, by kind",
    ["kind"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 14400, 86400),
)
PUBLISH_LATENCY = Histogram(
    "tickvault_publish_latency_seconds",
    "Commit time minus the message's timestamp: a Redis entry id's time, a Kafka record's "
    "timestamp (the producer's CreateTime by default, the broker's LogAppendTime on topics set "
    "so), for a sample of the messages of each committed batch, by kind and source",
    ["kind", "source"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
)
BACKLOG_ROWS = Gauge("tickvault_backlog_rows", "Messages read but not yet acknowledged")
STORE_RETRIES = Counter(
    "tickvault_store_retries_total",
    "Batch writes retried because PostgreSQL failed retriably, by cause: connection, timeout, "
    "serialization, deadlock, other",
    ["cause"],
)
DB_POOL_IN_USE = Gauge(
    "tickvault_db_pool_in_use_connections", "PostgreSQL connections of the daemon's pool checked out"
)
DB_POOL_SIZE = Gauge("tickvault_db_pool_size_connections", "PostgreSQL connections of the daemon's pool open")
DEPENDENCY_UP = Gauge(
    "tickvault_dependency_up",
    "1 if the last probe (every metrics.lag_interval_s) of a dependency the daemon uses "
    "succeeded, else 0: postgres, redis, kafka",
    ["dependency"],
)
BUILD_INFO = Gauge("tickvault_build_info", "Always 1; the labels name the build", ["version", "python"])
SOURCE_LAG = Gauge(
    "tickvault_source_lag_messages",
    "Messages the consumer group has not committed yet: per Kafka partition the high watermark "
    "minus the committed offset; per Redis stream the undelivered entries plus the pending ones",
    ["source", "group", "topic", "partition"],
)
ARCHIVE_RUNS = Counter("tickvault_archive_runs_total", "Rounds of the roller (tickvault.archive)")
ARCHIVE_PARTITIONS = Counter(
    "tickvault_archive_partitions_total",
    "Partitions rolled to the cold tier and dropped, by table",
    ["table"],
)
ARCHIVE_ROWS = Counter("tickvault_archive_rows_total", "Rows committed to the cold tier, by table", ["table"])
ARCHIVE_BYTES = Counter(
    "tickvault_archive_bytes_total", "Bytes of the cold data files of rolled ranges, by table", ["table"]
)
ARCHIVE_FAILURES = Counter(
    "tickvault_archive_failures_total",
    "Partitions whose roll failed and were left for the next round, by table; a round that "
    "failed as a whole (PostgreSQL or the catalog unreachable) counts once for each table",
    ["table"],
)  # fmt: skip
ARCHIVE_SWEPT_FILES = Counter(
    "tickvault_archive_swept_files_total",
    "Cold files deleted after the snapshot retention: of expired snapshots or killed writes, by table",
    ["table"],
)
ARCHIVE_SWEEP_FAILURES = Counter(
    "tickvault_archive_sweep_failures_total",
    "Snapshot expiries / file sweeps of a cold table that failed (retried next round), by table",
    ["table"],
)
ARCHIVE_COLD_CHECK_FAILURES = Counter(
    "tickvault_archive_cold_check_failures_total",
    "Rolled ranges whose cold files were missing, unreadable or differed from the archive log "
    "(found by `tickvault archive --verify` or before a merge), by table",
    ["table"],
)
ARCHIVE_LAST_SUCCESS = Gauge(
    "tickvault_archive_last_success_timestamp_seconds",
    "Unix time of the last partition rolled; at start, that of the newest archive_log row",
)
STATE_CACHE_FAILURES = Counter(
    "tickvault_state_cache_failures_total",
    "Redis operations of the bot-state cache that failed (PostgreSQL served or kept the state), "
    "by operation: write (after a committed batch), refill, read",
    ["operation"],
)
STATE_CACHE_REFILLED = Counter(
    "tickvault_state_cache_refilled_total",
    "Bot states written into the Redis cache from PostgreSQL: at start, after failed writes, "
    "after a Redis restart, and on a read that missed",
)
STATE_HISTORY_PRUNED = Counter(
    "tickvault_state_history_pruned_total",
    "bot_state_history rows deleted because they were older than state.history_retention",
)
STATE_CACHE_WRITES = Counter(
    "tickvault_state_cache_writes_total",
    "Snapshots written to the Redis bot-state cache, by outcome: applied, stale (the "
    "compare-and-set kept a newer snapshot)",
    ["outcome"],
)
UP = Gauge("tickvault_ready", "1 while the daemon is consuming and PostgreSQL accepts writes")


def _version() -> str:
    try:
        return importlib.metadata.version("tickvault")
    except importlib.metadata.PackageNotFoundError:  # run from a source tree
        return "unknown"


BUILD_INFO.labels(_version(), platform.python_version()).set(1)
# series of known label values exist from the start at 0, so rates and alerts see them at once
for _cause in RETRY_CAUSES:
    STORE_RETRIES.labels(_cause)
for _outcome in ("applied", "stale"):
    STATE_CACHE_WRITES.labels(_outcome)


class NewestEvents(Collector):
    """tickvault_newest_event_timestamp_seconds: the newest committed event time (unix s) per
    kind, exchange and symbol. The first `max_pairs` (exchange, symbol) pairs seen keep their
    own series; later pairs fold into symbol="_other" of their exchange when that exchange
    has a pair of its own, else into exchange="_other", symbol="_other". So a kind has at most
    max_pairs + (the exchanges of those pairs) + 1 series, however many exchanges come later.
    `update` runs on the event loop, `collect` in the scrape thread: a kind's dict is
    replaced, never changed while a scrape may read it."""

    def __init__(self, max_pairs: int = 1000) -> None:
        self.reset(max_pairs)

    def reset(self, max_pairs: int) -> None:
        """Forget every series (a daemon starts) and take the cap of its settings."""
        self.max_pairs = max_pairs
        self._pairs: set[str] = set()  # "exchange\tsymbol" with series of their own
        self._exchanges: set[str] = set()  # the exchanges of those pairs
        self._newest: dict[str, dict[str, dt.datetime]] = {}  # kind → series → newest time

    def update(self, kind: str, newest: Iterable[tuple[str, dt.datetime]]) -> None:
        """Merge a committed batch's (series, time) pairs: the batch's newest event time (a
        UTC datetime) of each of its series ("exchange\tsymbol")."""
        merged = dict(self._newest.get(kind, ()))
        pairs = self._pairs
        for series, ts in newest:
            if series not in pairs:
                series = self._admit(series)
            if series not in merged or ts > merged[series]:
                merged[series] = ts
        self._newest = {**self._newest, kind: merged}

    def _admit(self, series: str) -> str:
        """The series a pair not seen before is reported under: its own while under the cap."""
        exchange = series.partition("\t")[0]
        if len(self._pairs) < self.max_pairs:
            self._pairs.add(series)
            self._exchanges.add(exchange)
            return series
        return (exchange if exchange in self._exchanges else OTHER_SYMBOL) + "\t" + OTHER_SYMBOL

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "tickvault_newest_event_timestamp_seconds",
            "Newest committed event time (unix s; a kline's close, or its commit time while "
            "open), by kind, exchange and symbol; pairs beyond metrics.max_symbol_series under "
            'symbol="_other" of their exchange, or exchange="_other" for exchanges seen only then',
            labels=["kind", "exchange", "symbol"],
        )
        for kind, newest in self._newest.items():
            for series, ts in newest.items():
                exchange, _, symbol = series.partition("\t")
                family.add_metric([kind, exchange, symbol], ts.timestamp())
        yield family


NEWEST_EVENTS = NewestEvents()
REGISTRY.register(NEWEST_EVENTS)


POSTGRES_UNAVAILABLE: Final = "postgres unavailable"


class Health:
    """Liveness and readiness, set by the app, the pipeline and the dependency probe, read by
    the HTTP thread."""

    def __init__(self) -> None:
        self.ready = False
        self.reason = "starting"
        self._postgres_answers = True

    def set(self, ready: bool, reason: str = "") -> None:
        self.ready, self.reason = ready, reason
        UP.set(1 if ready else 0)

    def postgres_answers(self, answers: bool) -> None:
        """The PostgreSQL probe's verdict (every metrics.lag_interval_s). On a quiet feed no
        write fails, so only the probe sees an outage: when it stops answering a ready daemon
        turns not ready, and when it answers again a daemon not ready for that reason alone
        turns ready. Only changes act, so a write that keeps failing while the probe answers
        (the pipeline's own verdict) is not flipped back to ready at every probe."""
        if answers == self._postgres_answers:
            return
        self._postgres_answers = answers
        if not answers and self.ready:
            self.set(False, POSTGRES_UNAVAILABLE)
        elif answers and not self.ready and self.reason == POSTGRES_UNAVAILABLE:
            self.set(True)


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    # a client that connects and then says nothing (or stops reading) loses its connection
    # after this long, instead of keeping a thread of the endpoint for good
    timeout = REQUEST_TIMEOUT_S

    def log_message(self, format: str, *args: Any) -> None:
        return None


def _app(health: Health) -> Callable[[dict[str, Any], Any], Iterable[bytes]]:
    metrics_app = make_wsgi_app()

    def app(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path == "/metrics":
            return metrics_app(environ, start_response)  # type: ignore[no-any-return]
        if path == "/healthz":
            start_response("200 OK", [("Content-Type", "text/plain")])
            return [b"ok\n"]
        if path == "/readyz":
            status = "200 OK" if health.ready else "503 Service Unavailable"
            start_response(status, [("Content-Type", "text/plain")])
            return [(("ready" if health.ready else f"not ready: {health.reason}") + "\n").encode()]
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"not found\n"]

    return app


PORT_SETTING = "metrics.port (TICKVAULT_METRICS__PORT)"


def url(host: str, port: int) -> str:
    return f"http://[{host}]:{port}/metrics" if ":" in host else f"http://{host}:{port}/metrics"


def _bind(settings: MetricsSettings, health: Health, port_setting: str) -> WSGIServer:
    """The listening server; ConfigError in one line when the address cannot be had."""
    where = f"{settings.host}:{settings.port}"
    try:
        return make_server(settings.host, settings.port, _app(health), _Server, _QuietHandler)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            reason = f"the port is in use (another tickvault?); choose another port with {port_setting}"
        elif exc.errno == errno.EACCES:
            reason = f"permission denied (a port below 1024?); choose another port with {port_setting}"
        else:
            reason = f"{exc.strerror or type(exc).__name__}; check metrics.host (TICKVAULT_METRICS__HOST)"
        raise ConfigError(f"cannot serve metrics on {where}: {reason}") from None


@contextmanager
def serve(settings: MetricsSettings, health: Health, port_setting: str = PORT_SETTING) -> Iterator[int]:
    """Serve the endpoint in a background thread; yields the bound port. `port_setting` names
    what the user changes when the port cannot be bound (ConfigError)."""
    server = _bind(settings, health, port_setting)
    thread = threading.Thread(target=server.serve_forever, name="tickvault-metrics", daemon=True)
    thread.start()
    try:
        yield int(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()
