"""Startup pieces without services: where a DSN points, dev's metrics address, a busy port."""

from __future__ import annotations

import socket

import pytest

from tickvault import dev, metrics
from tickvault.errors import ConfigError
from tickvault.settings import load_settings
from tickvault.store.db import endpoint


@pytest.mark.parametrize(
    ("dsn", "expected"),
    [
        ("postgresql://u:s3cret@db.example:6543/x", "db.example:6543"),
        ("postgresql://u:s3cret@db.example/x", "db.example:5432"),
        ("postgres://u@[::1]:5433/x", "[::1]:5433"),
        ("postgresql://u:s3cret@h1:5432,h2/x", "h1:5432,h2:5432"),
        ("postgresql://postgres:s3cret@/tickvault?host=/srv/pg/", "socket /srv/pg/.s.PGSQL.5432"),
        ("postgresql://u:s3cret@/x?host=/run/postgresql&port=5433", "socket /run/postgresql/.s.PGSQL.5433"),
        ("postgresql://u:s3cret@%2Fvar%2Frun%2Fpg/x", "socket /var/run/pg/.s.PGSQL.5432"),
        ("postgresql:///x", "localhost:5432"),
        ("host=db password=s3cret", "the server of postgres.dsn"),
    ],
)
def test_endpoint_names_host_and_port_never_the_password(dsn: str, expected: str) -> None:
    assert endpoint(dsn) == expected


def test_dev_metrics_listen_on_loopback_unless_the_host_is_set(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("TICKVAULT_METRICS__HOST", "TICKVAULT_METRICS__PORT"):
        monkeypatch.delenv(name, raising=False)
    settings = dev.local_metrics(load_settings())
    assert (settings.metrics.host, settings.metrics.port) == ("127.0.0.1", 9108)
    assert dev.local_metrics(load_settings(), 9200).metrics.port == 9200

    monkeypatch.setenv("TICKVAULT_METRICS__PORT", "9300")
    assert dev.local_metrics(load_settings()).metrics.host == "127.0.0.1"  # the port alone keeps it local
    assert dev.local_metrics(load_settings(), 9200).metrics.port == 9200  # the flag wins over env

    monkeypatch.setenv("TICKVAULT_METRICS__HOST", "0.0.0.0")
    settings = dev.local_metrics(load_settings())
    assert (settings.metrics.host, settings.metrics.port) == ("0.0.0.0", 9300)


def test_a_busy_metrics_port_is_one_line_naming_the_address_and_the_setting() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        settings = load_settings(metrics={"host": "127.0.0.1", "port": port}).metrics
        with pytest.raises(ConfigError) as raised, metrics.serve(settings, metrics.Health(), "--flag"):
            pass
    message = str(raised.value)
    assert message == (
        f"cannot serve metrics on 127.0.0.1:{port}: the port is in use (another tickvault?); "
        "choose another port with --flag"
    )
