"""The soak's samples: what the daemon, Redis and PostgreSQL look like every --sample-s, the
time series table, the CSV, and the flatness figures (first 5 minutes against the last 5).

Per sample: the daemon's RSS (`VmRSS` of /proc/<pid>/status) and CPU since the previous
sample; lag = messages published so far - messages the group has acknowledged (`entries-read`
- pending, summed over the streams; everything not yet committed, whether undelivered or
pending); from the daemon's /metrics: rows written, roller rounds, partitions and rows rolled,
roll failures; the streams' memory in Redis (`MEMORY USAGE`); the scratch database's size;
the 1-minute load average. The flatness figures add the least-squares slope of RSS after
the first 5 minutes, in MiB per minute.
"""

from __future__ import annotations

import asyncio
import csv
import dataclasses
import statistics
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import asyncpg
import redis.asyncio as aioredis
from prometheus_client.parser import text_string_to_metric_families

import steady
from ingest_daemon import cpu_seconds
from runner import BenchError

MIB: Final = 1024 * 1024
WINDOW_S: Final = 300.0  # the flatness windows: the first and the last 5 minutes
METRICS: Final = {
    "tickvault_rows_written_total": "rows_written",
    "tickvault_archive_runs_total": "roll_rounds",
    "tickvault_archive_partitions_total": "rolled_partitions",
    "tickvault_archive_rows_total": "rolled_rows",
    "tickvault_archive_failures_total": "roll_failures",
}


@dataclass
class Sample:
    t_s: float  # since publishing started
    sent: int
    acked: int
    lag: int  # sent - acked
    pending: int
    rss_mib: float
    cpu_pct: float  # of one core, since the previous sample
    rows_written: int
    roll_rounds: int
    rolled_partitions: int
    rolled_rows: int
    roll_failures: int
    redis_mib: float  # the streams' MEMORY USAGE
    db_mib: float
    load1: float


@dataclass
class Sampler:
    pid: int
    metrics_url: str
    group: str
    streams: list[str]
    last_cpu: tuple[float, float] | None = None  # (perf_counter, CPU seconds)

    async def sample(
        self, t_s: float, now_s: float, sent: int, redis: aioredis.Redis, conn: asyncpg.Connection
    ) -> Sample:
        acked = pending = 0
        for stream in self.streams:
            info = await steady.group_info(redis, stream, self.group)
            if info is not None:
                acked += (info.get("entries-read") or 0) - info["pending"]
                pending += info["pending"]
        cpu_s = cpu_seconds(self.pid)
        cpu_pct = 0.0
        if self.last_cpu is not None:
            cpu_pct = 100 * (cpu_s - self.last_cpu[1]) / max(1e-9, now_s - self.last_cpu[0])
        self.last_cpu = (now_s, cpu_s)
        counters = await asyncio.to_thread(scrape, self.metrics_url)
        stream_bytes = sum([await redis.memory_usage(stream) or 0 for stream in self.streams])
        db_bytes = await conn.fetchval("SELECT pg_database_size(current_database())")
        return Sample(
            t_s=t_s, sent=sent, acked=acked, lag=sent - acked, pending=pending,
            rss_mib=rss_mib(self.pid), cpu_pct=cpu_pct, **counters,
            redis_mib=stream_bytes / MIB, db_mib=db_bytes / MIB,
            load1=load_average(),
        )  # fmt: skip

    async def trim(self, redis: aioredis.Redis) -> None:
        """Trim each stream below what the group has acknowledged (XTRIM MINID): entries a
        producer would let go once stored, so Redis's memory measures the backlog only."""
        for stream in self.streams:
            through = await steady.acknowledged_through(redis, stream, self.group)
            if through > 0:
                ms, seq = through >> steady.SEQ_BITS, through & ((1 << steady.SEQ_BITS) - 1)
                # exact: `~` would trim at most 100 nodes' worth of entries per call
                await redis.xtrim(stream, minid=f"{ms}-{seq}", approximate=False)


def load_average() -> float:
    return float(Path("/proc/loadavg").read_text().split()[0])


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise BenchError("no VmRSS in /proc status")


