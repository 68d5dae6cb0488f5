"""PostgreSQL over TLS (postgres.sslmode, sslrootcert, sslcert, sslkey): a private cluster with
ssl = on and a certificate for 127.0.0.1 signed by a throwaway CA. With verify-full and that
CA, migrate, the pool and the cold tier's catalog (psycopg) all connect; with another CA the
connection fails at once, with one line that says why and names no secret."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest

from tests.helpers import PrivatePostgres, private_postgres
from tickvault.archive import table
from tickvault.errors import ConfigError, StoreError
from tickvault.settings import Settings, load_settings
from tickvault.store import Store, db, migrate

pytestmark = pytest.mark.integration


def openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


def make_ca(directory: Path, name: str) -> tuple[Path, Path]:
    key, cert = directory / f"{name}.key", directory / f"{name}.crt"
    openssl(
        "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", f"/CN={name}",
        "-keyout", str(key), "-out", str(cert),
    )  # fmt: skip
    return key, cert


def make_server_cert(directory: Path, ca_key: Path, ca_cert: Path) -> tuple[Path, Path]:
    key, csr, cert = directory / "server.key", directory / "server.csr", directory / "server.crt"
    ext = directory / "san.ext"
    ext.write_text("subjectAltName = IP:127.0.0.1\n")
    openssl(
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=127.0.0.1",
        "-keyout",
        str(key),
        "-out",
        str(csr),
    )
    openssl(
        "x509", "-req", "-in", str(csr), "-CA", str(ca_cert), "-CAkey", str(ca_key), "-CAcreateserial",
        "-days", "2", "-extfile", str(ext), "-out", str(cert),
    )  # fmt: skip
    return key, cert


@pytest.fixture(scope="module")
def tls_pg(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[PrivatePostgres, Path, Path]]:
    """A private cluster serving TLS; its CA's certificate, and an unrelated CA's."""
    certs = tmp_path_factory.mktemp("certs")
    ca_key, ca_cert = make_ca(certs, "tickvault-test-ca")
    _, other_ca = make_ca(certs, "someone-else")
    with private_postgres() as server:
        key, cert = make_server_cert(certs, ca_key, ca_cert)
        for path in (key, cert):
            shutil.copy(path, server.data_dir / path.name)
            if os.geteuid() == 0:
                shutil.chown(server.data_dir / path.name, "postgres", "postgres")
        (server.data_dir / "server.key").chmod(0o600)
        with (server.data_dir / "postgresql.conf").open("a") as conf:
            conf.write("ssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n")
        server.stop()
        server.start()
        yield server, ca_cert, other_ca


def settings_for(server: PrivatePostgres, tmp_path: Path, **tls: object) -> Settings:
    return load_settings(
        postgres={
            "dsn": f"postgresql://postgres:hunter2-not-used@127.0.0.1:{server.port}/tickvault_tls",
            "connect_retries": 0, **tls,
        },
        archive={"root": str(tmp_path / "cold")},
    )  # fmt: skip


async def test_verify_full_with_the_right_root_cert_connects_every_client(
    tls_pg: tuple[PrivatePostgres, Path, Path], tmp_path: Path
) -> None:
    server, ca_cert, _ = tls_pg
    settings = settings_for(server, tmp_path, sslmode="verify-full", sslrootcert=str(ca_cert))
    await migrate.upgrade(settings.postgres, "head", settings)  # alembic, over asyncpg
    async with Store(settings.postgres) as store:
        used_tls = await store.run(
            lambda conn: conn.fetchval("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
        )
    assert used_tls is True
    catalog = table.open_catalog(settings)  # psycopg (libpq) with the same parameters
    try:
        with catalog.engine.connect() as conn:
            row = conn.exec_driver_sql("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()").one()
        assert row[0] is True
    finally:
        table.close_catalog(catalog)


async def test_verify_full_with_another_root_cert_fails_at_once_with_one_line(
    tls_pg: tuple[PrivatePostgres, Path, Path], tmp_path: Path
) -> None:
    server, _, other_ca = tls_pg
    settings = settings_for(
        server, tmp_path, sslmode="verify-full", sslrootcert=str(other_ca), connect_retries=5
    )
    with pytest.raises(StoreError) as caught:
        await migrate.upgrade(settings.postgres, "head", settings)
    message = str(caught.value)
    assert not caught.value.retriable  # five retries were allowed: none was spent on it
    assert "\n" not in message and "certificate" in message and f"127.0.0.1:{server.port}" in message
    assert "hunter2" not in message


def test_tls_settings_go_into_the_dsn_every_client_reads(tmp_path: Path) -> None:
    for name in ("ca.crt", "c.crt", "c.key"):
        (tmp_path / name).write_text("-----BEGIN-----\n")
    files = {
        "sslrootcert": str(tmp_path / "ca.crt"),
        "sslcert": str(tmp_path / "c.crt"),
        "sslkey": str(tmp_path / "c.key"),
    }
    dsn = "postgresql://u:p@h:5433/d?sslmode=disable&application_name=x"
    pg = load_settings(postgres={"dsn": dsn, "sslmode": "verify-ca", **files}).postgres
    quoted = {k: quote(v, safe="") for k, v in files.items()}
    assert db.dsn_of(pg) == (
        "postgresql://u:p@h:5433/d?application_name=x&sslmode=verify-ca"
        f"&sslrootcert={quoted['sslrootcert']}&sslcert={quoted['sslcert']}&sslkey={quoted['sslkey']}"
    )
    missing = load_settings(postgres={"dsn": dsn, "sslrootcert": str(tmp_path / "nope.crt")}).postgres
    with pytest.raises(ConfigError, match=r"^postgres.sslrootcert: .*nope.crt is not a readable file$"):
        db.dsn_of(missing)  # not "unreachable", retried: the drivers raise FileNotFoundError
    plain = load_settings(postgres={"dsn": "postgresql://u@h/d?sslmode=require"}).postgres
    assert db.dsn_of(plain) == "postgresql://u@h/d?sslmode=require"  # nothing set: the DSN's own
