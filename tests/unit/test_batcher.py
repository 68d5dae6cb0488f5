"""Batcher: per-kind batches that are ready when full, old enough, or forced. Pure."""

from __future__ import annotations

import pytest

from tickvault.pipeline import Batcher
from tickvault.sources import Message


def message(n: int, topic: str = "tickvault.klines") -> Message:
    return Message("redis", topic, f"{n}-0", f'{{"n": {n}}}'.encode())


def fill(batcher: Batcher, key: str, count: int, now_s: float, start: int = 0) -> list[bool]:
    return [batcher.extend(key, [f"item-{i}"], [message(i)], now_s) for i in range(start, start + count)]


def test_empty_batcher() -> None:
    batcher = Batcher(max_rows=3, max_age_s=1.0)
    assert batcher.size("kline") == 0
    assert batcher.deadline_s("kline") is None
    assert not batcher.ready("kline", now_s=1e9)
    assert not batcher.ready("kline", now_s=1e9, force=True)
    assert batcher.take("kline") == ([], [])


def test_add_reports_full_at_max_rows() -> None:
    batcher = Batcher(max_rows=3, max_age_s=10.0)
    assert fill(batcher, "kline", 4, now_s=100.0) == [False, False, True, True]
    assert batcher.size("kline") == 4


def test_ready_by_max_rows_before_the_deadline() -> None:
    batcher = Batcher(max_rows=3, max_age_s=10.0)
    fill(batcher, "kline", 2, now_s=100.0)
    assert not batcher.ready("kline", now_s=100.0)
    batcher.extend("kline", ["item-2"], [message(2)], now_s=100.0)
    assert batcher.ready("kline", now_s=100.0)


def test_ready_by_age() -> None:
    batcher = Batcher(max_rows=100, max_age_s=0.5)
    batcher.extend("kline", ["a"], [message(0)], now_s=10.0)
    batcher.extend("kline", ["b"], [message(1)], now_s=10.4)
    assert not batcher.ready("kline", now_s=10.0)
    assert not batcher.ready("kline", now_s=10.499)
    assert batcher.ready("kline", now_s=10.5)  # age counts from the first item, not the last
    assert batcher.ready("kline", now_s=99.0)


def test_deadline_is_first_add_plus_max_age() -> None:
    batcher = Batcher(max_rows=100, max_age_s=0.25)
    batcher.extend("fill", ["a"], [message(0)], now_s=7.0)
    batcher.extend("fill", ["b"], [message(1)], now_s=7.2)
    assert batcher.deadline_s("fill") == pytest.approx(7.25)


def test_force_makes_a_non_empty_batch_ready() -> None:
    batcher = Batcher(max_rows=100, max_age_s=60.0)
    batcher.extend("order", ["a"], [message(0)], now_s=1.0)
    assert not batcher.ready("order", now_s=1.0)
    assert batcher.ready("order", now_s=1.0, force=True)


def test_keys_are_independent() -> None:
    batcher = Batcher(max_rows=2, max_age_s=1.0)
    fill(batcher, "kline", 2, now_s=0.0)
    batcher.extend("fill", ["f"], [message(9)], now_s=5.0)
    assert batcher.ready("kline", now_s=0.0)
    assert not batcher.ready("fill", now_s=5.0)
    assert batcher.deadline_s("fill") == pytest.approx(6.0)
    assert batcher.take("fill") == (["f"], [message(9)])
    assert batcher.size("kline") == 2


def test_take_returns_items_and_their_messages_oldest_first() -> None:
    batcher = Batcher(max_rows=10, max_age_s=1.0)
    fill(batcher, "kline", 3, now_s=0.0)
    items, messages = batcher.take("kline")
    assert items == ["item-0", "item-1", "item-2"]
    assert messages == [message(0), message(1), message(2)]
    assert batcher.size("kline") == 0
    assert batcher.deadline_s("kline") is None
    assert not batcher.ready("kline", now_s=100.0, force=True)


def test_take_returns_at_most_max_rows_and_keeps_the_rest() -> None:
    batcher = Batcher(max_rows=3, max_age_s=1.0)
    fill(batcher, "kline", 7, now_s=0.0)
    first = batcher.take("kline")
    assert first == (["item-0", "item-1", "item-2"], [message(0), message(1), message(2)])
    assert batcher.size("kline") == 4
    assert batcher.ready("kline", now_s=0.0)  # the remainder is still a full batch
    second = batcher.take("kline")
    assert second[0] == ["item-3", "item-4", "item-5"]
    assert second[1] == [message(3), message(4), message(5)]
    assert batcher.size("kline") == 1
    assert not batcher.ready("kline", now_s=0.5)
    assert batcher.take("kline") == (["item-6"], [message(6)])
    assert batcher.size("kline") == 0


def test_remainder_keeps_the_original_deadline() -> None:
    batcher = Batcher(max_rows=2, max_age_s=1.0)
    fill(batcher, "kline", 3, now_s=10.0)
    batcher.take("kline")
    assert batcher.deadline_s("kline") == pytest.approx(11.0)  # flushes no later than planned
    assert not batcher.ready("kline", now_s=10.9)
    assert batcher.ready("kline", now_s=11.0)


def test_new_batch_after_take_starts_a_new_deadline() -> None:
    batcher = Batcher(max_rows=2, max_age_s=1.0)
    fill(batcher, "kline", 2, now_s=10.0)
    batcher.take("kline")
    batcher.extend("kline", ["late"], [message(5)], now_s=50.0)
    assert batcher.deadline_s("kline") == pytest.approx(51.0)
    assert not batcher.ready("kline", now_s=50.5)
    assert batcher.ready("kline", now_s=51.0)


def test_max_rows_of_one_is_always_ready_when_non_empty() -> None:
    batcher = Batcher(max_rows=1, max_age_s=60.0)
    assert batcher.extend("bot_state", ["s"], [message(0)], now_s=0.0)
    assert batcher.ready("bot_state", now_s=0.0)
    assert batcher.take("bot_state") == (["s"], [message(0)])


def test_items_and_messages_stay_paired_across_takes() -> None:
    batcher = Batcher(max_rows=4, max_age_s=1.0)
    fill(batcher, "kline", 10, now_s=0.0)
    taken: list[tuple[str, Message]] = []
    while batcher.size("kline"):
        items, messages = batcher.take("kline")
        assert len(items) == len(messages) <= 4
        taken.extend(zip(items, messages, strict=True))
    assert taken == [(f"item-{i}", message(i)) for i in range(10)]
