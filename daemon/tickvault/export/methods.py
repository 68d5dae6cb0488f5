"""`Vault.export` and `Vault.export_table` (a mixin): a time table over a range, or an Arrow
result the caller already holds, to a CSV, JSON Lines, Parquet or Excel file.

`export` reads block by block (tickvault.export.pages) and writes each block in a thread
while the next is read, so at most two blocks are held at once; the file appears only
when complete (tickvault.export.writers).
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Awaitable, Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, TypeAlias

import pyarrow as pa

from tickvault.export import pages, tables
from tickvault.export.writers import FileWriter, format_of, write_all
from tickvault.reads import klines
from tickvault.reads.args import window
from tickvault.reads.columns import SPECS
from tickvault.reads.intervals import LENGTH_US, MONTH, ORIGIN_US, ceil, from_us, to_us
from tickvault.store import Store

Bound = dt.datetime | int | str | None
# called after each block is written: rows written so far, share of the range done (0 to 1)
Progress = Callable[[int, float], None]
ArrowData: TypeAlias = pa.Table | pa.RecordBatchReader | Iterable[pa.RecordBatch | pa.Table]


class Exports:
    """`Vault`'s exports; `_read` is Vault's read over both tiers (table, filters, start, end,
    limit, columns, floats)."""

    _store: Store
    _schema: str
    _read: Callable[..., Awaitable[pa.Table]]
    klines: Callable[..., Awaitable[pa.Table]]

    async def export(
        self,
        table: str,
        path: str | Path,
        format: str | None = None,
        start: Bound = None,
        end: Bound = None,
        *,
        exchange: str | None = None,
        symbol: str | None = None,
        symbols: Sequence[str] | None = None,
        interval: str | None = None,
        bot_id: str | None = None,
        account: str | None = None,
        asset: str | None = None,
        strategy: str | None = None,
        columns: Sequence[str] | str | None = None,
        progress: Progress | None = None,
    ) -> int:
        """Write the rows of a time table in [start, end) (default: all stored) to `path`,
        oldest first, over hot and cold; the number of rows written.

        `table`: klines, trades, fills, orders, order_events, balances, signals, or bot_state
        (the history of snapshots). Filters as the reads take them (each table takes those of
        its read; a filter it does not take is refused). klines with `exchange`, `symbol` (or
        `symbols`) and `interval` read as `klines()` does, resampling from a lower stored
        interval where needed; otherwise the stored rows matching the filters given.
        `format`: csv, jsonl, parquet or xlsx (default: from the suffix of `path`).
        `columns`: only these, in this order. `progress(rows, done)` is called after each block.

        The rows equal one read of the whole range, in the same order, but are read in blocks
        of about 50,000 rows, so memory stays that of a block. The file appears only once
        complete (written as `path.partial`, then renamed); an error or cancellation leaves
        neither. Raises ConfigError (bad table, filter, column, window or format; file not
        writable; xlsx without the excel extra), ColdFileError, StoreError."""
        given = {"exchange": exchange, "symbol": symbol, "symbols": symbols, "interval": interval,
                 "bot_id": bot_id, "account": account, "asset": asset, "strategy": strategy}  # fmt: skip
        p = tables.plan(table, given, columns)
        lower, upper = window(start, end)
        fmt = format_of(path, format)
        read, limited, bound_filters = await self._export_reader(p)
        found = await self._store.run(
            lambda conn: tables.bounds(conn, self._schema, p, bound_filters, lower, upper)
        )
        if found is not None and not limited:  # resampled: from the bucket of the first candle
            first = from_us(floor(to_us(found[0]), p.filters["interval"]))
            found = (max(first, lower) if lower else first, found[1])
        writer = FileWriter(path, fmt, sheet=table)
        try:
            if found is not None:
                if p.table in pages.WHOLE_TABLES:
                    blocks = pages.whole(read, found[0], found[1])
                else:
                    blocks = pages.blocks(read, p.time_column, found[0], found[1], limited)
                await _write_blocks(writer, blocks, p, found, progress)
            await asyncio.to_thread(writer.close, p.schema)
        except BaseException:
            writer.abort()
            raise
        return writer.rows

    async def _export_reader(self, p: tables.Plan) -> tuple[pages.Read, bool, dict[str, Any]]:
        """The window read of an export, whether it honours a limit, and the filters that
        bound its rows in time."""
        read_columns = tuple(dict.fromkeys((*p.columns, p.time_column)))
        if p.table == "bot_state":

            async def history(a: dt.datetime, b: dt.datetime, limit: int | None) -> pa.Table:
                return await _whole(
                    self._store.run(lambda conn: tables.bot_state_rows(conn, self._schema, p, a, b, limit))
                )

            return history, True, p.filters
        f = p.filters
        if p.table == "klines" and {"exchange", "symbol", "interval"} <= f.keys():
            names = f["symbol"] if isinstance(f["symbol"], list) else [f["symbol"]]
            plan_ = await self._store.run(
                lambda conn: klines.plan(conn, self._schema, f["exchange"], names, f["interval"])
            )
            if any(source != f["interval"] for source in plan_.values()):  # resampled

                async def resampled(a: dt.datetime, b: dt.datetime, limit: int | None) -> pa.Table:
                    # a bucket belongs to the window its open time is in; none opens in a short one
                    lo, up = (from_us(ceil(to_us(x), f["interval"])) for x in (a, b))
                    if lo >= up:
                        return SPECS["klines"].schema(read_columns).empty_table()
                    at = {"start": lo, "end": up, "symbols": names, "columns": read_columns}
                    return await _whole(self.klines(f["exchange"], interval=f["interval"], **at))

                return resampled, False, {k: v for k, v in f.items() if k != "interval"}

        async def rows(a: dt.datetime, b: dt.datetime, limit: int | None) -> pa.Table:
            return await _whole(self._read(p.table, f, a, b, limit, read_columns, False))

        return rows, True, f

    async def export_table(self, data: ArrowData, path: str | Path, format: str | None = None) -> int:
        """Write an Arrow result already in hand — any read's `pyarrow.Table`, a
        `pyarrow.RecordBatchReader` (e.g. `dataset.scanner().to_reader()`, streamed batch by
        batch), or an iterable of record batches or tables of one schema — to `path` in the
        formats `export` writes (`format` default: from the suffix); the number of rows.
        Written in a thread, as `path.partial` then renamed. Raises ConfigError."""
        fmt = format_of(path, format)
        schema = getattr(data, "schema", None)
        if isinstance(data, pa.Table):
            data = data.to_batches(max_chunksize=pages.PAGE_ROWS)
        return await asyncio.to_thread(write_all, data, path, fmt, schema)


async def _whole(read: Awaitable[pa.Table]) -> pa.Table:
    """`read`, run to its end even when the export is cancelled (Ctrl-C), which then waits for
    it: cancelling asyncpg's COPY OUT mid-stream can leave its pool broken
    (MagicStack/asyncpg#240), and a read left running would outlive the vault's connections.
    One window's read is short."""
    task = asyncio.ensure_future(read)
    task.add_done_callback(_retrieve)
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        await asyncio.wait([task])
        raise


def _retrieve(task: asyncio.Future[Any]) -> None:
    """Take the outcome of a read whose export was cancelled (nobody awaits it)."""
    if not task.cancelled():
        task.exception()


async def _write_blocks(
    writer: FileWriter,
    blocks: Any,
    p: tables.Plan,
    found: tuple[dt.datetime, dt.datetime],
    progress: Progress | None,
) -> None:
    """Write each block in a thread while the next one is read."""
    first, last = found
    span_s = max((last - first).total_seconds(), 1e-6)
    pending: asyncio.Future[None] | None = None
    pending_done = first  # the instant up to which the block being written holds the rows
    try:
        async for block, done in blocks:
            if pending is not None:
                await pending
                _report(progress, writer.rows, (pending_done - first).total_seconds() / span_s)
            block = block.select(list(p.columns))
            pending, pending_done = asyncio.ensure_future(asyncio.to_thread(writer.write, block)), done
        if pending is not None:
            await pending
            _report(progress, writer.rows, 1.0)
    except BaseException:
        if pending is not None and not pending.done():
            await asyncio.wait([pending])  # the thread still writes: let it finish before the abort
        raise


def floor(us: int, interval: str) -> int:
    """The last open time of `interval` at or before `us` (reads.intervals' grid)."""
    if interval == MONTH:
        return to_us(from_us(us).replace(day=1, hour=0, minute=0, second=0, microsecond=0))
    length, origin = LENGTH_US[interval], ORIGIN_US.get(interval, 0)
    return origin + (us - origin) // length * length


def _report(progress: Progress | None, rows: int, done: float) -> None:
    if progress is not None:
        progress(rows, min(1.0, done))
