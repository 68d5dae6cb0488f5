"""Fault suite: the archive root unusable while the daemon's roller runs, then usable again.

The daemon (`python -m tickvault run`, archive enabled, a roll every second) ingests klines
and fills of four old days and of today, one slice before the faults, one under each, one
after. On a local root, `<dir>/cold/archive`, `cold` is a symbolic link that the test swaps
atomically (rename over it), so the root never works by accident in between:

1. `cold` points at a regular file: every write under the root fails with ENOTDIR (which
   stops root as well, unlike permissions);
2. `cold` points at a tmpfs filled but for 16 KiB: writes fail with ENOSPC (skipped where
   `mount -t tmpfs` is not permitted, e.g. an unprivileged CI container);
3. the filler is deleted (or, without the tmpfs, `cold` points at a plain directory).

On S3, the root's server (moto, this test's own) is first not running at all, then runs
without the bucket, which is then created.

While the root is unusable, rolls fail visibly (tickvault_archive_failures_total, an error
line per partition), every partition stays hot with all its rows, nothing reaches
archive_log, /readyz stays 200 and ingest goes on. Once the root is usable the next rolls
move the old days, and hot + cold equals what was sent: nothing lost, nothing twice,
Decimal-equal.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import errno
import os
import random
import subprocess
import sys
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from functools import partial
from pathlib import Path
from typing import Any

from tests.fault.watched import (
    Tally,
    Watched,
    compare,
    publish,
    record_and_check,
    stored_rows,
    until_ready,
    until_settled,
    watched_daemon,
)
from tests.helpers import TestEnv, free_port, sample, scratch_dir, stop_process, wait_for_port, wait_until
from tests.integration import workload
from tests.integration.test_archive import cold_rows, partitions_of
from tickvault.records import RECORD_TYPES
from tickvault.settings import Settings

DAY_MS = 86_400_000
T0_MS = workload.T0_MS  # 2026-01-01T00:00:00Z
OLD_DAYS = 4
SYMBOLS = 20
KLINES_PER_DAY = 1_000
FILLS_PER_DAY = 500
RECENT_KLINES = 1_000  # today's: younger than the hot retention, they stay hot
TMPFS_SIZE = "8m"
TMPFS_FREE_BYTES = 16 * 1024  # room for the cold tables' first metadata, not for a day's data file
TABLES = ("klines", "fills")
BUCKET = "cold-bucket"


def archive_sections(root: str) -> dict[str, dict[str, Any]]:
    return {
        "postgres": {"timescale": "off", "partition_interval_days": 1, "partitions_ahead": 0},
        "archive": {"enabled": True, "root": root, "hot_retention": "2d", "interval_s": 1},
    }


class MotoServer:
    """A local S3 API (moto) of this test's own on a free port, not started until `start`:
    stopping the session's server would break other tests. Stopped at exit."""

    def __init__(self, log: Path) -> None:
        self.port, self.log = free_port(), log
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> MotoServer:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(10)

    def start(self) -> None:
        with self.log.open("ab") as log:
            cmd = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)]
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
        wait_for_port(self.port, self.proc, "moto")

    def create_bucket(self) -> None:
        request = urllib.request.Request(f"{self.endpoint}/{BUCKET}", method="PUT")
        urllib.request.urlopen(request, timeout=5).close()


