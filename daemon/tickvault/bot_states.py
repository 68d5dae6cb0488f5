"""The bot-state methods of `Vault` (a mixin): the newest snapshot from the Redis cache or
PostgreSQL, every bot's newest, the history, and `save_bot_state`; see tickvault.state for
the cache and its compare-and-set."""

from __future__ import annotations

import contextlib
import datetime as dt
import time
from collections.abc import Sequence
from typing import Any

from tickvault import metrics
from tickvault.codecs.native import to_record
from tickvault.errors import CacheUnavailable, RecordError
from tickvault.reads.args import limit_of, window
from tickvault.records import MAX_STATE_BYTES, BotState
from tickvault.rows import to_item
from tickvault.settings import Settings
from tickvault.state import Snapshot, StateCache, bot_state, latest
from tickvault.store import Store, history


class BotStates:
    """`Vault`'s bot-state methods; Vault holds the store, the settings and the cache."""

    _store: Store
    _schema: str
    _settings: Settings | None
    _cache: StateCache | None

    async def load_bot_state(self, bot_id: str) -> BotState | None:
        """The newest state snapshot of a bot, or None if it never sent one.

        From the Redis cache; on a miss from PostgreSQL, which then refills the key (by the
        cache's compare-and-set, so a newer snapshot written meanwhile stays). While Redis is
        down or slow (state.redis_timeout_s) PostgreSQL answers alone. Either way the record
        is the same: numbers in the state are canonical Decimals or ints."""
        missed = False
        if self._cache is not None:
            try:
                cached = await self._cache.get(bot_id)
            except CacheUnavailable:
                cached = None
            else:
                missed = cached is None
            if cached is not None:
                return cached
        rows = await latest(self._store, [bot_id])
        if not rows:
            return None
        if missed:
            await self._cache_put(rows)
        return rows[0].record()

    async def _cache_put(self, rows: Sequence[Snapshot]) -> None:
        if self._cache is not None:
            with contextlib.suppress(CacheUnavailable):
                metrics.STATE_CACHE_REFILLED.inc(await self._cache.put(rows, "refill"))

    async def save_bot_state(
        self,
        bot_id: str,
        state: dict[str, Any],
        ts: dt.datetime | int | str | None = None,
        seq: int | None = None,
    ) -> bool:
        """Store a bot's state snapshot as the daemon stores one from a stream: the same
        validation (records.BotState) and writer (latest row by (ts, seq, version), history
        row, one transaction), then the Redis cache's compare-and-set. `ts` defaults to now
        (aware datetime, epoch ms or ISO-8601 with an offset); `seq` is an optional integer
        >= 0 ordering snapshots of equal ts. Numbers in `state` may be int, Decimal or finite
        float. Returns True when the snapshot is now the bot's latest, False when a newer one
        was already stored (it is still kept in the history).

        Raises RecordError with the reason when the state is not a JSON object, holds a
        non-finite number or a value that is not JSON, exceeds state.max_bytes or
        MAX_STATE_DEPTH, or when bot_id, ts or seq are invalid or PostgreSQL refuses a value
        (e.g. a NUL character); StoreError when PostgreSQL cannot be reached. Redis being
        down does not fail the write: the cache is refilled on the next read or by the daemon."""
        when = dt.datetime.now(dt.UTC) if ts is None else ts
        message = {"bot_id": bot_id, "ts": when, "seq": seq, "state": state}
        limits = (0, MAX_STATE_BYTES) if self._settings is None else (
            self._settings.source.min_epoch_ms, self._settings.state.max_bytes
        )  # fmt: skip
        if not isinstance(state, dict):
            raise RecordError(f"invalid bot_state: state must be a JSON object, not {type(state).__name__}")
        record = to_record(message, "bot_state", *limits)
        version = f"{time.time_ns() // 1_000_000}\t0"  # its place in publish order: now
        result = await self._store.write("bot_state", [to_item(record)], [version])
        if result.rejected:
            raise RecordError(f"invalid bot_state: {result.rejected[0][1]}", "db_rejected")
        rows = [Snapshot(*row) for row in result.latest]
        if rows and self._cache is not None:
            with contextlib.suppress(CacheUnavailable):
                await self._cache.put(rows)
        return bool(rows)

    async def bot_states(self, bot_id: str | None = None) -> list[BotState]:
        """The newest snapshot of every bot (or of one), ordered by bot_id, from PostgreSQL."""
        rows = await self._store.fetch(
            f"SELECT bot_id, ts, seq, state::text AS state FROM {self._schema}.bot_state "  # noqa: S608 - identifiers are ours
            "WHERE $1::text IS NULL OR bot_id = $1 ORDER BY bot_id",
            bot_id,
        )
        return [bot_state(*row) for row in rows]

    async def bot_state_history(
        self,
        bot_id: str,
        start: dt.datetime | int | str | None = None,
        end: dt.datetime | int | str | None = None,
        limit: int | None = None,
    ) -> list[BotState]:
        """Every distinct snapshot of a bot with ts in [start, end) still in the history
        (state.history_retention), oldest first; with `limit` and no `start`, the latest
        `limit`. Raises ConfigError for a bad window or limit."""
        lower, upper = window(start, end)
        most = None if limit is None else limit_of(limit)
        args = (self._schema, bot_id, lower, upper, most)
        rows = await self._store.run(lambda conn: history.read(conn, *args))
        return [bot_state(*row) for row in rows]
