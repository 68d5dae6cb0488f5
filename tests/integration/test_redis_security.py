"""Redis with an ACL user, and Redis over TLS with a password: the daemon ingests through
them, and a wrong password is one line that does not contain the password."""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import shutil
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.helpers import Daemon, TestEnv, free_port, wait_for_port
from tests.integration.test_cli import tickvault
from tickvault.record_schemas import EXAMPLES

PASSWORD = "pw-Zq81-not-for-logs"


@pytest.fixture
async def acl_user(env: TestEnv) -> AsyncIterator[str]:
    """A Redis ACL user allowed only this test's streams."""
    name = f"tv_{env.tag}"
    await env.redis.execute_command(
        "ACL", "SETUSER", name, "on", f">{PASSWORD}", f"~t{env.tag}.*", "+@all", "-@dangerous", "+info"
    )
    yield name
    await env.redis.execute_command("ACL", "DELUSER", name)


async def ingest_one(env: TestEnv, daemon: Daemon, redis_settings: dict[str, object]) -> None:
    await daemon.start(env.settings(redis=redis_settings))
    await env.publish("kline", [json.dumps(EXAMPLES["kline"])])
    await daemon.drain()
    assert await env.count("klines") == 1
    assert await daemon.stop_all() == [0]


async def test_acl_user_and_password(env: TestEnv, daemon: Daemon, acl_user: str) -> None:
    await ingest_one(env, daemon, {"username": acl_user, "password": PASSWORD})

    result = await tickvault(env, "check", redis={"username": acl_user, "password": PASSWORD})
    assert (result.code, len(result.lines)) == (0, 1), result.lines

    result = await tickvault(env, "check", redis={"username": acl_user, "password": PASSWORD + "x"})
    assert result.code == 1
    assert len(result.lines) == 1 and result.lines[0].startswith("unhealthy: redis"), result.lines
    assert PASSWORD not in result.lines[0]


def _self_signed(directory: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "redis.crt", directory / "redis.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_path, key_path


@pytest.fixture
def tls_redis(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    """A redis-server of the test's own that speaks only TLS and wants a password."""
    server = shutil.which("redis-server")
    if server is None:
        pytest.fail("redis-server is not installed")
    cert, key = _self_signed(tmp_path)
    port = free_port()
    args = [
        server, "--port", "0", "--tls-port", str(port), "--tls-cert-file", str(cert),
        "--tls-key-file", str(key), "--tls-ca-cert-file", str(cert), "--tls-auth-clients", "no",
        "--requirepass", PASSWORD, "--save", "", "--appendonly", "no", "--dir", str(tmp_path),
    ]  # fmt: skip
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_port(port, proc, "redis-server with TLS")
        yield port, cert
    finally:
        proc.terminate()
        proc.wait(10)


async def test_tls_with_password(env: TestEnv, daemon: Daemon, tls_redis: tuple[int, Path]) -> None:
    port, ca = tls_redis
    url = f"rediss://127.0.0.1:{port}/0"
    env.redis_url = url
    env.redis = aioredis.Redis.from_url(url, password=PASSWORD, ssl_ca_certs=str(ca))
    try:
        await ingest_one(env, daemon, {"password": PASSWORD, "ssl_ca_certs": str(ca)})
        result = await tickvault(env, "check", redis={"password": PASSWORD, "ssl_ca_certs": str(ca)})
        assert (result.code, len(result.lines)) == (0, 1), result.lines
        # without the CA the server's certificate is not trusted
        result = await tickvault(env, "check", redis={"password": PASSWORD})
        assert result.code == 1 and len(result.lines) == 1, result.lines
    finally:
        await env.redis.aclose()