def build(phases: int, seed: int = 23) -> list[workload.Workload]:
    """Klines and fills of OLD_DAYS days from 2026-01-01 and RECENT_KLINES klines of the last
    hours, in the payload and row shapes of tests/integration/workload.py, dealt round-robin
    into `phases` workloads: each spans every day, no two share a key."""
    rng = random.Random(seed)
    ws = [workload.Workload({"kline": [], "fill": []}, {"kline": {}, "fill": {}}) for _ in range(phases)]
    now_minute_ms = int(dt.datetime.now(dt.UTC).timestamp()) // 60 * 60_000
    opens = [
        T0_MS + d * DAY_MS + (j // SYMBOLS) * 60_000 for d in range(OLD_DAYS) for j in range(KLINES_PER_DAY)
    ]
    opens += [now_minute_ms - (1 + j // SYMBOLS) * 60_000 for j in range(RECENT_KLINES)]
    for i, open_ms in enumerate(opens):
        _kline(ws[i % phases], rng, i, f"S{i % SYMBOLS}", open_ms)
    for i in range(OLD_DAYS * FILLS_PER_DAY):
        _fill(ws[i % phases], rng, i, T0_MS + i * (DAY_MS // FILLS_PER_DAY) + 7)
    return ws


def merged(ws: list[workload.Workload]) -> workload.Workload:
    """One workload of all of `ws` (disjoint keys)."""
    out = workload.Workload({"kline": [], "fill": []}, {"kline": {}, "fill": {}})
    for w in ws:
        for kind in out.payloads:
            out.payloads[kind] += w.payloads[kind]
            out.expected[kind] |= w.expected[kind]
    return out


def _kline(w: workload.Workload, rng: random.Random, i: int, symbol: str, open_ms: int) -> None:
    low = Decimal(rng.randrange(1, 10**12)) / Decimal(10**8)
    high = low + Decimal(rng.randrange(1, 10**12)) / Decimal(10**8)
    open_ = (low + (high - low) / 4).quantize(Decimal("1E-18"))
    close = (high - (high - low) / 3).quantize(Decimal("1E-18"))
    volume = Decimal(f"{rng.randrange(10**20)}.{rng.randrange(10**9):09d}")
    w.expected["kline"][("binance", symbol, "1m", workload.ts(open_ms))] = {
        "exchange": "binance", "symbol": symbol, "interval": "1m", "open_time": workload.ts(open_ms),
        "close_time": workload.ts(open_ms + 59_999), "open": open_, "high": high, "low": low,
        "close": close, "volume": volume, "quote_volume": None, "trades": i, "closed": True,
    }  # fmt: skip
    w.payloads["kline"].append(
        f'{{"exchange":"binance","symbol":"{symbol}","interval":"1m","open_time":{open_ms},'
        f'"close_time":{open_ms + 59_999},"open":{open_},"high":"{high}","low":{low},'
        f'"close":"{close}","volume":{volume},"trades":{i}}}'
    )


def _fill(w: workload.Workload, rng: random.Random, i: int, ts_ms: int) -> None:
    qty, price = Decimal(rng.randrange(1, 10**6)) / 1000, Decimal(rng.randrange(1, 10**12)) / Decimal(10**8)
    fee = -Decimal(i) / 10**9
    symbol = f"S{i % SYMBOLS}"
    w.expected["fill"][("bybit", symbol, f"f{i}")] = {
        "fill_id": f"f{i}", "order_id": f"o{i}", "exchange": "bybit", "symbol": symbol, "side": "sell",
        "quantity": qty, "price": price, "fee": fee, "fee_asset": "USDT", "liquidity": "taker",
        "bot_id": None, "strategy": None, "ts": workload.ts(ts_ms),
    }  # fmt: skip
    w.payloads["fill"].append(
        f'{{"fill_id":"f{i}","order_id":"o{i}","exchange":"bybit","symbol":"{symbol}","side":"sell",'
        f'"quantity":{qty},"price":"{price}","fee":{fee},"fee_asset":"USDT","liquidity":"TAKER",'
        f'"ts":{ts_ms}}}'
    )


def point(link: Path, target: Path) -> None:
    """Make `link` a symbolic link to `target` in one step (a rename over the old link)."""
    tmp = link.with_name(link.name + ".new")
    tmp.symlink_to(target)
    tmp.replace(link)


@contextlib.contextmanager
def full_tmpfs(path: Path) -> Iterator[Path | None]:
    """A tmpfs of TMPFS_SIZE at `path`, filled but for TMPFS_FREE_BYTES by the file it yields
    (so a roll creates its cold table, then runs out of space writing a data file); None
    where mounting is not permitted. Unmounted at the end."""
    path.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={TMPFS_SIZE}", "tmpfs", str(path)],
        capture_output=True,
        check=False,
    )
    if mounted.returncode != 0:
        yield None
        return
    try:
        filler = path / "filler"
        with filler.open("wb") as f:
            try:
                while True:
                    f.write(b"\0" * 65_536)
                    f.flush()
            except OSError as exc:
                assert exc.errno == errno.ENOSPC, exc
        os.truncate(filler, filler.stat().st_size - TMPFS_FREE_BYTES)
        yield filler
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True, check=False)


def counter(daemon: Watched, name: str) -> float:
    """A tickvault_archive_* counter summed over TABLES."""
    samples = daemon.metrics()
    return sum(sample(samples, name, table=t) for t in TABLES)


async def until_failed(daemon: Watched, since: float, logged: str) -> float:
    """Wait until the rolls of old partitions failed in one more round than at `since`
    (OLD_DAYS partitions of each of TABLES) and an error line carries `logged`; the
    failure count then."""
    wanted = since + OLD_DAYS * len(TABLES)

    async def failed() -> bool:
        assert daemon.alive(), daemon.tail()
        if counter(daemon, "tickvault_archive_failures_total") < wanted:
            return False
        lines = daemon.log.read_text(errors="replace").splitlines()
        return any("failed, partition kept" in line and logged in line for line in lines)

    await wait_until(failed, 90, 0.2, f"a failed round of rolls logging {logged!r}")
    return counter(daemon, "tickvault_archive_failures_total")


async def check_all_hot(env: TestEnv, sent: workload.Workload, parts_before: dict[str, list[str]]) -> None:
    """Nothing rolled, nothing dropped: the partitions are all there, every row sent so far
    is hot, once and equal, and archive_log is empty."""
    for name in TABLES:
        assert await partitions_of(env, name) == parts_before[name]
    for kind, expected in sent.expected.items():
        assert compare(kind, expected, await stored_rows(env, kind)) == Tally(), kind
    assert await env.fetch("SELECT * FROM {s}.archive_log") == []


async def old_partitions(env: TestEnv) -> list[str]:
    """Partitions of TABLES for the old days (named ..._YYYYMMDD)."""
    days = tuple(f"{(workload.ts(T0_MS + d * DAY_MS)):%Y%m%d}" for d in range(OLD_DAYS))
    return [p for name in TABLES for p in await partitions_of(env, name) if p.endswith(days)]


async def hot_and_cold(env: TestEnv, settings: Settings, kind: str) -> list[dict[str, Any]]:
    """Every row of `kind` in PostgreSQL and in its cold table, with the record's columns."""
    table, _ = workload.KEYS[kind]
    cold = cold_rows(settings, table).select(list(RECORD_TYPES[kind].COLUMNS)).to_pylist()
    return [*await stored_rows(env, kind), *cold]


@dataclass
class Breakage:
    """One way the root is unusable: `apply` makes it so (before the daemon starts, for the
    first), and each failed roll's error line then carries `logged`."""

    name: str
    apply: Callable[[], None]
    logged: str


@dataclass
class Rolled:
    """How a run through the breakages ended."""

    tally: Tally
    failures: float  # partition rolls that failed
    partitions: float  # partitions rolled once the root was usable
    rows: float
    logged: int  # archive_log rows


async def roll_through(
    env: TestEnv,
    sections: dict[str, dict[str, Any]],
    log: Path,
    breakages: list[Breakage],
    repair: Callable[[], None],
) -> tuple[workload.Workload, Rolled]:
    """Run the daemon's roller through each of `breakages` in turn, publishing a slice of the
    workload under each, then `repair` the root and publish the last slice while it rolls.
    Under each breakage: rolls fail (counted, logged), /readyz stays 200, every partition
    and every row sent so far stays hot, archive_log stays empty. The end: hot + cold rows
    against everything sent."""
    ws = build(phases=len(breakages) + 2)
    breakages[0].apply()
    with watched_daemon(env, log, **sections) as daemon:
        await until_ready(daemon)
        await publish(env, ws[0].payloads)
        await until_settled(env, daemon)
        hot_parts = {name: await partitions_of(env, name) for name in TABLES}
        failures = 0.0
        for i, breakage in enumerate(breakages):
            breakage.apply()
            failures = await until_failed(daemon, failures, breakage.logged)
            assert daemon.status("/readyz") == 200  # a failing roll is not a failing ingest
            await publish(env, ws[i + 1].payloads)  # ingest goes on while rolls fail
            await until_settled(env, daemon)
            await check_all_hot(env, merged(ws[: i + 2]), hot_parts)
        repair()
        await publish(env, ws[-1].payloads)  # while the rolls succeed

        async def rolled() -> bool:
            assert daemon.alive(), daemon.tail()
            return await env.unsettled() == 0 and await old_partitions(env) == []

        await wait_until(rolled, 120, 0.3, "every old partition to be rolled")
        partitions = counter(daemon, "tickvault_archive_partitions_total")
        rows = counter(daemon, "tickvault_archive_rows_total")
        assert stop_process(daemon.proc) == 0
    everything, settings, t = merged(ws), env.settings(**sections), Tally()
    for kind, expected in everything.expected.items():
        t += compare(kind, expected, await hot_and_cold(env, settings, kind))
    logged = len(await env.fetch("SELECT table_name FROM {s}.archive_log"))
    return everything, Rolled(t, failures, partitions, rows, logged)


def record_rolled(
    scenario: str, breakages: list[Breakage], w: workload.Workload, r: Rolled, note: str = ""
) -> None:
    detail = (
        f"{', '.join(b.name for b in breakages)}{note}: {r.failures:.0f} partition rolls failed, all kept "
        f"hot; then {r.partitions:.0f} partitions ({r.rows:.0f} rows) rolled; hot + cold compared"
    )
    record_and_check(scenario, 1, w, r.tally, detail)
    assert r.logged >= OLD_DAYS * len(TABLES)


async def test_local_root_not_a_directory_then_full_then_usable(env: TestEnv) -> None:
    with scratch_dir() as base:
        (base / "a-file").write_text("the archive root's parent is this file: ENOTDIR")
        link, plain = base / "cold", base / "plain"
        plain.mkdir()
        sections = archive_sections(str(link / "archive"))
        with full_tmpfs(base / "tmpfs") as filler:
            breakages = [Breakage("ENOTDIR", lambda: point(link, base / "a-file"), "Not a directory")]
            if filler is not None:
                breakages.append(
                    Breakage("ENOSPC", lambda: point(link, filler.parent), "No space left on device")
                )
                repair: Callable[[], None] = filler.unlink  # space again
            else:
                repair = partial(point, link, plain)
            w, rolled = await roll_through(env, sections, base / "daemon.log", breakages, repair)
            # the cold rows were read in roll_through, while the tmpfs was still mounted
    note = "" if filler is not None else " (tmpfs not mountable: ENOSPC skipped)"
    record_rolled("archive root: not a directory, then full", breakages, w, rolled, note)


async def test_s3_root_unreachable_then_bucketless_then_usable(env: TestEnv) -> None:
    with scratch_dir() as base, MotoServer(base / "moto.log") as moto:
        sections = archive_sections(f"s3://{BUCKET}/{env.schema}")
        sections["archive"] |= {
            "s3_endpoint": moto.endpoint, "s3_region": "us-east-1",
            "s3_access_key_id": "test", "s3_secret_access_key": "test",
        }  # fmt: skip
        breakages = [
            Breakage("S3 unreachable", lambda: None, "Could not connect to server"),
            Breakage("bucket missing", moto.start, "The specified bucket does not exist"),
        ]
        w, rolled = await roll_through(env, sections, base / "daemon.log", breakages, moto.create_bucket)
    record_rolled("archive root: S3 down, then no bucket", breakages, w, rolled)
