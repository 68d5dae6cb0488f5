"""The synchronous facade: `tickvault.connect(config)` for notebooks, scripts and synchronous
bots (e.g. freqtrade strategies), no asyncio needed.

It is the async `Vault`, run on an event loop of its own in a daemon thread, so it works
the same in plain Python and where a loop already runs in the calling thread (Jupyter).
Each method has the `Vault` method's signature and docstring and returns what it returns;
exceptions are the same too. Calls from several threads are serialised by that loop.

    with tickvault.connect("tickvault.toml") as v:
        candles = v.klines("binance", "BTCUSDT", "1m", start="2026-01-01T00:00:00Z")
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import threading
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from types import TracebackType
from typing import Any, Concatenate, ParamSpec, TypeVar

from tickvault.settings import Settings
from tickvault.vault import Vault

P = ParamSpec("P")
T = TypeVar("T")


def _sync(method: Callable[Concatenate[Vault, P], Awaitable[T]]) -> Callable[Concatenate[SyncVault, P], T]:
    """`method` of Vault as a blocking method of SyncVault (same signature and docstring)."""

    def call(self: SyncVault, /, *args: P.args, **kwargs: P.kwargs) -> T:
        return self._run(method(self._vault, *args, **kwargs))  # type: ignore[arg-type]

    functools.update_wrapper(call, method)  # name, docstring, and the signature for help()
    return call


class SyncVault:
    """A `Vault` with blocking methods. Open with `tickvault.connect`; close with `close()`
    or by leaving its `with` block."""

    def __init__(self, config: Settings | Path | str | None = None) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="tickvault-sync", daemon=True)
        self._thread.start()
        self._stack = contextlib.AsyncExitStack()
        try:
            self._vault: Vault = self._run(self._stack.enter_async_context(Vault.connect(config)))
        except BaseException:
            self._stop_loop()
            raise

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        if self._loop.is_closed():
            coro.close()
            raise RuntimeError("this vault is closed")
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    def close(self) -> None:
        """Close the connections and stop the loop thread; later calls raise RuntimeError."""
        if self._loop.is_closed():
            return
        try:
            self._run(self._stack.aclose())
        finally:
            self._stop_loop()

    def _stop_loop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()

    def __enter__(self) -> SyncVault:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    klines = _sync(Vault.klines)
    fills = _sync(Vault.fills)
    orders = _sync(Vault.orders)
    order_history = _sync(Vault.order_history)
    positions = _sync(Vault.positions)
    trading_summary = _sync(Vault.trading_summary)
    open_orders = _sync(Vault.open_orders)
    order = _sync(Vault.order)
    missing_ranges = _sync(Vault.missing_ranges)
    balances = _sync(Vault.balances)
    signals = _sync(Vault.signals)
    trades = _sync(Vault.trades)
    save_klines = _sync(Vault.save_klines)
    save_orders = _sync(Vault.save_orders)
    save_fills = _sync(Vault.save_fills)
    save_balances = _sync(Vault.save_balances)
    save_signals = _sync(Vault.save_signals)
    save_trades = _sync(Vault.save_trades)
    load_bot_state = _sync(Vault.load_bot_state)
    save_bot_state = _sync(Vault.save_bot_state)
    bot_states = _sync(Vault.bot_states)
    bot_state_history = _sync(Vault.bot_state_history)
    kline_series = _sync(Vault.kline_series)
    stored_values = _sync(Vault.stored_values)
    save_model = _sync(Vault.save_model)
    model = _sync(Vault.model)
    load_model = _sync(Vault.load_model)
    download_model = _sync(Vault.download_model)
    models = _sync(Vault.models)
    set_model_alias = _sync(Vault.set_model_alias)
    remove_model_alias = _sync(Vault.remove_model_alias)
    verify_models = _sync(Vault.verify_models)
    delete_model = _sync(Vault.delete_model)
    cleanup_models = _sync(Vault.cleanup_models)
    package_model = _sync(Vault.package_model)
    save_strategy_config = _sync(Vault.save_strategy_config)
    load_strategy_config = _sync(Vault.load_strategy_config)
    strategy_configs = _sync(Vault.strategy_configs)
    diff_strategy_configs = _sync(Vault.diff_strategy_configs)
    save_backtest = _sync(Vault.save_backtest)
    backtest = _sync(Vault.backtest)
    load_backtest = _sync(Vault.load_backtest)
    load_backtest_artifact = _sync(Vault.load_backtest_artifact)
    backtests = _sync(Vault.backtests)
    compare_backtests = _sync(Vault.compare_backtests)
    delete_backtest = _sync(Vault.delete_backtest)
    cleanup_backtests = _sync(Vault.cleanup_backtests)
    export = _sync(Vault.export)
    export_table = _sync(Vault.export_table)


def connect(config: Settings | Path | str | None = None) -> SyncVault:
    """A synchronous vault from settings, a TOML file path, or the environment (None), as
    `Vault.connect` takes them. Raises what `Vault.connect` raises (ConfigError, StoreError)."""
    return SyncVault(config)
