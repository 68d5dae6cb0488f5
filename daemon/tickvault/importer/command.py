"""The `tickvault import` command: arguments, the plan of files, the read → write loop with
its progress bar, and the closing counts.

Every file's format and series are worked out before anything is written, so a file the
command cannot place fails it at once. Files are then read in a thread of its own, up to
two batches ahead of the writes (parsing overlaps PostgreSQL's work). Exit 0 when every file was read
and written, bad lines included (they are counted and dead-lettered); 1, with one error
line, when a file cannot be read or the store fails — what was written by then stays and a
re-run adds nothing twice.

The progress bar (rich) goes to stderr, only when stderr is a terminal and not `--quiet`.
The counts go to stdout, one line (see load.py for what each means).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import queue
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from rich.progress import Progress

from tickvault.errors import ConfigError
from tickvault.importer import binance, jsonl, parquet
from tickvault.importer.chunk import Chunk
from tickvault.importer.files import FORMATS, expand, format_of, size_of
from tickvault.importer.load import Counts, Loader
from tickvault.output import progress_bar
from tickvault.query import count, positive_int
from tickvault.records import INTERVALS, KINDS
from tickvault.settings import Settings
from tickvault.store import Store
from tickvault.vault import Vault

BATCH_ROWS: Final = 50_000  # rows per Store.write: big batches, as COPY likes them
CHUNK_ROWS: Final = 10_000  # lines a reader parses per hand-over


@dataclass(frozen=True)
class _Planned:
    path: Path
    format: str  # "jsonl", "parquet" or "binance*"
    series: binance.Series | None  # Binance dumps only
    size: int  # files.size_of


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The `import` sub-parser's arguments."""
    parser.add_argument("paths", nargs="+", type=Path, metavar="PATH", help="files, or directories of them")
    parser.add_argument(
        "--format", choices=FORMATS, default="auto",
        help="what the files hold (default: auto, told by each file's name)",
    )  # fmt: skip
    parser.add_argument("--kind", choices=KINDS, help="JSON Lines: the kind of lines that carry no 'kind'")
    parser.add_argument(
        "--exchange", default="binance", help="Binance dumps: the exchange (default: binance)"
    )
    parser.add_argument("--symbol", help="Binance dumps: the symbol (default: from the file name)")
    parser.add_argument(
        "--interval", choices=INTERVALS, metavar="INTERVAL",
        help="Binance kline dumps: the interval (default: from the file name)",
    )  # fmt: skip
    parser.add_argument(
        "--only-missing", action="store_true",
        help="load only klines whose open time no stored candle of their series has (hot or cold)",
    )  # fmt: skip
    parser.add_argument(
        "--batch-rows", type=positive_int, default=BATCH_ROWS,
        help=f"rows per write (default: {BATCH_ROWS})",
    )  # fmt: skip
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def plan(args: argparse.Namespace) -> list[_Planned]:
    """Each file with its format and series. Raises ImportFailed or ConfigError."""
    out = []
    for path in expand(args.paths):
        fmt = format_of(path, args.format)
        series = None
        if fmt.startswith("binance"):
            series = binance.series_of(path, fmt, args.exchange, args.symbol, args.interval)
        out.append(_Planned(path, fmt, series, size_of(path)))
    return out


def chunks(files: list[_Planned], settings: Settings, args: argparse.Namespace) -> Iterator[Chunk]:
    """Every file's chunks, in order."""
    min_epoch_ms = settings.source.min_epoch_ms
    for f in files:
        if f.format == "jsonl":
            yield from jsonl.chunks(
                f.path, args.kind, CHUNK_ROWS, min_epoch_ms, settings.state.max_bytes,
                settings.source.max_message_bytes,
            )  # fmt: skip
        elif f.format == "parquet":
            yield from parquet.chunks(f.path, CHUNK_ROWS)
        else:
            assert f.series is not None
            yield from binance.chunks(f.path, f.series, CHUNK_ROWS, min_epoch_ms)


