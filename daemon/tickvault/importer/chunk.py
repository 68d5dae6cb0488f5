"""What a reader hands the loader: the parsed lines of one file, a chunk at a time."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

from tickvault.errors import RecordError
from tickvault.rows import Item
from tickvault.store.dead_letters import DeadLetter

SOURCE: Final = "import"  # the dead letters' source


@dataclass
class Chunk:
    """Up to a batch of consecutive lines (or rows) of the file `name`: the valid ones as
    `items`, each with its version (COPY text "ms<TAB>seq") and its entry id (the line
    number, "row N" for Parquet); the bad ones as dead letters. `read` counts both; `done`
    is how much of the file's `files.size_of` has been read by the end of the chunk."""

    name: str
    items: list[Item] = field(default_factory=list)
    versions: list[str] = field(default_factory=list)
    entries: list[str] = field(default_factory=list)
    bad: list[DeadLetter] = field(default_factory=list)
    read: int = 0
    done: int = 0

    def add(self, item: Item, version: str, entry: str) -> None:
        self.items.append(item)
        self.versions.append(version)
        self.entries.append(entry)
        self.read += 1

    def reject(self, entry: str, kind: str | None, error: RecordError, payload: bytes) -> None:
        self.bad.append(DeadLetter(SOURCE, self.name, entry, kind, error.category, error.reason, payload))
        self.read += 1
