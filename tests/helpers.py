"""Test helpers: per-test environment, in-process and subprocess daemons, publishing,
waiting, and a PostgreSQL server of the tests' own that can be stopped and started."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
import redis.asyncio as aioredis

from tickvault import app
from tickvault.metrics import Health
from tickvault.settings import Settings, load_settings

KIND_STREAMS = ("kline", "order", "fill", "bot_state")


@dataclass
class TestEnv:
    __test__ = False
    dsn: str
    schema: str
    tag: str
    redis: aioredis.Redis
    redis_url: str

    def stream(self, kind: str) -> str:
        return f"t{self.tag}.{kind}"

    @property
    def topics(self) -> dict[str, str]:
        return {self.stream(k): k for k in KIND_STREAMS} | {self.stream("mixed"): "mixed"}

    def overrides(self, **sections: dict[str, Any]) -> dict[str, Any]:
        base: dict[str, dict[str, Any]] = {
            "postgres": {"dsn": self.dsn, "schema": self.schema, "create_database": False},
            "source": {"topics": self.topics},
            "redis": {
                "url": self.redis_url, "group": f"g{self.tag}", "consumer": "c1",
                "block_ms": 50, "claim_idle_s": 2, "claim_interval_s": 1,
            },
            "batch": {"max_rows": 2000, "max_age_s": 0.05},
            "metrics": {"enabled": False},
            "run": {"drain_grace_s": 20},
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
        """Wait until the streams hold nothing undelivered or unacknowledged."""

        async def settled() -> bool:
            for _, task in self.running:
                if task.done():
                    raise AssertionError(f"daemon exited early: {task.result()}")
            return await self.env.lag() == 0 and await self.env.pending() == expected_pending

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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


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
