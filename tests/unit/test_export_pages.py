"""The export's window-by-window reading: the blocks joined are every row once, in order,
whatever the density — a sparse stretch, a burst, more rows at one instant than a block —
and blocks stay near the asked size where the density is smooth."""

from __future__ import annotations

import datetime as dt

import pyarrow as pa
import pyarrow.compute as pc

from tickvault.export import pages

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def table(seconds: list[float]) -> pa.Table:
    times = [T0 + dt.timedelta(seconds=s) for s in seconds]
    return pa.table({"ts": pa.array(times, pa.timestamp("us", tz="UTC")), "n": list(range(len(times)))})


def reader(rows: pa.Table, calls: list[int]) -> pages.Read:
    async def read(a: dt.datetime, b: dt.datetime, limit: int | None) -> pa.Table:
        ts = rows.column("ts")
        found = rows.filter(pc.and_(pc.greater_equal(ts, a), pc.less(ts, b)))
        calls.append(found.num_rows)
        return found if limit is None else found.slice(0, limit)

    return read


async def blocks(rows: pa.Table, page_rows: int, limited: bool = True) -> list[pa.Table]:
    end = rows.column("ts")[rows.num_rows - 1].as_py() + dt.timedelta(microseconds=1)
    read = reader(rows, [])
    found = [b async for b, _ in pages.blocks(read, "ts", T0, end, limited, page_rows)]
    return found


async def test_every_row_once_in_order_through_bursts_and_ties() -> None:
    seconds = [float(i) for i in range(0, 2000, 50)]  # sparse
    seconds += [2000 + i / 1000 for i in range(3000)]  # a burst
    seconds += [2100.0] * 40  # more rows at one instant than a block holds
    seconds += [2200 + i for i in range(500)]  # steady
    rows = table(seconds)
    for limited in (True, False):
        got = await blocks(rows, page_rows=25, limited=limited)
        assert pa.concat_tables(got).equals(rows)
    got = await blocks(rows, page_rows=25)
    assert max(b.num_rows for b in got) <= 100  # the cap (2 x 25), doubled for the 40 tied rows


async def test_blocks_near_the_asked_size_where_density_is_smooth() -> None:
    rows = table([i * 0.5 for i in range(20_000)])
    got = await blocks(rows, page_rows=1000)
    sizes = [b.num_rows for b in got]
    assert sum(sizes) == 20_000 and max(sizes) <= 2000
    assert sum(1 for s in sizes if s >= 500) >= 10  # grown from a tiny first window to about 1000
