"""The Redis cache of each bot's latest state. PostgreSQL stays the source of truth: the cache
is written only after PostgreSQL committed, and anything it lacks or lost is refilled from it.

Key `<state.key_prefix>bot_state:<bot_id>` (default `tickvault.bot_state:grid-btc-1`), a hash:
- `rank`: the snapshot's place in the bot_state writer's order (store/writers.py: ts, seq,
  version, md5 of the state) as fixed-width digits, so that comparing two ranks as strings
  compares the snapshots as PostgreSQL does;
- `ts`: epoch microseconds; `seq`: its digits, "" when the snapshot had none;
- `state`: the state's JSON as PostgreSQL's jsonb prints it, numbers exactly as stored.

Every write is one server-side compare-and-set (CAS_SCRIPT, by EVALSHA): a key is replaced
only by a snapshot of higher rank, so an older snapshot never overwrites a newer one,
whichever daemon or bot writes first.

Failures: `StateCache` methods raise CacheUnavailable on any Redis error, and after one the
cache does not try Redis again for `state.retry_after_s`, so readers fall back to PostgreSQL
at once. `CacheKeeper` (the daemon's side) never raises: it remembers the bots whose write
failed and refills them from PostgreSQL later, as it refills every bot at start and after
Redis restarts.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from decimal import Decimal
from typing import Any, Final, NamedTuple, TypeVar

from redis.exceptions import RedisError

from tickvault import metrics
from tickvault.decimals import canonical
from tickvault.errors import CacheUnavailable, StoreError
from tickvault.records import BotState
from tickvault.settings import RedisSettings, StateSettings
from tickvault.sources.redis_streams import connect
from tickvault.store import Store
from tickvault.store.writers import LATEST_COLUMNS

log = logging.getLogger(__name__)
T = TypeVar("T")
EPOCH: Final = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
CHUNK_KEYS: Final = 500  # snapshots per script call: one round trip, Redis busy ~1 ms
MAX_DIRTY: Final = 100_000  # bots remembered for a refill; beyond it, every bot is refilled
# KEYS: one per snapshot; ARGV: rank, ts, seq, state per snapshot. Returns how many it wrote.
CAS_SCRIPT: Final = """
local written = 0
for i, key in ipairs(KEYS) do
  local a = (i - 1) * 4
  local current = redis.call('HGET', key, 'rank')
  if (not current) or current < ARGV[a + 1] then
    redis.call('HSET', key, 'rank', ARGV[a + 1], 'ts', ARGV[a + 2], 'seq', ARGV[a + 3], 'state', ARGV[a + 4])
    written = written + 1
  end
end
return written
"""


def _json_number(text: str) -> Decimal:
    return canonical(Decimal(text))


def bot_state(bot_id: str, ts: dt.datetime, seq: int | None, state: str) -> BotState:
    """A stored snapshot as a record: `state` is jsonb text, its numbers become canonical
    Decimals (integers stay int). The one constructor of both read paths, Redis and PostgreSQL."""
    parsed = json.loads(state, parse_float=_json_number)
    return BotState.model_construct(bot_id=bot_id, ts=ts, seq=seq, state=parsed)


def _us(ts: dt.datetime) -> int:
    return (ts - EPOCH) // dt.timedelta(microseconds=1)


class Snapshot(NamedTuple):
    """A bot_state row as `writers.LATEST_COLUMNS` selects it: what the cache holds."""

    bot_id: str
    ts: dt.datetime
    seq: int | None
    state: str  # jsonb text
    version_ms: int
    version_seq: int
    state_md5: str  # hex

    @property
    def rank(self) -> str:
        """(ts µs, seq + 1, version_ms, version_seq, md5) as 19+20+19+19+39 digits."""
        seq = 0 if self.seq is None else self.seq + 1
        md5 = int(self.state_md5, 16)
        return f"{_us(self.ts):019d}{seq:020d}{self.version_ms:019d}{self.version_seq:019d}{md5:039d}"

    def record(self) -> BotState:
        return bot_state(self.bot_id, self.ts, self.seq, self.state)


class StateCache:
    """The cache on the Redis server of `redis.url`. Async context manager; closing twice is
    harmless. Raises CacheUnavailable as the module docstring says."""

    def __init__(self, redis: RedisSettings, settings: StateSettings) -> None:
        self.settings = settings
        self._prefix = settings.key_prefix + "bot_state:"
        self._redis = connect(redis, settings.redis_timeout_s)
        self._cas = self._redis.register_script(CAS_SCRIPT)
        self._resting_until_s = 0.0  # monotonic: no Redis call before it
        self._failed = False

    async def __aenter__(self) -> StateCache:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self._redis.aclose()

    def key(self, bot_id: str) -> str:
        return self._prefix + bot_id

    async def _call(self, operation: str, call: Callable[[], Awaitable[T]]) -> T:
        """`await call()`, a Redis error becoming CacheUnavailable (counted, logged once per
        outage); while resting after a failure, CacheUnavailable without trying."""
        if time.monotonic() < self._resting_until_s:
            raise CacheUnavailable("redis bot-state cache unavailable (resting after a failure)")
        try:
            result = await call()
        except (RedisError, OSError) as exc:
            metrics.STATE_CACHE_FAILURES.labels(operation).inc()
            self._resting_until_s = time.monotonic() + self.settings.retry_after_s
            if not self._failed:  # the first failure of an outage; its end is logged too
                log.warning(
                    "redis bot-state cache unavailable on %s (%s); PostgreSQL serves reads, "
                    "retrying in %.0fs",
                    operation, type(exc).__name__, self.settings.retry_after_s,
                )  # fmt: skip
            self._failed = True
            raise CacheUnavailable(f"redis bot-state cache unavailable ({type(exc).__name__})") from None
        if self._failed:
            self._failed = False
            log.info("redis bot-state cache available again")
        return result

    async def get(self, bot_id: str) -> BotState | None:
        """The cached snapshot of a bot; None when the key is missing (or incomplete)."""
        key = self.key(bot_id)
        ts, seq, state = await self._call("read", lambda: self._redis.hmget(key, "ts", "seq", "state"))
        if ts is None or seq is None or state is None:
            return None
        when = EPOCH + dt.timedelta(microseconds=int(ts))
        text = state.decode() if isinstance(state, bytes) else state
        return bot_state(bot_id, when, int(seq) if seq else None, text)

    async def put(self, snapshots: Sequence[Snapshot], operation: str = "write") -> int:
        """Compare-and-set each snapshot; returns how many replaced an older (or no) entry."""
        written = 0
        for start in range(0, len(snapshots), CHUNK_KEYS):
            chunk = snapshots[start : start + CHUNK_KEYS]
            keys = [self.key(s.bot_id) for s in chunk]
            args: list[str] = []
            for s in chunk:
                args += [s.rank, str(_us(s.ts)), "" if s.seq is None else str(s.seq), s.state]
            applied = int(await self._call(operation, lambda k=keys, a=args: self._cas(keys=k, args=a)))  # type: ignore[misc]
            metrics.STATE_CACHE_WRITES.labels("applied").inc(applied)
            metrics.STATE_CACHE_WRITES.labels("stale").inc(len(chunk) - applied)
            written += applied
        return written

    async def server_id(self) -> str:
        """The Redis server's run id: it changes when the server restarts."""
        info: dict[str, Any] = await self._call("refill", lambda: self._redis.info("server"))
        return str(info.get("run_id", ""))


