"""A daemon subprocess watched from outside, and the tally of what it stored.

`watched_daemon` starts `python -m tickvault run` with a small backlog (BACKLOG_ROWS) and
its metrics endpoint on a free port; `observe` samples /healthz, /readyz and /metrics while
a fault lasts; the resident set comes from /proc. `tally` and `compare` count, against a
workload (tests/integration/workload.py), the keys lost, the keys stored twice and the rows
whose values differ (Decimals compared by value), and `record_and_check` puts the figures in
the fault suite's table (tests/fault/report.py) before asserting them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from tests.fault import report
from tests.helpers import (
    Samples,
    TestEnv,
    free_port,
    http_get,
    kill_process,
    sample,
    scrape,
    spawn_daemon,
    wait_until,
)
from tests.integration import workload
from tickvault.records import RECORD_TYPES

BACKLOG_ROWS = 5_000  # batch.max_backlog_rows
READ_COUNT = 500  # redis.read_count / kafka.max_poll_records


@dataclass
class Watched:
    """A daemon subprocess with its metrics endpoint on `port`."""

    proc: subprocess.Popen[bytes]
    port: int
    log: Path

    def alive(self) -> bool:
        return self.proc.poll() is None

    def peak_rss_bytes(self) -> int:
        """VmHWM: the highest resident set the process has had since it started."""
        return proc_status_bytes(self.proc.pid, "VmHWM")

    def metrics(self) -> Samples:
        return scrape(self.port)

    def status(self, path: str) -> int:
        return http_get(self.port, path)[0]

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:]


def proc_status_bytes(pid: int, field: str) -> int:
    """A size field (kB) of /proc/<pid>/status, in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"{field} not in /proc/{pid}/status")


def backlog_bound(env: TestEnv) -> int:
    """The most messages the daemon may hold read but unacknowledged (README, Delivery
    guarantees): the backlog limit, plus on Redis one read's count per stream."""
    return BACKLOG_ROWS + (READ_COUNT * len(env.topics) if env.source == "redis" else 0)


@contextlib.contextmanager
def watched_daemon(env: TestEnv, log: Path, **sections: dict[str, Any]) -> Iterator[Watched]:
    """`tickvault run` with a small backlog and its metrics on a free port; killed and reaped
    at the end if the test has not stopped it."""
    port = free_port()
    settings: dict[str, dict[str, Any]] = {
        "batch": {"max_rows": 1000, "max_age_s": 0.05, "max_backlog_rows": BACKLOG_ROWS},
        "redis": {"read_count": READ_COUNT},
        "kafka": {"max_poll_records": READ_COUNT},
        "metrics": {"enabled": True, "host": "127.0.0.1", "port": port, "lag_interval_s": 1},
        "postgres": {"retry_max_backoff_s": 2},
    }
    for name, values in sections.items():
        settings[name] = {**settings.get(name, {}), **values}
    proc = spawn_daemon(env, log, **settings)
    try:
        yield Watched(proc, port, log)
    finally:
        kill_process(proc)


async def until_ready(daemon: Watched, timeout_s: float = 60) -> None:
    async def ready() -> bool:
        if not daemon.alive():
            raise AssertionError(f"daemon exited: {daemon.tail()}")
        try:
            return await asyncio.to_thread(daemon.status, "/readyz") == 200
        except OSError:
            return False

    await wait_until(ready, timeout_s, 0.1, "the daemon to be ready")


async def until_settled(env: TestEnv, daemon: Watched, timeout_s: float = 240) -> None:
    async def settled() -> bool:
        if not daemon.alive():
            raise AssertionError(f"daemon exited: {daemon.tail()}")
        return await env.unsettled() == 0

    await wait_until(settled, timeout_s, 0.3, f"every message to be committed (log: {daemon.log})")


def parts(w: workload.Workload, *fractions: float) -> list[dict[str, list[str]]]:
    """`w`'s payloads cut into consecutive parts of each kind, by cumulative `fractions`."""
    out, start = [], dict.fromkeys(w.payloads, 0)
    for upto in (*fractions, 1.0):
        part = {}
        for kind, payloads in w.payloads.items():
            end = round(len(payloads) * upto)
            part[kind], start[kind] = payloads[start[kind] : end], end
        out.append(part)
    return out


