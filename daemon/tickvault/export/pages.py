"""An export's rows as blocks of about PAGE_ROWS rows, oldest first, read window by window.

Each block is one read of a time window [a, b) over both tiers (tickvault.reads: one row per
key under the roll's rules, in time order). Every time table's key holds its time column,
so a key lies in exactly one window (orders, whose rows move in time as they are updated,
are read whole instead: `whole`), and the blocks joined are the rows of one read of the
whole range, in the same order — without ever holding more than a window's rows.

Windows adapt: the next one is sized from the rows per second of the last (at most twice as
long, at least a sixteenth), so a block holds about PAGE_ROWS rows. The first window is a
hundred-thousandth of the range, so a dense range starts small. A read that takes a limit
(`limited`) asks for at most 2 * PAGE_ROWS rows; when a window holds more, the rows before
its last instant are a block and the next window starts at that instant (as `tickvault
query` pages), so no row is skipped or repeated. Memory is then that of one window's rows:
bounded while the rows per second change by less than about 16 times from one window to the next.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Final

import pyarrow as pa
import pyarrow.compute as pc

PAGE_ROWS: Final = 50_000  # rows per block, as `tickvault query` pages
FIRST_WINDOW_PARTS: Final = 100_000
MIN_WINDOW: Final = dt.timedelta(microseconds=1)
# rows in [a, b), oldest first; with a limit, only the first `limit` of them
Read = Callable[[dt.datetime, dt.datetime, int | None], Awaitable[pa.Table]]


def _next_step(step: dt.timedelta, rows: int, page_rows: int) -> dt.timedelta:
    factor = min(2.0, max(1 / 16, page_rows / max(rows, 1)))
    return max(step * factor, MIN_WINDOW)


# tables whose rows change their time in place (an order's updated_at), so that a key is not
# bound to one window: read whole, in one statement (one snapshot)
WHOLE_TABLES: Final = frozenset({"orders"})


async def whole(
    read: Read, start: dt.datetime, end: dt.datetime
) -> AsyncIterator[tuple[pa.Table, dt.datetime]]:
    """Every row in [start, end) in one read, as one block. For WHOLE_TABLES: read in
    windows, an order updated during the export could be written twice (in an earlier window
    and again in a later one) or not at all (moved past the end); one statement sees each
    order once, as it was at that moment. Memory is that of the whole range's rows."""
    yield await read(start, end, None), end


async def blocks(
    read: Read,
    time_column: str,
    start: dt.datetime,
    end: dt.datetime,
    limited: bool = True,
    page_rows: int | None = None,
) -> AsyncIterator[tuple[pa.Table, dt.datetime]]:
    """Every row in [start, end) as (block, instant up to which rows are done), oldest first.
    `limited`: whether `read` honours its limit (a read that may return fewer rows than
    the limit while more exist, e.g. resampled klines, must say False)."""
    page_rows = page_rows or PAGE_ROWS
    step = max((end - start) / FIRST_WINDOW_PARTS, MIN_WINDOW)
    cap = 2 * page_rows
    a = start
    while a < end:
        b = min(a + step, end)
        rows = await read(a, b, cap if limited else None)
        if not limited or rows.num_rows < cap:
            yield rows, b
            a, step = b, _next_step(b - a, rows.num_rows, page_rows)
            continue
        times = rows.column(time_column)
        last = times[rows.num_rows - 1]
        before = rows.filter(pc.less(times, last))
        step = _next_step(b - a, rows.num_rows, page_rows)
        if before.num_rows == 0:  # one instant fills the limit: read it with a bigger one
            cap *= 2
            continue
        a = last.as_py()
        yield before, a
