"""Bot-state benchmark: how long does `Vault.load_bot_state` take from Redis and from PostgreSQL?

    python bench/state.py [--bots B] [--reads N] [--state-keys K] [--dsn DSN] [--redis URL]

One run, in order (bench/README.md explains every number):
1. a migrated scratch database; B bots (default 1,000), each given a state of K keys (default
   50: decimals, integers, a list) with `Vault.save_bot_state`, which also fills the cache;
2. N reads (default 5,000) of random bots through `load_bot_state` with the cache on: each
   a Redis HMGET plus the JSON parse into a `BotState`;
3. the same N reads with `state.cache = false`: each a PostgreSQL query on the primary key
   plus the same parse;
4. N reads after the cache keys were deleted: the first read of each bot misses, reads
   PostgreSQL and refills the key, later ones hit.

Every read is timed on its own, one at a time (a bot reads its state once, at start); the
figures are p50, p99 and the mean in milliseconds. The records of both paths must be equal,
or the bench fails. The scratch database and keys (prefix `tvbench<token>.`) are removed at
the end, also after an error or Ctrl-C.
"""

from __future__ import annotations

import argparse
import random
import secrets
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import redis.asyncio as aioredis

import runner
from runner import BenchError
from tickvault.errors import TickvaultError
from tickvault.settings import Settings, load_settings
from tickvault.store import migrate
from tickvault.vault import Vault


def _state(rng: random.Random, keys: int) -> dict[str, Any]:
    state: dict[str, Any] = {}
    for k in range(keys):
        kind = k % 3
        if kind == 0:
            state[f"d{k}"] = Decimal(rng.randrange(10**9)) / Decimal(10**8)
        elif kind == 1:
            state[f"i{k}"] = rng.randrange(10**6)
        else:
            state[f"l{k}"] = [Decimal(rng.randrange(10**6)) / 100 for _ in range(5)]
    return state


def _figures(times_s: Sequence[float]) -> str:
    ms = sorted(t * 1000 for t in times_s)
    p99 = ms[min(len(ms) - 1, int(len(ms) * 0.99))]
    return f"p50 {statistics.median(ms):.3f} ms  p99 {p99:.3f} ms  mean {statistics.fmean(ms):.3f} ms"


async def _timed_reads(vault: Vault, bots: Sequence[str], reads: int, rng: random.Random) -> list[float]:
    times_s = []
    for _ in range(reads):
        bot = rng.choice(bots)
        started = time.perf_counter()
        found = await vault.load_bot_state(bot)
        times_s.append(time.perf_counter() - started)
        if found is None:
            raise BenchError(f"no state for {bot}")
    return times_s


@dataclass
class Bench:
    args: argparse.Namespace
    token: str = field(default_factory=lambda: secrets.token_hex(4))
    database: str | None = None

    @property
    def prefix(self) -> str:
        return f"tvbench{self.token}."

    def settings(self, cache: bool) -> Settings:
        database = f"tickvault_bench_{self.token}"
        dsn = urlunsplit(urlsplit(self.args.dsn)._replace(path="/" + database))
        return load_settings(
            postgres={"dsn": dsn, "create_database": True, "timescale": "off"},
            redis={"url": self.args.redis},
            state={"cache": cache, "key_prefix": self.prefix},
            log={"level": "WARNING"},
        )

    async def main(self) -> None:
        a = self.args
        rng = random.Random(a.seed)
        cached, direct = self.settings(True), self.settings(False)
        self.database = f"tickvault_bench_{self.token}"
        await migrate.upgrade(cached.postgres)
        bots = [f"bot-{i:05d}" for i in range(a.bots)]
        print(f"scratch database {self.database}: {a.bots} bots, {a.state_keys} keys each, {a.reads} reads")
        async with Vault.connect(cached) as vault:
            for bot in bots:
                await vault.save_bot_state(bot, _state(rng, a.state_keys), seq=0)
            redis_s = await _timed_reads(vault, bots, a.reads, random.Random(1))
            sample = [await vault.load_bot_state(b) for b in bots[:50]]
        async with Vault.connect(direct) as vault:
            postgres_s = await _timed_reads(vault, bots, a.reads, random.Random(1))
            if [await vault.load_bot_state(b) for b in bots[:50]] != sample:
                raise BenchError("Redis and PostgreSQL gave different records")
        await self._delete_keys()
        async with Vault.connect(cached) as vault:
            refill_s = await _timed_reads(vault, bots, a.reads, random.Random(2))
        print(f"load_bot_state from Redis:                 {_figures(redis_s)}")
        print(f"load_bot_state from PostgreSQL (no cache): {_figures(postgres_s)}")
        print(f"load_bot_state after a flush (miss+refill): {_figures(refill_s)}")

    async def _delete_keys(self) -> None:
        client = aioredis.Redis.from_url(self.args.redis)
        try:
            keys = [k async for k in client.scan_iter(match=f"{self.prefix}*", count=1000)]
            for i in range(0, len(keys), 1000):
                await client.delete(*keys[i : i + 1000])
        finally:
            await client.aclose()

    async def cleanup(self) -> None:
        try:
            await self._delete_keys()
        except OSError as exc:
            print(f"cleanup of the Redis keys failed: {exc}", file=sys.stderr)
        if not self.database:
            return
        if await runner.drop_database(self.args.dsn, self.database):
            print(f"cleaned up: database {self.database}, keys {self.prefix}*")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--bots", type=int, default=1000, help="bots with a stored state (default 1000)")
    p.add_argument("--reads", type=int, default=5000, help="timed reads per path (default 5000)")
    p.add_argument("--state-keys", type=int, default=50, help="keys in each state (default 50)")
    p.add_argument(
        "--dsn", default="postgresql://postgres@127.0.0.1:5432/postgres",
        help="PostgreSQL server; its database is only used to create and drop the scratch database",
    )  # fmt: skip
    p.add_argument("--redis", default="redis://127.0.0.1:6379/0", help="Redis server for the cache")
    p.add_argument("--seed", type=int, default=7)
    args = p.parse_args(argv)
    if args.bots < 1 or args.reads < 1 or args.state_keys < 1:
        p.error("need --bots, --reads and --state-keys >= 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    return runner.run(Bench(parse_args(argv)), (TickvaultError, asyncpg.PostgresError, OSError))


if __name__ == "__main__":
    sys.exit(main())
