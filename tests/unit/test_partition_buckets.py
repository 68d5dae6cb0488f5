"""Which native partitions a batch asks for: exactly the buckets its times fall in, whether
the batch lies in one bucket (the live feed: only its earliest and latest times are looked
at) or spans many (an import: its distinct days)."""

from __future__ import annotations

import datetime as dt
import random
from typing import Any

import pytest

from tickvault.store.partitions import NativePartitioner
from tickvault.store.schema import TIME_TABLES
from tickvault.timestamps import EPOCH


class Recording(NativePartitioner):
    """Records the buckets it would create instead of creating them."""

    def __init__(self, interval_days: int) -> None:
        super().__init__("tv", interval_days, 0)
        self.created: list[int] = []

    async def _create(self, conn: Any, table: Any, bucket: int) -> None:
        self.created.append(bucket)


@pytest.mark.parametrize("interval_days", [1, 7])
@pytest.mark.parametrize("span_days", [0.01, 3, 400])
async def test_ensure_asks_for_exactly_the_buckets_of_the_times(interval_days: int, span_days: float) -> None:
    rng = random.Random(interval_days)
    start = dt.datetime(2024, 1, 1, 23, 59, tzinfo=dt.UTC)
    times = [start + dt.timedelta(days=rng.uniform(0, span_days)) for _ in range(2000)]
    parts = Recording(interval_days)
    await parts.ensure(None, TIME_TABLES[0], iter(times))  # type: ignore[arg-type]
    assert sorted(parts.created) == sorted({(t - EPOCH).days // interval_days for t in times})
    await parts.ensure(None, TIME_TABLES[0], times)  # type: ignore[arg-type]
    assert len(parts.created) == len(set(parts.created))  # known ones are not asked for again