async def publish(env: TestEnv, part: dict[str, list[str]], steps: int = 1, pause_s: float = 0.0) -> None:
    """Publish `part` in `steps` slices of every kind, pausing `pause_s` after each."""
    for i in range(steps):
        for kind, payloads in part.items():
            n = len(payloads)
            await env.publish(kind, payloads[i * n // steps : (i + 1) * n // steps])
        if pause_s:
            await asyncio.sleep(pause_s)


@dataclass
class Observed:
    """What the endpoints said while a fault lasted, sampled about twice a second."""

    healthz: set[int] = field(default_factory=set)
    readyz: list[tuple[int, str]] = field(default_factory=list)  # status and body, per sample
    postgres_up: list[float] = field(default_factory=list)
    backlog_max: float = 0.0
    # (seconds into the fault, tickvault_messages_consumed_total over all kinds), per sample
    consumed: list[tuple[float, float]] = field(default_factory=list)
    exited: bool = False

    def consumed_since(self, start_s: float) -> set[float]:
        """The distinct consumed totals sampled from `start_s` into the fault on."""
        return {total for t, total in self.consumed if t >= start_s}


async def observe(daemon: Watched, seconds: float, interval_s: float = 0.5) -> Observed:
    """Sample /healthz, /readyz and /metrics for `seconds`, or until the daemon exits."""
    seen = Observed()
    started = time.monotonic()
    while (elapsed_s := time.monotonic() - started) < seconds:
        if not daemon.alive():
            seen.exited = True
            break
        seen.healthz.add(await asyncio.to_thread(daemon.status, "/healthz"))
        code, body = await asyncio.to_thread(http_get, daemon.port, "/readyz")
        seen.readyz.append((code, body.strip()))
        samples = await asyncio.to_thread(daemon.metrics)
        seen.postgres_up.append(sample(samples, "tickvault_dependency_up", dependency="postgres"))
        seen.backlog_max = max(seen.backlog_max, sample(samples, "tickvault_backlog_rows"))
        seen.consumed.append((elapsed_s, sample(samples, "tickvault_messages_consumed_total")))
        await asyncio.sleep(interval_s)
    return seen


@dataclass
class Tally:
    """Stored rows against a workload: keys missing, keys stored twice, rows that differ."""

    lost: int = 0
    duplicated: int = 0
    differing: int = 0

    def __add__(self, other: Tally) -> Tally:
        return Tally(
            self.lost + other.lost, self.duplicated + other.duplicated, self.differing + other.differing
        )


async def stored_rows(env: TestEnv, kind: str) -> list[dict[str, Any]]:
    """Every row of `kind`'s table, with the record's columns (bot state parsed exactly)."""
    table, _ = workload.KEYS[kind]
    columns = ", ".join(f'"{c}"' for c in RECORD_TYPES[kind].COLUMNS)
    rows = [dict(r) for r in await env.fetch(f"SELECT {columns} FROM {{s}}.{table}")]  # noqa: S608
    if kind == "bot_state":
        for row in rows:
            row["state"] = json.loads(row["state"], parse_float=Decimal)
    return rows


def compare(kind: str, expected: dict[tuple[Any, ...], dict[str, Any]], rows: list[dict[str, Any]]) -> Tally:
    """`rows` of `kind` against the rows the workload must produce (Decimals by value)."""
    _, key = workload.KEYS[kind]
    keys = [tuple(r[k] for k in key) for r in rows]
    by_key = dict(zip(keys, rows, strict=True))
    lost = len(expected.keys() - by_key.keys())
    differing = sum(1 for k, row in expected.items() if k in by_key and by_key[k] != row)
    return Tally(lost, len(keys) - len(by_key), differing)


async def tally(env: TestEnv, w: workload.Workload) -> Tally:
    """Lost, duplicated and differing rows over every kind of `w`, plus the order history
    (one event per order update sent) and any dead letter (counted as lost)."""
    total = Tally()
    for kind, expected in w.expected.items():
        total += compare(kind, expected, await stored_rows(env, kind))
    events = await env.count("order_events")
    total.lost += max(0, len(w.expected["order"]) - events) + await env.count("dead_letters")
    total.duplicated += max(0, events - len(w.expected["order"]))
    return total


def record_and_check(scenario: str, rounds: int, w: workload.Workload, t: Tally, detail: str) -> None:
    report.record(report.FaultFigures(scenario, rounds, w.total(), t.lost, t.duplicated, detail))
    assert (t.lost, t.duplicated, t.differing) == (0, 0, 0), t


def mib(n: float) -> str:
    return f"{n / 2**20:.0f} MiB"
