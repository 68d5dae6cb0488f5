"""JSON Lines in the native message format: one message per line, decoded and validated by
the daemon's own codec (`codecs.native`: its fast path for klines and fills, the models for
the rest). A line without "kind" takes `--kind`; without either it is dead-lettered."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

from tickvault.codecs import native
from tickvault.errors import RecordError
from tickvault.importer.chunk import Chunk
from tickvault.importer.files import lines, size_of
from tickvault.records import MAX_STATE_BYTES, RECORD_TYPES
from tickvault.settings import MAX_MESSAGE_BYTES
from tickvault.timestamps import MIN_EPOCH_MS


def chunks(
    path: Path,
    kind: str | None,
    chunk_rows: int,
    min_epoch_ms: int = MIN_EPOCH_MS,
    max_state_bytes: int = MAX_STATE_BYTES,
    max_message_bytes: int = MAX_MESSAGE_BYTES,
) -> Iterator[Chunk]:
    """The file's messages in chunks of at most `chunk_rows` lines, version "0<TAB>line
    number". A line longer than `max_message_bytes` (source.max_message_bytes, as for the
    daemon's sources) is a dead letter "too_large" holding its first max_message_bytes bytes;
    it is never read whole. Raises ImportFailed (files.lines) when it cannot be read."""
    decode = native.codec(min_epoch_ms, max_state_bytes)
    chunk, done = Chunk(path.name), 0
    for number, raw in lines(path, max_message_bytes):
        done += len(raw) + 1
        entry = str(number)
        try:
            if len(raw) > max_message_bytes:
                raise RecordError(
                    f"line of more than {max_message_bytes} bytes exceeds the {max_message_bytes}-byte "
                    "limit (source.max_message_bytes)",
                    "too_large",
                )
            chunk.add(decode(raw, kind), f"0\t{number}", entry)
        except RecordError as exc:
            chunk.reject(entry, _kind_of(raw[:max_message_bytes], kind), exc, raw[:max_message_bytes])
        if chunk.read >= chunk_rows:
            chunk.done = done
            yield chunk
            chunk = Chunk(path.name)
    chunk.done = size_of(path)
    yield chunk


def _kind_of(raw: bytes, default: str | None) -> str | None:
    """The kind a bad line names, for its dead letter (None when it names none we know)."""
    try:
        kind = json.loads(raw).get("kind", default)
    except (ValueError, AttributeError, RecursionError):
        return default
    return kind if isinstance(kind, str) and kind in RECORD_TYPES else default
