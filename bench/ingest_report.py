"""The ingest bench's report: the summary of the daemon's py-spy profile and the table of
results, each rate set against the limit it is measured by.
"""

from __future__ import annotations

import collections
from pathlib import Path
from typing import Any, Final

import steady
from ingest_daemon import PROFILE_RATE_HZ, DaemonRun
from ingest_workload import Workload

# where the daemon's CPU goes: (area, a substring of a frame that marks it), inclusive
# (area, frame names, counted only where one of them is the innermost frame)
PROFILE_AREAS: Final = (
    ("decode + validate (hot path, pydantic for the rest)", ("decode_item",), False),
    ("  of which pydantic (orders, and what the hot path leaves)", ("model_validate",), False),
    ("routing into writers' batches (Pipeline._take itself)", ("Pipeline._take",), True),
    ("store.write (all of the PostgreSQL write)", ("Store.write",), False),
    ("  of which asyncpg copy_to_table", ("copy_to_table",), False),
    ("  of which rows → COPY text", ("KindWriter.copy_text", "insert (tickvault"), True),
    ("prometheus_client (metrics updates)", ("prometheus_client",), False),
    ("source.read (XREADGROUP + parsing)", ("RedisStreamsSource.read",), False),
    ("source.ack (XACK)", ("RedisStreamsSource.ack",), False),
)
# frames every sample passes through; leaving them out makes the inclusive list useful
_PLUMBING: Final = ("runpy", "__main__.py", "cli.py", "base_events.py", "runners.py", "events.py")


def summarise_profile(path: Path, elapsed_s: float, top: int = 15) -> None:
    """Self and inclusive share of samples per function, from py-spy's collapsed stacks."""
    self_n: collections.Counter[str] = collections.Counter()
    total_n: collections.Counter[str] = collections.Counter()
    area_n: collections.Counter[str] = collections.Counter()
    samples = 0
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        count = int(count_text)
        frames = [_frame(f) for f in stack.split(";")]
        samples += count
        self_n[frames[-1]] += count
        for name in {f for f in frames if not any(p in f for p in _PLUMBING)}:
            total_n[name] += count
        for area, markers, innermost in PROFILE_AREAS:
            if any(m in (frames[-1] if innermost else stack) for m in markers):
                area_n[area] += count
    if not samples:
        print(f"\nprofile: no samples in {path}")
        return
    busy = samples / (PROFILE_RATE_HZ * elapsed_s)
    print(f"\nprofile: {samples} busy samples at {PROFILE_RATE_HZ} Hz (daemon busy ~{busy:.0%} of wall time)")
    print(f"  collapsed stacks: {path}")
    print("  % of busy samples, by area (inclusive):")
    for area, _, _ in PROFILE_AREAS:
        print(f"    {100 * area_n[area] / samples:5.1f}%  {area}")
    for title, counter in (("self", self_n), ("inclusive", total_n)):
        print(f"  top {top} functions by {title} time:")
        for name, n in counter.most_common(top):
            print(f"    {100 * n / samples:5.1f}%  {name}")


def _frame(frame: str) -> str:
    """'func (path/to/module.py:12)' → 'func (module.py)' so lines of one function merge."""
    name, _, where = frame.partition(" (")
    file = where.rsplit(":", 1)[0].rstrip(")")
    parts = Path(file).parts
    short = "/".join(parts[parts.index("tickvault") :]) if "tickvault" in parts else Path(file).name
    return f"{name} ({short})"


def _vs(rate: float, limit: float, name: str) -> str:
    """`123 rows/s (1.05 x kline limit)`; no ratio when the limit was not measured."""
    ratio = f"{rate / limit:.2f}" if limit else "-"
    return f"{rate:,.0f} rows/s ({ratio} x {name} limit)"


