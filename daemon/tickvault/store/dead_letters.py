"""The dead_letters table: messages that could not be stored, with the reason and raw bytes."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

import asyncpg

from tickvault.store.db import affected


@dataclass(frozen=True, slots=True)
class DeadLetter:
    source: str  # "redis" or "kafka"
    stream: str  # stream or topic
    entry_id: str  # stream entry id, or "partition:offset"
    kind: str | None
    category: str  # short label for metrics, e.g. invalid_json
    reason: str
    payload: bytes


@dataclass(frozen=True, slots=True)
class StoredDeadLetter:
    id: int
    received_at: dt.datetime
    letter: DeadLetter
    replayed_at: dt.datetime | None


def _clean(text: str) -> str:
    return text.replace("\x00", "\\x00")


async def insert(conn: asyncpg.Connection, schema: str, letters: Sequence[DeadLetter]) -> int:
    """Insert letters; a redelivered entry already recorded is skipped. Returns rows added."""
    if not letters:
        return 0
    columns = list(
        zip(
            *[
                (
                    d.source,
                    _clean(d.stream),
                    _clean(d.entry_id),
                    d.kind,
                    d.category,
                    _clean(d.reason),
                    d.payload,
                )
                for d in letters
            ],
            strict=True,
        )
    )
    status = await conn.execute(
        f"INSERT INTO {schema}.dead_letters (source, stream, entry_id, kind, category, reason, payload) "  # noqa: S608
        "SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], "
        "$7::bytea[]) ON CONFLICT (source, stream, entry_id) DO NOTHING",
        *columns,
    )
    return affected(status)


async def fetch(
    conn: asyncpg.Connection,
    schema: str,
    *,
    ids: Sequence[int] = (),
    include_replayed: bool = False,
    limit: int = 100,
) -> list[StoredDeadLetter]:
    columns = "id, received_at, source, stream, entry_id, kind, category, reason, payload, replayed_at"
    rows = await conn.fetch(
        f"SELECT {columns} FROM {schema}.dead_letters "  # noqa: S608 - validated identifier
        "WHERE (cardinality($1::bigint[]) = 0 OR id = ANY($1)) AND ($2 OR replayed_at IS NULL) "
        "ORDER BY id LIMIT $3",
        list(ids),
        include_replayed,
        limit,
    )
    return [
        StoredDeadLetter(
            r["id"],
            r["received_at"],
            DeadLetter(
                r["source"], r["stream"], r["entry_id"], r["kind"], r["category"], r["reason"], r["payload"]
            ),
            r["replayed_at"],
        )
        for r in rows
    ]


async def mark_replayed(conn: asyncpg.Connection, schema: str, ids: Sequence[int]) -> None:
    await conn.execute(
        f"UPDATE {schema}.dead_letters SET replayed_at = now() WHERE id = ANY($1)",  # noqa: S608
        list(ids),
    )
