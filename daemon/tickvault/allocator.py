"""Arrow's memory pool in the tickvault process: jemalloc, chosen before pyarrow loads.

Why: pyarrow's default pool is mimalloc, and the roller does its Arrow work (rows to
Arrow, sort, Parquet write, read-back verify) in worker threads: asyncio's executor, the
cold reads' own threads, Arrow's CPU and IO pools. mimalloc keeps the pages a thread frees
until that thread allocates again, and purges only the calling thread's heap on
`release_unused`. In the soak (bench/soak.py, README "Soak") the daemon's mimalloc arena held
about 200 MiB with under 40 MiB allocated in Arrow's pool, and RSS rose round after round
(168 → 611 MiB in 30 minutes) while the roller off kept it flat at 160 MiB. jemalloc purges
freed pages after its decay time, and its `release_unused` purges every arena, whichever
thread freed them (`release_unused` after each roll: app._roll_periodically).

Arrow reads `ARROW_DEFAULT_MEMORY_POOL` once, when pyarrow loads, so `choose_pool` runs in
the entry point (`tickvault.__main__`) before anything imports pyarrow. A value already set
wins (`mimalloc` or `system` to go back). Only on Linux, where pyarrow's wheels are built
with jemalloc; other platforms keep Arrow's default.
"""

from __future__ import annotations

import os
import sys
from collections.abc import MutableMapping
from typing import Final

POOL_VARIABLE: Final = "ARROW_DEFAULT_MEMORY_POOL"
POOL: Final = "jemalloc"


def choose_pool(environ: MutableMapping[str, str] = os.environ, platform: str = sys.platform) -> str | None:
    """Set `ARROW_DEFAULT_MEMORY_POOL` to jemalloc in `environ` unless it is set already or
    `platform` is not Linux; the value in force afterwards (None: Arrow's default). Has an
    effect only when pyarrow has not been imported yet."""
    if platform.startswith("linux"):
        environ.setdefault(POOL_VARIABLE, POOL)
    return environ.get(POOL_VARIABLE)
