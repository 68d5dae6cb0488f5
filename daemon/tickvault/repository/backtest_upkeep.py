"""The backtest upkeep methods of `Vault` (a mixin): delete a run, sweep orphan blobs.

Blobs are shared by content: a run's trades, equity or artifact blob is deleted with the run
only when no other run names the same sha256. `cleanup_backtests` removes the blobs no run
names — left by a crash between a run's blobs and its rows, or by a save refused after its
blobs were stored (VersionConflict) — and temporary files of interrupted writes. Both hold
the blob lock exclusively (tickvault.repository.base).
"""

from __future__ import annotations

from typing import Final

import asyncpg

from tickvault.repository.backtests import BacktestRun, Backtests
from tickvault.repository.upkeep import Cleanup

# every sha256 a run names: its Parquet tables' and its artifacts'
_NAMED: Final = """SELECT trades_sha256 FROM {schema}.backtests WHERE trades_sha256 IS NOT NULL
    UNION SELECT equity_sha256 FROM {schema}.backtests WHERE equity_sha256 IS NOT NULL
    UNION SELECT sha256 FROM {schema}.backtest_artifacts"""


class BacktestUpkeep(Backtests):
    """`Vault`'s backtest deletion and cleanup."""

    async def delete_backtest(self, run_id: str) -> BacktestRun:
        """Delete a run, its artifacts' rows, and every blob of it that no other run names;
        returns what was deleted. Raises ConfigError for an invalid run id, NotFound."""
        run = await self.backtest(run_id)
        mine = [b.sha256 for b in run.blobs.values()] + [a.sha256 for a in run.artifacts]
        named = _NAMED.format(schema=self._schema)

        async def delete(conn: asyncpg.Connection) -> None:
            async with conn.transaction():
                await conn.execute(f"DELETE FROM {self._schema}.backtests WHERE run_id = $1", run_id)  # noqa: S608 - identifiers are ours
                still = {
                    r[0]
                    for r in await conn.fetch(
                        f"SELECT * FROM ({named}) n WHERE n.trades_sha256 = ANY($1)",  # noqa: S608 - identifiers are ours
                        mine,
                    )
                }
            for sha in dict.fromkeys(mine):
                if sha not in still:
                    await self._thread(self._blobs("backtests").delete, sha)

        await self._locked(True, delete)
        return run

    async def cleanup_backtests(self, *, dry_run: bool = False) -> Cleanup:
        """Remove the backtest blobs no run names and the temporary files of interrupted
        writes (`dry_run`: remove nothing); returns their counts (`versions` is empty)."""
        named = _NAMED.format(schema=self._schema)

        async def clean(conn: asyncpg.Connection) -> Cleanup:
            kept = {r[0] for r in await conn.fetch(named)}
            blobs, temps = await self._sweep("backtests", kept, dry_run)
            return Cleanup((), blobs, temps)

        return await self._locked(True, clean)
