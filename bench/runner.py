"""What every benchmark script shares: its error, and running it to the end whatever happens
(SIGTERM and Ctrl-C included) with its scratch database and streams cleaned up."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
from collections.abc import Coroutine, Sequence
from typing import Any, Protocol

import asyncpg
import redis.asyncio as aioredis


class BenchError(Exception):
    """The benchmark could not measure what it promised (e.g. a row count does not match)."""


class Bench(Protocol):
    def main(self) -> Coroutine[Any, Any, None]: ...

    def cleanup(self) -> Coroutine[Any, Any, None]: ...


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def run(bench: Bench, failures: tuple[type[BaseException], ...]) -> int:
    """Run `bench.main()`, then always `bench.cleanup()`; the exit code: 0, 1 after one of
    `failures` (printed in one line), 130 after SIGTERM or Ctrl-C."""
    signal.signal(signal.SIGTERM, _interrupt)
    caught: tuple[type[BaseException], ...] = (BenchError, *failures)
    code = 0
    try:
        asyncio.run(bench.main())
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        code = 130
    except caught as exc:
        print(f"bench failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        code = 1
    finally:
        asyncio.run(bench.cleanup())
    return code


async def drop_database(dsn: str, database: str) -> bool:
    """Drop a scratch database (FORCE: its connections go too); False, with the reason
    printed in one line, when that failed."""
    try:
        admin = await asyncpg.connect(dsn)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        finally:
            await admin.close()
    except (asyncpg.PostgresError, OSError) as exc:
        print(f"cleanup of the database failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return False
    return True


async def stop_daemon(proc: subprocess.Popen[bytes] | None, timeout_s: float) -> None:
    """SIGTERM the daemon `proc` if it still runs and wait up to `timeout_s` for it to drain;
    past that, SIGKILL it. Either way it is reaped."""
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        await asyncio.to_thread(proc.wait, timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        await asyncio.to_thread(proc.wait)


async def delete_streams(redis_url: str, streams: Sequence[str]) -> None:
    """Delete the bench's Redis streams, if any; a failure is printed, not raised (the rest of
    the cleanup must still run)."""
    if not streams:
        return
    redis = aioredis.Redis.from_url(redis_url)
    try:
        await redis.delete(*streams)
    except (aioredis.RedisError, OSError) as exc:
        print(f"cleanup of the streams failed: {type(exc).__name__}: {exc}", file=sys.stderr)
    finally:
        await redis.aclose()