async def run(settings: Settings, args: argparse.Namespace) -> int:
    """Import the files; print the counts."""
    files = plan(args)
    started = time.perf_counter()
    async with Store(settings.postgres, writer=True) as store:
        current, found, head = await store.migrations_current()
        if not current:
            schema = settings.postgres.schema_name
            raise ConfigError(
                f"schema {schema} is at migration {found or 'none'}, expected {head}; run tickvault migrate"
            )
        if args.only_missing:
            no_cache = settings.model_copy(
                update={"state": settings.state.model_copy(update={"cache": False})}
            )
            async with Vault.connect(no_cache) as vault:
                counts = await _load(
                    Loader(store, args.batch_rows, vault.missing_ranges), files, settings, args
                )
        else:
            counts = await _load(Loader(store, args.batch_rows), files, settings, args)
    print(summary(counts, time.perf_counter() - started))
    return 0


async def _load(
    loader: Loader, files: list[_Planned], settings: Settings, args: argparse.Namespace
) -> Counts:
    """Read (in a thread of its own, up to two batches ahead) and write every chunk, showing
    progress."""
    loader.counts.files = len(files)
    parts = chunks(files, settings, args)
    quiet = args.quiet or not sys.stderr.isatty()
    with progress_bar(quiet) as progress, _logs_above(progress):
        task = progress.add_task("", total=sum(f.size for f in files) or 1, rows=0, rate=0)
        started, done, name = time.perf_counter(), 0, ""
        with _Reader(parts, max(2, 2 * args.batch_rows // CHUNK_ROWS)) as reader:
            while (chunk := await reader.next()) is not None:
                await loader.add(chunk)
                if chunk.name != name:  # a new file: the previous one was read to its end
                    done, name = 0, chunk.name
                elapsed_s = max(time.perf_counter() - started, 1e-9)
                rows = loader.counts.read
                progress.update(
                    task, advance=chunk.done - done, description=name, rows=rows, rate=rows / elapsed_s
                )
                done = chunk.done
        return await loader.finish()


class _Reader:
    """Runs the readers in a thread of its own, up to `ahead` chunks ahead of the writes, so
    parsing overlaps PostgreSQL's work. `next` hands out the chunks in order, then None; an
    error of the readers is raised there. Leaving the context stops the thread."""

    _END: Final = object()

    def __init__(self, parts: Iterator[Chunk], ahead: int) -> None:
        self._parts = parts
        self._queue: queue.Queue[object] = queue.Queue(ahead)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="tickvault-import-reader", daemon=True)

    def __enter__(self) -> _Reader:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        with contextlib.suppress(queue.Empty):
            while True:  # unblock a put
                self._queue.get_nowait()
        self._thread.join()
        self._queue.put_nowait(self._END)  # releases a `next` still waiting (after a cancel)

    def _run(self) -> None:
        try:
            for chunk in self._parts:
                if not self._put(chunk):
                    return
            self._put(self._END)
        except BaseException as exc:  # handed to the event loop's side, which raises it
            self._put(exc)

    def _put(self, item: object) -> bool:
        while not self._stop.is_set():
            with contextlib.suppress(queue.Full):
                self._queue.put(item, timeout=0.1)
                return True
        return False

    async def next(self) -> Chunk | None:
        item = await asyncio.to_thread(self._queue.get)
        if isinstance(item, BaseException):
            raise item
        return None if item is self._END else item  # type: ignore[return-value]


@contextlib.contextmanager
def _logs_above(progress: Progress) -> Iterator[None]:
    """While the bar shows, log lines to stderr print above it (through the stand-in for
    sys.stderr that rich puts in place) instead of through it."""
    if progress.disable or sys.stderr is sys.__stderr__:
        yield
        return
    handlers = [h for h in logging.getLogger().handlers if type(h) is logging.StreamHandler]
    moved: list[tuple[logging.StreamHandler[Any], Any]] = [
        (h, h.setStream(sys.stderr)) for h in handlers if h.stream is sys.__stderr__
    ]
    try:
        yield
    finally:
        for handler, stream in moved:
            handler.setStream(stream)


def summary(counts: Counts, elapsed_s: float) -> str:
    """`12 files, 525600 rows read: 525600 stored, 0 unchanged, 0 already present,
    0 dead-lettered (8.1 s, 64890 rows/s)` (one line)."""
    rate = counts.read / elapsed_s if elapsed_s > 0 else 0.0
    return (
        f"{count(counts.files, 'file')}, {count(counts.read, 'row')} read: {counts.stored} stored, "
        f"{counts.unchanged} unchanged, {counts.skipped} already present, "
        f"{counts.dead_lettered} dead-lettered ({elapsed_s:.1f} s, {rate:.0f} rows/s)"
    )
