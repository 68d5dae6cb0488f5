"""Fixtures for tests against the real PostgreSQL (127.0.0.1:5432) and Redis (127.0.0.1:6379).

Each test gets its own schema in one session database and its own stream names, and
removes both afterwards. `TEST_PG_DSN` / `TEST_REDIS_URL` point the suite elsewhere.
"""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import redis.asyncio as aioredis

from tests.fault import report as fault_report
from tests.helpers import Daemon, KafkaBroker, TestEnv, admin, free_port, private_postgres
from tests.properties import load_profile
from tickvault.settings import Settings

ADMIN_DSN = os.environ.get("TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
load_profile()  # hypothesis: HYPOTHESIS_PROFILE=ci (default) or long, see tests/properties.py


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "integration" in item.path.parts:
            item.add_marker(pytest.mark.integration)
        if "fault" in item.path.parts:
            item.add_marker(pytest.mark.integration)
            item.add_marker(pytest.mark.fault)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    lines = fault_report.summary_lines()
    if lines:
        terminalreporter.section("fault suite: messages sent, lost, duplicated")
        for line in lines:
            terminalreporter.write_line(line)


@pytest.fixture(autouse=True)
def _root_logging_restored() -> Iterator[None]:
    """`tickvault.cli.main` points the root logger at the stderr of the moment (a test's
    captured stream, closed after it): put the handlers and level back after every test."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.fixture(scope="session")
def test_database() -> Iterator[str]:
    """A database for this test session, dropped at the end."""
    name = f"tickvault_test_{uuid.uuid4().hex[:8]}"
    asyncio.run(admin(ADMIN_DSN, f'CREATE DATABASE "{name}"'))
    yield ADMIN_DSN.rsplit("/", 1)[0] + "/" + name
    asyncio.run(admin(ADMIN_DSN, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(scope="session")
def kafka_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaBroker]:
    """One in-memory Tansu broker for the session, started on first use."""
    broker = KafkaBroker(tmp_path_factory.mktemp("tansu") / "tansu.log")
    broker.start()
    yield broker
    broker.kill()


@pytest.fixture
def source(request: pytest.FixtureRequest) -> str:
    """The message source a test runs against; modules parametrise it with SOURCES."""
    return str(getattr(request, "param", "redis"))


@pytest.fixture
async def env(test_database: str, source: str, request: pytest.FixtureRequest) -> AsyncIterator[TestEnv]:
    """A unique schema and unique topic/stream names, cleaned up after the test."""
    tag = uuid.uuid4().hex[:10]
    redis = aioredis.Redis.from_url(REDIS_URL)
    test_env = TestEnv(dsn=test_database, schema=f"t_{tag}", tag=tag, redis=redis, redis_url=REDIS_URL)
    if source == "kafka":
        test_env.source = "kafka"
        test_env.kafka = request.getfixturevalue("kafka_broker")
        await test_env.kafka.create_topics(list(test_env.topics), test_env.partitions)
    yield test_env
    await test_env.close()
    keys = [k async for k in redis.scan_iter(match=f"t{tag}.*")]
    if keys:
        await redis.delete(*keys)
    await redis.aclose()
    conn = await asyncpg.connect(test_database)
    try:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{test_env.schema}" CASCADE')
    finally:
        await conn.close()


@pytest.fixture
def settings(env: TestEnv) -> Settings:
    return env.settings()


@pytest.fixture
async def daemon(env: TestEnv) -> AsyncIterator[Daemon]:
    """An in-process daemon factory; every daemon started is stopped at teardown."""
    d = Daemon(env)
    yield d
    await d.stop_all()


S3_BUCKETS = ("tansu", "tickvault-archive")  # a restartable broker's data; cold tiers


@pytest.fixture(scope="session")
def s3_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A local S3 API (moto's server) with the buckets S3_BUCKETS, for the session."""
    port = free_port()
    log = (tmp_path_factory.mktemp("moto") / "moto.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        for bucket in S3_BUCKETS:
            while True:
                try:
                    request = urllib.request.Request(f"{endpoint}/{bucket}", method="PUT")
                    urllib.request.urlopen(request, timeout=2).close()
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.2)
        yield endpoint
    finally:
        proc.terminate()
        proc.wait(10)
        log.close()


@pytest.fixture
async def durable_kafka(env: TestEnv, s3_endpoint: str, tmp_path: Path) -> AsyncIterator[TestEnv]:
    """The test's environment on a Tansu broker of its own whose data lives in S3."""
    aws = {
        "AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test", "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT": s3_endpoint, "AWS_ALLOW_HTTP": "true",
    }  # fmt: skip
    shared = env.kafka
    broker = KafkaBroker(tmp_path / "tansu.log", storage="s3://tansu/", environ=aws)
    broker.start()
    env.kafka = broker
    try:
        await broker.create_topics(list(env.topics), env.partitions)
        yield env
    finally:
        await env.close_producer()
        broker.kill()
        env.kafka = shared  # the env fixture deletes the test's topics on the shared broker


@pytest.fixture(scope="session")
def private_pg() -> Iterator[Any]:
    """A PostgreSQL server of our own on a free port, which tests may stop and start."""
    with private_postgres() as server:
        yield server
