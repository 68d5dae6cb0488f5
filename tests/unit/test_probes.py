"""The dependency probes' loop (`observe.probe_dependencies`): verdicts, timeouts, and a stop
that lands between a round's start and its probes' first step."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Coroutine
from typing import Any

import pytest

from tests.helpers import wait_until
from tickvault import metrics, observe


def gauge(name: str) -> float | None:
    for family in metrics.DEPENDENCY_UP.collect():
        for sample in family.samples:
            if sample.labels.get("dependency") == name:
                return sample.value
    return None


async def test_a_stop_before_the_probes_first_step_leaves_no_coroutine_never_awaited() -> None:
    made: list[Coroutine[Any, Any, None]] = []

    async def answer() -> None:
        return None

    def probe() -> Coroutine[Any, Any, None]:
        made.append(answer())
        return made[-1]

    task = asyncio.create_task(observe.probe_dependencies({"postgres": probe, "redis": probe}, 60))
    await asyncio.sleep(0)  # the loop reaches its gather; the probes' tasks are scheduled, not run
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    states = [inspect.getcoroutinestate(coro) for coro in made]
    for coro in made:
        coro.close()  # so a failure here does not also warn at collection
    assert states == [inspect.CORO_CLOSED] * len(states)  # was two CORO_CREATED: "never awaited"


async def test_a_probe_that_hangs_counts_as_down_and_is_cancelled(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(observe, "MIN_PROBE_TIMEOUT_S", 0.05)
    cancelled = asyncio.Event()
    changes: list[tuple[str, bool]] = []

    async def hang() -> None:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    async def answer() -> None:
        return None

    task = asyncio.create_task(
        observe.probe_dependencies({"kafka": hang, "redis": answer}, 0.01, lambda *c: changes.append(c))
    )

    async def first_verdicts() -> bool:
        return gauge("kafka") is not None

    await wait_until(first_verdicts, 5, 0.01, what="the first verdicts")
    assert cancelled.is_set()
    assert (gauge("kafka"), gauge("redis")) == (0, 1)
    assert changes[0] == ("kafka", False) and ("redis", False) not in changes
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert (gauge("kafka"), gauge("redis")) == (None, None)  # a stopped daemon reports no dependency
