"""The synchronous facade: `tickvault.connect(config)` gives the async Vault's reads as
blocking calls, also where an event loop already runs in the calling thread (as in Jupyter:
these tests are coroutines and call it without awaiting)."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest

import tickvault
from tests.helpers import TestEnv
from tests.integration.test_archive import SYMBOLS, T0_MS
from tests.integration.test_reads_tiers import rolled
from tickvault import SyncVault, Vault
from tickvault.errors import ConfigError


async def test_sync_reads_equal_the_async_ones_over_both_tiers(env: TestEnv, tmp_path: Path) -> None:
    settings, _ = await rolled(env, tmp_path / "cold")
    async with Vault.connect(settings) as vault:
        want = await vault.klines("okx", interval="1h", symbols=list(SYMBOLS))
        want_fills = await vault.fills(exchange="okx", start=T0_MS)
    with tickvault.connect(settings) as v:
        got = v.klines("okx", interval="1h", symbols=list(SYMBOLS))
        fills = v.fills(exchange="okx", start=T0_MS)
        series = v.kline_series()
        with pytest.raises(ConfigError, match="is not one of"):
            v.klines("okx", "BTC-USDT", "7m")
        assert v.load_bot_state("nobody") is None
    assert got.equals(want) and got.num_rows == 5 * 24 * len(SYMBOLS)
    assert fills.equals(want_fills)
    assert series == [("okx", s, "1h") for s in SYMBOLS]
    with pytest.raises(RuntimeError, match="closed"):
        v.klines("okx", "BTC-USDT", "1h")


def test_sync_methods_have_the_async_signatures_and_docstrings() -> None:
    public = {name for name in dir(Vault) if not name.startswith("_") and name != "connect"}
    assert public <= set(vars(SyncVault))  # every read and write has its blocking twin
    for name in sorted(public):
        sync, coro = getattr(SyncVault, name), getattr(Vault, name)
        assert sync.__doc__ == coro.__doc__ and sync.__doc__
        assert inspect.signature(sync) == inspect.signature(coro)


def test_connect_to_an_unreachable_server_fails_and_leaves_no_thread() -> None:
    import threading

    before = {t.name for t in threading.enumerate()}
    settings = tickvault.settings.Settings(
        postgres={"dsn": "postgresql://nobody@127.0.0.1:1/none", "connect_retries": 0}
    )  # type: ignore[arg-type]
    with pytest.raises(tickvault.StoreError):
        tickvault.connect(settings)
    assert "tickvault-sync" not in {t.name for t in threading.enumerate()} - before
