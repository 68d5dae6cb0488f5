"""Fault suite: the archive root unusable while the daemon's roller runs, then usable again.

The daemon (`python -m tickvault run`, archive enabled, a roll every second) ingests klines
and fills of four old days and of today. Its archive root is `<dir>/cold/archive`, where
`cold` is a symbolic link that the test swaps atomically (rename over it) between phases,
so the root never works by accident in between:

1. `cold` points at a regular file: every write under the root fails with ENOTDIR (which
   stops root as well, unlike permissions);
2. `cold` points at a small tmpfs filled to the last byte: writes fail with ENOSPC (skipped
   where `mount -t tmpfs` is not permitted, e.g. an unprivileged CI container);
3. the filler is deleted (or, without the tmpfs, `cold` points at a plain directory).

While the root is unusable, rolls fail visibly (tickvault_archive_failures_total, an error
line per partition), every partition stays hot with all its rows, nothing reaches
archive_log, and ingest goes on. Once the root is usable the next rolls move the old days,
and hot + cold equals what was sent: nothing lost, nothing twice, Decimal-equal.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import errno
import os
import random
import subprocess
from collections.abc import Iterator
from decimal import Decimal
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
from tests.helpers import TestEnv, sample, scratch_dir, stop_process, wait_until
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


def archive_sections(root: Path) -> dict[str, dict[str, Any]]:
    return {
        "postgres": {"timescale": "off", "partition_interval_days": 1, "partitions_ahead": 0},
        "archive": {"enabled": True, "root": str(root), "hot_retention": "2d", "interval_s": 1},
    }


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


async def until_failed_rounds(daemon: Watched, since: float, rounds: int) -> float:
    """Wait until the rolls of old partitions failed in `rounds` more rounds than at `since`
    (OLD_DAYS partitions of each of TABLES per round); the failure count then."""
    wanted = since + rounds * OLD_DAYS * len(TABLES)

    async def failed() -> bool:
        assert daemon.alive(), daemon.tail()
        return counter(daemon, "tickvault_archive_failures_total") >= wanted

    await wait_until(failed, 60, 0.2, f"{rounds} failed rounds of rolls")
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


async def test_archive_root_unusable_then_usable(env: TestEnv) -> None:
    ws = build(phases=4)
    everything = merged(ws)
    with scratch_dir() as base:
        (base / "a-file").write_text("the archive root's parent is this file: ENOTDIR")
        link, plain = base / "cold", base / "plain"
        plain.mkdir()
        point(link, base / "a-file")
        sections = archive_sections(link / "archive")
        settings = env.settings(**sections)
        with (
            full_tmpfs(base / "tmpfs") as filler,
            watched_daemon(env, base / "daemon.log", **sections) as daemon,
        ):
            await until_ready(daemon)
            await publish(env, ws[0].payloads)
            await until_settled(env, daemon)
            hot_parts = {name: await partitions_of(env, name) for name in TABLES}
            failures = await until_failed_rounds(daemon, 0, 2)
            assert "Not a directory" in daemon.log.read_text()
            assert daemon.status("/readyz") == 200  # a failing roll is not a failing ingest
            await check_all_hot(env, merged(ws[:1]), hot_parts)

            await publish(env, ws[1].payloads)  # ingest goes on while rolls fail
            await until_settled(env, daemon)
            failures = await until_failed_rounds(daemon, failures, 1)
            await check_all_hot(env, merged(ws[:2]), hot_parts)

            if filler is not None:
                point(link, filler.parent)
                failures = await until_failed_rounds(daemon, failures, 2)
                assert "No space left on device" in daemon.log.read_text()
                await publish(env, ws[2].payloads)
                await until_settled(env, daemon)
                await check_all_hot(env, merged(ws[:3]), hot_parts)
                filler.unlink()  # space again
            else:
                await publish(env, ws[2].payloads)
                point(link, plain)
            await publish(env, ws[3].payloads)  # while the rolls succeed

            async def rolled() -> bool:
                assert daemon.alive(), daemon.tail()
                return await env.unsettled() == 0 and await old_partitions(env) == []

            await wait_until(rolled, 120, 0.3, "every old partition to be rolled")
            rolled_partitions = counter(daemon, "tickvault_archive_partitions_total")
            rolled_rows = counter(daemon, "tickvault_archive_rows_total")
            assert stop_process(daemon.proc) == 0
            t = Tally()
            for kind, expected in everything.expected.items():
                t += compare(kind, expected, await hot_and_cold(env, settings, kind))
            logged = await env.fetch("SELECT table_name FROM {s}.archive_log")
    phases = "ENOTDIR, ENOSPC" if filler is not None else "ENOTDIR (tmpfs not mountable: ENOSPC skipped)"
    detail = (
        f"{phases}: {failures:.0f} partition rolls failed, all kept hot; then {rolled_partitions:.0f} "
        f"partitions ({rolled_rows:.0f} rows) rolled; hot + cold compared"
    )
    record_and_check("archive root unusable, then usable", 1, everything, t, detail)
    assert len(logged) >= OLD_DAYS * len(TABLES)