def print_results(n: int, w: Workload, rows: dict[str, list[Any]], r: dict[str, Any]) -> None:
    d: DaemonRun = r["daemon"]
    limit, kline_limit = r["limit"]["all"], r["limit"]["klines"]
    n_rows, n_klines, n_trades = sum(len(t) for t in rows.values()), len(w.kline_rows), len(w.trade_rows)
    steady_s = d.elapsed_s - d.startup_s
    e2e_rows = n_rows / steady_s
    kinds = ("kline", "fill", "order", "trade")
    store = r["store"]
    lines = [
        ("messages (klines / fills / orders / trades)",
         f"{n} ({' / '.join(str(len(w.payloads[k])) for k in kinds)})"),
        (f"rows stored ({', '.join(rows)})", f"{n_rows}"),
        ("decode only (hot path), all kinds", f"{r['decode']['all']:,.0f} msg/s"),
        ("decode only, klines / fills / orders / trades",
         " / ".join(f"{r['decode'][k]:,.0f}" for k in kinds) + " msg/s"),
        ("LIMIT: raw COPY of the same rows", f"{limit:,.0f} rows/s"),
        (f"limit, {' / '.join(rows)}", " / ".join(f"{r['limit'][t]:,.0f}" for t in rows) + " rows/s"),
    ]  # fmt: skip
    if "insert" in store:
        lines += [
            ("store path, new klines: text COPY straight in", _vs(store["insert"], kline_limit, "kline")),
            ("store path, stored keys: staging COPY + upsert", _vs(store["upsert"], kline_limit, "kline")),
        ]
    if n_trades:
        trade_limit = r["limit"]["trades"]
        lines += [
            (
                "store path, new trades: text COPY straight in",
                _vs(store["trade_insert"], trade_limit, "trade"),
            ),
            (
                "store path, stored trade keys: staging + upsert",
                _vs(store["trade_upsert"], trade_limit, "trade"),
            ),
        ]
    if "cryptofeed" in r:
        lines += [
            ("cryptofeed CandlesPostgres.write_batch", _vs(r["cryptofeed"], kline_limit, "kline")),
            ("SQLAlchemy ORM, commit per row (sample)", f"{r['orm']:,.0f} rows/s "
             f"({r['orm'] / kline_limit:.3f} x kline limit)"),
        ]  # fmt: skip
    lines += [
        ("publish", f"{r['publish']:,.0f} msg/s"),
        ("daemon startup (spawn → first read)", f"{d.startup_s:.1f}s"),
        ("END TO END, all rows, after first read",
         f"{e2e_rows:,.0f} rows/s = {e2e_rows / limit:.2f} x limit ({n / steady_s:,.0f} msg/s)"),
    ]  # fmt: skip
    if n_klines:
        lines.append(
            ("end to end, kline rows (over the same time)", _vs(n_klines / steady_s, kline_limit, "kline"))
        )
    if n_trades:
        lines.append(
            (
                "end to end, trade rows (over the same time)",
                _vs(n_trades / steady_s, r["limit"]["trades"], "trade"),
            )
        )
    lines.append(("end to end incl. startup", f"{n / d.elapsed_s:,.0f} msg/s in {d.elapsed_s:.1f}s"))
    if "cryptofeed" in r:
        lines.append(("end to end / cryptofeed backend", f"{e2e_rows / r['cryptofeed']:.2f} x"))
    lines += [
        ("daemon peak RSS, backlog of N (VmHWM)", f"{d.peak_rss_mib:,.0f} MiB"),
        ("daemon CPU (cores busy, of 2)", f"{d.cpu_s:.1f}s ({d.cpu_s / d.elapsed_s:.2f})"),
    ]
    for name, seconds in sorted(d.server_cpu_s.items()):
        lines.append((f"{name} CPU during end to end", f"{seconds:.1f}s ({seconds / d.elapsed_s:.2f})"))
    if d.steady is not None:
        lat = d.steady.latencies_s
        p50, p99 = steady.percentile(lat, 0.5), steady.percentile(lat, 0.99)
        lines += [
            ("STEADY RATE: publish → ack (≥ commit)",
             f"{d.steady.messages} messages at {d.steady.rate:,.0f} msg/s"),
            ("steady rate latency p50 / p99 / max",
             " / ".join(f"{1000 * v:,.0f}" for v in (p50, p99, lat[-1])) + " ms"),
            ("daemon peak RSS after the steady run", f"{d.steady.peak_rss_mib:,.0f} MiB"),
        ]  # fmt: skip
    width = max(len(k) for k, _ in lines)
    print("\nresults")
    for key, value in lines:
        print(f"  {key:<{width}}  {value}")
