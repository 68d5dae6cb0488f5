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

What is not Arrow's comes from the C library's malloc (Python objects over 512 bytes, the
drivers' buffers, the text a merge loads back). glibc returns the free memory inside its
heaps to the OS only when asked (`malloc_trim`), so `trim_c_heap` asks after each roll round.
"""

from __future__ import annotations

import ctypes
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


def trim_c_heap() -> bool:
    """Return the free memory of the C library's heaps to the OS (glibc's `malloc_trim(0)`:
    every arena, free pages inside them too, https://man7.org/linux/man-pages/man3/malloc_trim.3.html).
    True when memory was released; False when there was none, or the C library has no
    `malloc_trim` (musl, macOS)."""
    trim = getattr(_libc(), "malloc_trim", None)
    return bool(trim(0)) if trim is not None else False


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None)  # the process's own symbols, the C library's among them
