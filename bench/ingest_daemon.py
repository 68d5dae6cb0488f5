"""The daemon under the ingest bench: its settings for a run (scratch names, overrides, the
TICKVAULT_* environment of the subprocess), its progress through Redis Streams or Kafka, its
figures from /proc (CPU seconds, peak RSS, the servers' CPU), and the py-spy profiler.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import datetime as dt
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit, urlunsplit

import redis.asyncio as aioredis

import steady
from ingest_workload import BATCH_ROWS, KINDS
from kafka_side import KafkaSide
from runner import BenchError

POLL_INTERVAL_S: Final = 0.05
PROFILE_RATE_HZ: Final = 200
CLK_TCK: Final = os.sysconf("SC_CLK_TCK")


# --------------------------------------------------------------------------- settings


def scratch_names(token: str) -> tuple[str, dict[str, str]]:
    base = f"tickvault_bench_{token}"
    return base, {f"{base}.{kind}s" if kind != "bot_state" else f"{base}.bot_state": kind for kind in KINDS}


def with_database(dsn: str, database: str) -> str:
    return urlunsplit(urlsplit(dsn)._replace(path="/" + database))


def overrides(dsn: str, redis_url: str, topics: dict[str, str], token: str) -> dict[str, Any]:
    return {
        "postgres": {"dsn": dsn, "create_database": True, "timescale": "auto"},
        "source": {"topics": topics},
        "redis": {"url": redis_url, "group": f"bench_{token}", "consumer": "bench"},
        "batch": {"max_rows": BATCH_ROWS},
        "metrics": {"enabled": False},
        "log": {"level": "INFO"},
    }


def environ(values: dict[str, Any]) -> dict[str, str]:
    """The same settings as TICKVAULT_* variables, for the daemon subprocess."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TICKVAULT_")}
    for section, options in values.items():
        for key, value in options.items():
            name = f"TICKVAULT_{section.upper()}__{key.upper()}"
            env[name] = json.dumps(value) if isinstance(value, dict | bool) else str(value)
    return env


# --------------------------------------------------------------------------- the daemon


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime


def server_cpu_seconds() -> dict[str, float]:
    """CPU seconds of every postgres, redis-server and tansu process, children included."""
    totals: dict[str, float] = collections.defaultdict(float)
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            text = stat.read_text()
            comm = text[text.index("(") + 1 : text.rindex(")")]
            if comm in ("postgres", "redis-server") or comm.startswith("tansu"):
                comm = "tansu (Kafka broker)" if comm.startswith("tansu") else comm
                f = text.rsplit(")", 1)[1].split()
                totals[comm] += sum(int(x) for x in f[11:15]) / CLK_TCK
    return totals


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise BenchError("no VmHWM in /proc status")


@dataclass
class Progress:
    read: int = 0
    pending: int = 0
    lag: int = 0
    done: bool = False


async def progress(redis: aioredis.Redis, streams: dict[str, int], group: str) -> Progress:
    p = Progress(done=True)
    for stream, expected in streams.items():
        info = await steady.group_info(redis, stream, group)
        if info is None:
            return Progress()
        read, lag, pending = info.get("entries-read") or 0, info.get("lag"), info["pending"]
        p.read, p.pending, p.lag = p.read + read, p.pending + pending, p.lag + (lag or 0)
        p.done = p.done and lag == 0 and pending == 0 and read == expected
    if p.done:  # XINFO said so; XPENDING must agree
        for stream in streams:
            p.done = p.done and (await redis.xpending(stream, group))["pending"] == 0
    return p


@dataclass
class DaemonRun:
    elapsed_s: float = 0.0  # spawn → last entry acknowledged
    startup_s: float = 0.0  # spawn → first entry read by the group
    peak_rss_mib: float = 0.0
    cpu_s: float = 0.0
    server_cpu_s: dict[str, float] = field(default_factory=dict)
    exit_code: int | None = None
    profile: Path | None = None
    steady: Steady | None = None


@dataclass
class Steady:
    messages: int
    rate: float  # achieved publish rate
    latencies_s: list[float]  # sorted, publish → acknowledged
    peak_rss_mib: float


async def kafka_progress(kafka: KafkaSide, group: str) -> Progress:
    """Kafka has no pending list: `read` and acknowledged are both the committed offsets."""
    committed, published = await kafka.committed(group)
    return Progress(read=committed, lag=published - committed, done=committed == published)


async def wait_acknowledged(
    check: Callable[[], Awaitable[Progress]],
    proc: subprocess.Popen[bytes],
    started: float,
    timeout_s: float,
) -> tuple[float, float]:
    """Seconds from `started` (perf_counter) to the first read and to the last acknowledgement."""
    first_read_s: float | None = None
    next_report_s = 10.0
    while True:
        now_s = time.perf_counter() - started
        if proc.poll() is not None:
            raise BenchError(f"daemon exited early with code {proc.returncode}")
        if now_s > timeout_s:
            raise BenchError(f"not every entry acknowledged after {timeout_s:.0f}s")
        with contextlib.suppress(aioredis.ResponseError):  # group not created yet
            p = await check()
            if first_read_s is None and p.read:
                first_read_s = now_s
            if p.done:
                return first_read_s or now_s, now_s
            if now_s >= next_report_s:
                acked = p.read - p.pending
                print(f"  … {now_s:5.0f}s: {acked} acknowledged, {p.pending} pending, lag {p.lag}")
                next_report_s += 10.0
        await asyncio.sleep(POLL_INTERVAL_S)


def assigned_after(log_path: Path, since_wall_s: float) -> float | None:
    """Seconds from `since_wall_s` to the daemon's first "partitions assigned" log line."""
    for line in log_path.read_text(errors="replace").splitlines():
        if "partitions assigned: t" in line:
            stamp = dt.datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f").replace(tzinfo=dt.UTC)
            return stamp.timestamp() - since_wall_s
    return None


def start_profiler(pid: int, out: Path) -> subprocess.Popen[bytes] | None:
    search = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    exe = shutil.which("py-spy", path=search)
    if exe is None:
        print("  py-spy not found; no profile (pip install py-spy)")
        return None
    cmd = [exe, "record", "--pid", str(pid), "--rate", str(PROFILE_RATE_HZ), "--nonblocking"]
    cmd += ["--format", "raw", "-o", str(out)]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def stop_profiler(profiler: subprocess.Popen[bytes]) -> None:
    profiler.send_signal(signal.SIGINT)
    try:
        _, err = profiler.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        profiler.kill()
        return
    if profiler.returncode not in (0, -signal.SIGINT):
        print(f"  py-spy exited {profiler.returncode}: {err.decode(errors='replace').strip()[-300:]}")
