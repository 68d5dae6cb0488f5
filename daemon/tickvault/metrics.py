"""Every metric, defined once, and the HTTP endpoint serving /metrics, /healthz and /readyz."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import Counter, Gauge, Histogram, make_wsgi_app

from tickvault.settings import MetricsSettings

log = logging.getLogger(__name__)

MESSAGES_CONSUMED = Counter(
    "tickvault_messages_consumed_total", "Messages read from the source, by the topic's kind", ["kind"]
)
MESSAGES_ACCEPTED = Counter(
    "tickvault_messages_accepted_total", "Messages decoded and validated, by record kind", ["kind"]
)
MESSAGES_REJECTED = Counter(
    "tickvault_messages_rejected_total", "Messages refused by decoding, validation or the database",
    ["kind", "reason"],
)  # fmt: skip
ROWS_WRITTEN = Counter("tickvault_rows_written_total", "Rows inserted or updated, by table", ["table"])
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
BACKLOG_ROWS = Gauge("tickvault_backlog_rows", "Messages read but not yet acknowledged")
STORE_RETRIES = Counter(
    "tickvault_store_retries_total", "Batch writes retried because PostgreSQL was unavailable"
)
SOURCE_LAG = Gauge(
    "tickvault_source_lag_messages",
    "Messages the consumer group has not committed yet: per Kafka partition the high watermark "
    "minus the committed offset; per Redis stream the undelivered entries plus the pending ones",
    ["source", "group", "topic", "partition"],
)
UP = Gauge("tickvault_ready", "1 while the daemon is consuming and PostgreSQL accepts writes")


class Health:
    """Liveness and readiness, set by the app and the pipeline, read by the HTTP thread."""

    def __init__(self) -> None:
        self.ready = False
        self.reason = "starting"

    def set(self, ready: bool, reason: str = "") -> None:
        self.ready, self.reason = ready, reason
        UP.set(1 if ready else 0)


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
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


@contextmanager
def serve(settings: MetricsSettings, health: Health) -> Iterator[int]:
    """Serve the endpoint in a background thread; yields the bound port."""
    server = make_server(settings.host, settings.port, _app(health), _Server, _QuietHandler)
    thread = threading.Thread(target=server.serve_forever, name="tickvault-metrics", daemon=True)
    thread.start()
    port = server.server_address[1]
    log.info("metrics on http://%s:%d/metrics", settings.host, port)
    try:
        yield int(port)
    finally:
        server.shutdown()
        server.server_close()
