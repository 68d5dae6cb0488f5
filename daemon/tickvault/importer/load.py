"""The loader: chunks of parsed lines → `Store.write` in big batches per kind, bad lines →
dead letters, and the counts. With `--only-missing`, klines whose open time a stored candle
of their series already has (hot or cold, `Vault.missing_ranges`) are dropped before the
write: only the holes are loaded.

Counts: `read` lines or rows (a header row not included); `stored` rows the writers inserted
or changed; `unchanged` valid rows that changed nothing (stored already as they are, a
lower-ranked copy of a key, or repeated within the import); `skipped` klines already present
(`--only-missing`); `dead_lettered` bad lines, and rows the database refused, now in
dead_letters with source "import", the file name as stream and the line number (Parquet:
"row N") as entry id. A bad line already dead-lettered by an earlier import is not added
twice, and is still counted.
"""

from __future__ import annotations

import bisect
import datetime as dt
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from itertools import repeat
from operator import attrgetter
from typing import Final

from tickvault.importer.chunk import SOURCE, Chunk
from tickvault.reads.gaps import Gap
from tickvault.records import RECORD_TYPES
from tickvault.rows import Item, Row
from tickvault.store import Store
from tickvault.store.dead_letters import DeadLetter

# the table whose written rows count as stored, per kind (else the kind's own table)
COUNTED_TABLE: Final = {"order": "order_events", "bot_state": "bot_state_history"}
_KIND: Final = attrgetter("KIND")
MissingRanges = Callable[[str, str, str, dt.datetime, dt.datetime], Awaitable[list[Gap]]]


@dataclass
class Counts:
    files: int = 0
    read: int = 0
    stored: int = 0
    unchanged: int = 0
    skipped: int = 0
    dead_lettered: int = 0


@dataclass
class _Pending:
    """Items of one kind waiting for their batch, with their versions and where they came from."""

    items: list[Item] = field(default_factory=list)
    versions: list[str] = field(default_factory=list)
    origins: list[tuple[str, str]] = field(default_factory=list)  # (file name, entry id)


class Loader:
    """Writes what readers parsed. `add` each chunk, then `finish`; nothing is written after
    an error (a write error propagates, as StoreError). `missing_ranges`, when given, makes
    it load only klines in the holes of their series."""

    def __init__(self, store: Store, batch_rows: int, missing_ranges: MissingRanges | None = None) -> None:
        self.counts = Counts()
        self._store = store
        self._batch_rows = batch_rows
        self._missing_ranges = missing_ranges
        self._pending: dict[str, _Pending] = {}

    async def add(self, chunk: Chunk) -> None:
        """Queue the chunk's items, write every kind's batch that is full, and write its bad
        lines to dead letters."""
        self.counts.read += chunk.read
        kinds = set(map(_KIND, chunk.items))
        if len(kinds) == 1:  # a chunk of one kind (a dump, most files) in bulk: no Python per row
            pending = self._pending.setdefault(kinds.pop(), _Pending())
            pending.items += chunk.items
            pending.versions += chunk.versions
            pending.origins += zip(repeat(chunk.name), chunk.entries)
        else:
            for item, version, entry in zip(chunk.items, chunk.versions, chunk.entries, strict=True):
                pending = self._pending.setdefault(item.KIND, _Pending())
                pending.items.append(item)
                pending.versions.append(version)
                pending.origins.append((chunk.name, entry))
        for kind, pending in self._pending.items():
            if len(pending.items) >= self._batch_rows:
                await self._write(kind, pending)
        await self._dead_letters(chunk.bad)

    async def finish(self) -> Counts:
        """Write what is still queued; the counts."""
        for kind, pending in self._pending.items():
            await self._write(kind, pending)
        return self.counts

    async def _write(self, kind: str, pending: _Pending) -> None:
        items, versions, origins = pending.items, pending.versions, pending.origins
        pending.items, pending.versions, pending.origins = [], [], []
        if kind == "kline" and self._missing_ranges is not None:
            keep = await self._in_holes(items)  # type: ignore[arg-type]
            self.counts.skipped += len(items) - len(keep)
            items, versions, origins = (
                [items[i] for i in keep],
                [versions[i] for i in keep],
                [origins[i] for i in keep],
            )
        if not items:
            return
        result = await self._store.write(kind, items, versions)
        table = COUNTED_TABLE.get(kind) or RECORD_TYPES[kind].TABLE
        stored = result.written.get(table, 0)
        self.counts.stored += stored
        self.counts.unchanged += len(items) - len(result.rejected) - stored
        await self._dead_letters([
            DeadLetter(SOURCE, origins[i][0], origins[i][1], kind, "rejected", reason, _payload(items[i]))
            for i, reason in result.rejected
        ])  # fmt: skip

    async def _in_holes(self, rows: Sequence[Row]) -> list[int]:
        """The indexes of the klines whose open time lies in a hole of their series."""
        assert self._missing_ranges is not None
        by_series: dict[tuple[str, str, str], list[int]] = {}
        for i, row in enumerate(rows):
            exchange, symbol, interval, _ = row.text.split("\t", 3)
            by_series.setdefault((exchange, symbol, interval), []).append(i)
        keep: list[int] = []
        for (exchange, symbol, interval), indexes in by_series.items():
            times = [rows[i].time for i in indexes]
            end = max(times) + dt.timedelta(microseconds=1)
            gaps = await self._missing_ranges(exchange, symbol, interval, min(times), end)
            starts = [g.start for g in gaps]
            keep += [i for i in indexes if _inside(rows[i].time, gaps, starts)]
        return sorted(keep)

    async def _dead_letters(self, letters: list[DeadLetter]) -> None:
        if letters:
            await self._store.write_dead_letters(letters)
            self.counts.dead_lettered += len(letters)


def _inside(time: dt.datetime, gaps: Sequence[Gap], starts: Sequence[dt.datetime]) -> bool:
    """Whether `time` lies in one of `gaps` (sorted, disjoint; `starts` their starts)."""
    i = bisect.bisect_right(starts, time) - 1
    return i >= 0 and time < gaps[i].end


def _payload(item: Item) -> bytes:
    """A row the database refused, for its dead letter: its COPY text (orders: their JSON)."""
    return item.text.encode() if isinstance(item, Row) else item.model_dump_json().encode()
