"""A stopped daemon leaves nothing open: its background tasks (dependency probes, lag
reports, the bot-state cache keeper, the roller) are cancelled and waited for before the
clients they use are closed. A connection left to the garbage collector warns, and pytest
(filterwarnings = error) fails the test in which the collection happens: here, at once."""

from __future__ import annotations

import asyncio
import gc
import random
from pathlib import Path

import pytest

from tests.helpers import SOURCES, Daemon, TestEnv, free_port

pytestmark = pytest.mark.parametrize("source", SOURCES, indirect=True)


async def test_stopping_mid_probe_and_mid_roll_leaves_no_connection_open(
    env: TestEnv, daemon: Daemon, tmp_path: Path
) -> None:
    settings = env.settings(
        metrics={"enabled": True, "host": "127.0.0.1", "port": free_port(), "lag_interval_s": 0.001},
        archive={"enabled": True, "root": str(tmp_path / "cold"), "interval_s": 0.01},
        state={"cache": True, "refill_interval_s": 0.01},
    )
    rng = random.Random(7)
    for _ in range(6):
        await daemon.start(settings)
        await asyncio.sleep(rng.uniform(0.02, 0.4))  # probes and rounds in flight at the stop
        assert await daemon.stop_all() == [0]
        gc.collect()
