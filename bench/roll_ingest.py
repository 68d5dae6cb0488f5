"""The daemon's ingest rate alone and while its own roller runs: the second part of bench/roll.py.

Two runs of the real daemon (`python -m tickvault run`, a subprocess configured by TICKVAULT_*
variables, Redis Streams source) on the roll bench's scratch database, each draining a backlog
of N 1m klines published beforehand (the ingest bench's workload, bench/ingest_workload.py,
with `--mix 100,0,0`, times from today on, so no row lands in a partition that is rolled):
1. alone (`archive.enabled` false): rows/s = N over the time from the group's first read to
   the last acknowledgement, as bench/ingest.py counts it;
2. while rolling (`archive.enabled`, `archive.hot_retention` 1d): the daemon's roller starts
   with the daemon and rolls the partitions left for it; rows/s = rows acknowledged from the
   first read until the roll's last `archive_log` row appears, over that time. Should the
   backlog drain first, the rate over the whole backlog is given and flagged: the roll then
   outlasted it, and the rate is a lower bound.
Each run uses streams and a consumer group of its own (`tickvault_bench_<token><phase>.*`),
deleted at the end like the daemon is stopped, also after an error or Ctrl-C; the daemon's
log is kept as `<tmp>/tickvault_bench_<token><phase>.daemon.log`.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import asyncpg
import redis.asyncio as aioredis

from ingest_daemon import Progress, environ, overrides, progress, scratch_names
from ingest_phases import publish
from ingest_workload import BASE_MS, N_SYMBOLS, Workload, build_workload
from runner import BenchError, delete_streams, stop_daemon

KLINES_ONLY: Final = (100, 0, 0, 0)
POLL_INTERVAL_S: Final = 0.05
TIMEOUT_S: Final = 600.0
MIN_OVERLAP_S: Final = 0.5


@dataclass
class IngestRun:
    rows: int  # acknowledged in the window
    window_s: float
    drained_early: bool = False  # while rolling: the backlog ran out before the roll ended
    roll_done_s: float | None = None  # while rolling: spawn → the roll's last archive_log row

    @property
    def rows_s(self) -> float:
        return self.rows / self.window_s


@dataclass
class Ingest:
    """Runs the daemon twice on `database` (schema `schema`, 1-day native partitions)."""

    dsn: str  # of the scratch database
    redis_url: str
    token: str
    schema: str
    log_dir: Path = field(default_factory=lambda: Path(tempfile.gettempdir()))
    streams: list[str] = field(default_factory=list)
    daemon: subprocess.Popen[bytes] | None = None

    def workload(self, n: int, phase: int, seed: int) -> Workload:
        """N klines timed from today 00:00 UTC on (phase 1 after phase 0), keys of their own."""
        today = dt.datetime.now(dt.UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        minutes = -(-(int(today.timestamp() * 1000) - BASE_MS) // 60_000)
        return build_workload(n, seed, offset=minutes * N_SYMBOLS + phase * n, mix=KLINES_ONLY)

    async def alone(self, n: int, seed: int) -> IngestRun:
        return await self._run(self.workload(n, 0, seed), "a", archive=None, rolls=0)

    async def while_rolling(self, n: int, seed: int, archive_root: str, rolls: int) -> IngestRun:
        archive = {"enabled": True, "root": archive_root, "hot_retention": "1d", "interval_s": 3600}
        return await self._run(self.workload(n, 1, seed), "b", archive=archive, rolls=rolls)

    async def _run(self, w: Workload, phase: str, archive: dict[str, Any] | None, rolls: int) -> IngestRun:
        base, topics = scratch_names(self.token + phase)
        values = overrides(self.dsn, self.redis_url, topics, self.token + phase)
        values["postgres"].update(
            {"schema": self.schema, "create_database": False, "timescale": "off",
             "partition_interval_days": 1, "partitions_ahead": 0}
        )  # fmt: skip
        if archive is not None:
            values["archive"] = archive
        redis = aioredis.Redis.from_url(self.redis_url)
        try:
            self.streams += list(topics)
            await publish(redis, topics, w)
            expected = {s: len(w.payloads[k]) for s, k in topics.items() if w.payloads[k]}
            log_path = self.log_dir / f"{base}.daemon.log"
            with log_path.open("wb") as log:
                self.daemon = subprocess.Popen(  # noqa: ASYNC220 - returns at once; watched with poll()
                    [sys.executable, "-m", "tickvault", "run"], env=environ(values),
                    stdout=log, stderr=subprocess.STDOUT,
                )  # fmt: skip
            run = await self._watch(redis, expected, f"bench_{self.token}{phase}", w.total, rolls)
            await self._stop(log_path)
            return run
        finally:
            await redis.aclose()

    async def _watch(
        self, redis: aioredis.Redis, expected: dict[str, int], group: str, n: int, rolls: int
    ) -> IngestRun:
        """Poll the group (and archive_log) until every entry is acknowledged."""
        assert self.daemon is not None
        conn = await asyncpg.connect(self.dsn)
        spawned = time.perf_counter()
        first: float | None = None
        at_roll_end: tuple[int, float] | None = None
        logged_before = await self._logged(conn)
        try:
            while True:
                now = time.perf_counter()
                if self.daemon.poll() is not None:
                    raise BenchError(f"the daemon exited early with code {self.daemon.returncode}")
                if now - spawned > TIMEOUT_S:
                    raise BenchError(f"not every entry acknowledged after {TIMEOUT_S:.0f}s")
                p = await _progress(redis, expected, group)
                if first is None and p.read:
                    first = now
                if rolls and at_roll_end is None and await self._logged(conn) - logged_before >= rolls:
                    at_roll_end = (p.read - p.pending, now)
                if p.done and (at_roll_end is not None or not rolls):
                    break
                await asyncio.sleep(POLL_INTERVAL_S)
        finally:
            await conn.close()
        assert first is not None
        if not rolls:
            return IngestRun(n, now - first)
        assert at_roll_end is not None
        acked, roll_end = at_roll_end
        if roll_end - first < MIN_OVERLAP_S:
            raise BenchError(
                f"the roll ended {roll_end - first:.2f}s after the daemon's first read: too short to "
                "measure; roll more (--busy-days, --symbols)"
            )
        if acked >= n:  # the backlog ran out before the roll ended: the whole backlog's rate
            return IngestRun(n, now - first, drained_early=True, roll_done_s=roll_end - spawned)
        return IngestRun(acked, roll_end - first, roll_done_s=roll_end - spawned)

    async def _logged(self, conn: asyncpg.Connection) -> int:
        return int(await conn.fetchval(f"SELECT count(*) FROM {self.schema}.archive_log"))  # noqa: S608

    async def _stop(self, log_path: Path) -> None:
        assert self.daemon is not None
        self.daemon.send_signal(signal.SIGTERM)
        code = await asyncio.to_thread(self.daemon.wait, 60)
        bad = await asyncio.to_thread(_warnings, log_path)
        for line in bad[:10]:
            print(f"  daemon: {line[:300]}")
        if code != 0 or bad:
            raise BenchError(f"the daemon exited {code} with {len(bad)} warnings/errors; see {log_path}")

    async def cleanup(self) -> None:
        """Stop the daemon if it runs, delete the streams; report, never hide, a failure."""
        await stop_daemon(self.daemon, 30)
        await delete_streams(self.redis_url, self.streams)


def _warnings(log_path: Path) -> list[str]:
    lines = log_path.read_text(errors="replace").splitlines()
    return [line for line in lines if " WARNING " in line or " ERROR " in line or "Traceback" in line]


async def _progress(redis: aioredis.Redis, expected: dict[str, int], group: str) -> Progress:
    try:
        return await progress(redis, expected, group)
    except aioredis.ResponseError:  # the daemon has not created the group yet
        return Progress()