def scrape(url: str) -> dict[str, int]:
    """The counters of METRICS from the daemon's /metrics, summed over their labels."""
    with urllib.request.urlopen(url, timeout=5) as reply:
        text = reply.read().decode()
    found = dict.fromkeys(METRICS.values(), 0)
    for family in text_string_to_metric_families(text):
        name = METRICS.get(family.name + "_total") or METRICS.get(family.name)
        if name is not None:
            found[name] = int(sum(s.value for s in family.samples if s.name.endswith("_total")))
    return found


HEADER: Final = (
    f"{'t s':>6} {'sent':>10} {'lag':>7} {'RSS MiB':>8} {'CPU %':>6} {'rows written':>12} "
    f"{'rounds':>6} {'parts':>6} {'rolled rows':>11} {'fail':>4} {'strm MiB':>9} {'db MiB':>7} {'load':>5}"
)


def line(s: Sample) -> str:
    return (
        f"{s.t_s:6.0f} {s.sent:10,d} {s.lag:7,d} {s.rss_mib:8.1f} {s.cpu_pct:6.1f} {s.rows_written:12,d} "
        f"{s.roll_rounds:6d} {s.rolled_partitions:6d} {s.rolled_rows:11,d} {s.roll_failures:4d} "
        f"{s.redis_mib:9.1f} {s.db_mib:7.0f} {s.load1:5.2f}"
    )


def write_csv(path: Path, samples: Sequence[Sample]) -> None:
    names = [f.name for f in dataclasses.fields(Sample)]
    with path.open("w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(names)
        for s in samples:
            writer.writerow([round(v, 3) if isinstance(v, float) else v for v in dataclasses.astuple(s)])


def flatness(samples: Sequence[Sample], duration_s: float) -> list[tuple[str, str]]:
    """Mean and max of RSS, lag and load over the first and the last 5 minutes of publishing,
    and over the whole run, and the RSS trend (least-squares slope, MiB/min) of the samples
    after the first 5 minutes: (label, text) lines."""
    window = min(WINDOW_S, duration_s / 2)
    first = [s for s in samples if s.t_s <= window]
    last = [s for s in samples if s.t_s >= duration_s - window]
    if not first or not last:
        return [("flatness", "too few samples")]

    def stat(label: str, values: Sequence[float], unit: str, fmt: str) -> tuple[str, str]:
        return label, f"mean {statistics.fmean(values):{fmt}} {unit}, max {max(values):{fmt}} {unit}"

    rows = []
    for name, attr, unit, fmt in (("RSS", "rss_mib", "MiB", ".1f"), ("lag", "lag", "msgs", ",.0f")):
        minutes = f"{window / 60:.0f} min" if window >= 60 else f"{window:.0f} s"
        rows.append(stat(f"{name}, first {minutes}", [getattr(s, attr) for s in first], unit, fmt))
        rows.append(stat(f"{name}, last {minutes}", [getattr(s, attr) for s in last], unit, fmt))
        rows.append(stat(f"{name}, whole run", [getattr(s, attr) for s in samples], unit, fmt))
    after = [s for s in samples if s.t_s >= window]  # past the warm-up: the roller's libraries load
    if len(after) > 2:
        fit = statistics.linear_regression([s.t_s / 60 for s in after], [s.rss_mib for s in after])
        label = f"RSS slope after the first {window / 60:.0f} min"
        rows.append((label, f"{fit.slope:+.2f} MiB/min (least squares)"))
    rows.append(("RSS first / last / max sample", f"{samples[0].rss_mib:.1f} / {samples[-1].rss_mib:.1f} / "
                 f"{max(s.rss_mib for s in samples):.1f} MiB"))  # fmt: skip
    rows.append(stat("daemon CPU (% of one core)", [s.cpu_pct for s in samples[1:]] or [0.0], "%", ".1f"))
    rows.append(stat("load average (1 min)", [s.load1 for s in samples], "", ".2f"))
    rows.append(stat("the streams in Redis", [s.redis_mib for s in samples], "MiB", ".1f"))
    rows.append(stat("scratch database size", [s.db_mib for s in samples], "MiB", ".0f"))
    return rows