async def latest(
    store: Store, bot_ids: Sequence[str] | None = None, after: str = "", limit: int = 1000
) -> list[Snapshot]:
    """Rows of bot_state as snapshots: of `bot_ids`, or the first `limit` bots after `after`
    in bot_id order. Raises StoreError."""
    table = f"{store.schema}.bot_state"
    if bot_ids is not None:
        sql = f"SELECT {LATEST_COLUMNS} FROM {table} WHERE bot_id = ANY($1::text[])"  # noqa: S608 - identifiers are ours
        rows = await store.fetch(sql, list(bot_ids))
    else:
        sql = f"SELECT {LATEST_COLUMNS} FROM {table} WHERE bot_id > $1 ORDER BY bot_id LIMIT $2"  # noqa: S608
        rows = await store.fetch(sql, after, limit)
    return [Snapshot(*row) for row in rows]


class CacheKeeper:
    """The daemon's side of the cache: writes what each committed bot_state batch made the
    latest, and `run`s a loop that refills from PostgreSQL every bot at start and after a
    Redis restart (its run id changed), and the bots whose write failed."""

    def __init__(self, cache: StateCache, store: Store) -> None:
        self.cache = cache
        self.store = store
        self._server: str | None = None  # run id of the Redis last refilled
        self._dirty: set[str] = set()
        self._full = False

    async def written(self, rows: Iterable[Any]) -> None:
        """After a commit: `rows` are `WriteResult.latest`. Never raises."""
        snapshots = [Snapshot(*row) for row in rows]
        if not snapshots:
            return
        try:
            await self.cache.put(snapshots)
        except CacheUnavailable:
            self._remember(s.bot_id for s in snapshots)

    def _remember(self, bot_ids: Iterable[str]) -> None:
        self._dirty.update(bot_ids)
        if len(self._dirty) > MAX_DIRTY:
            self._full, self._dirty = True, set()

    async def run(self, stop: asyncio.Event) -> None:
        """Refill now, then every `state.refill_interval_s`, until `stop` is set. Stopped by
        the event rather than cancelled: a Redis call cancelled while redis-py connects can
        leave its connection outside the pool, open after the client is closed."""
        while not stop.is_set():
            await self.repair()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.cache.settings.refill_interval_s)

    async def repair(self) -> int:
        """One round: refill what needs it; returns the bots written. Never raises."""
        try:
            server = await self.cache.server_id()
        except CacheUnavailable:
            return 0
        if server != self._server:
            if self._server is not None:
                log.warning("redis restarted (new run id); refilling the bot-state cache")
            self._server, self._full = server, True
        full, dirty = self._full, self._dirty
        self._full, self._dirty = False, set()
        if not full and not dirty:
            return 0
        try:
            written = await (self._refill_all() if full else self._refill(sorted(dirty)))
        except (CacheUnavailable, StoreError) as exc:
            self._full = self._full or full
            self._remember(dirty)
            interval_s = self.cache.settings.refill_interval_s
            log.warning("bot-state cache refill failed (%s); next try in %.0fs", exc, interval_s)
            return 0
        what = "every bot" if full else f"{len(dirty)} bots whose write had failed"
        log.info("refilled the redis bot-state cache from PostgreSQL: %s, %d keys written", what, written)
        return written

    async def _refill(self, bot_ids: Sequence[str]) -> int:
        written = 0
        for start in range(0, len(bot_ids), CHUNK_KEYS):
            rows = await latest(self.store, bot_ids[start : start + CHUNK_KEYS])
            written += await self._put(rows)
        return written

    async def _put(self, rows: Sequence[Snapshot]) -> int:
        written = await self.cache.put(rows, "refill")
        metrics.STATE_CACHE_REFILLED.inc(written)
        return written

    async def _refill_all(self) -> int:
        written, after, size = 0, "", self.cache.settings.refill_batch_rows
        while True:
            rows = await latest(self.store, after=after, limit=size)
            if rows:
                written += await self._put(rows)
                after = rows[-1].bot_id
            if len(rows) < size:
                return written
