"""WriteResult: what a committed batch counts in tickvault_rows_written_total and
tickvault_rows_unchanged_total, per table."""

from __future__ import annotations

from tickvault.store import WriteResult


def test_unchanged_rows_are_the_batch_s_records_not_written() -> None:
    result = WriteResult.committed(5, {"orders": 2, "order_events": 5})
    assert result.written == {"orders": 2, "order_events": 5}
    assert result.unchanged == {"orders": 3, "order_events": 0}


def test_unchanged_rows_are_never_negative() -> None:
    """A table that takes more rows than the batch had records counts none unchanged (a
    counter's inc() refuses a negative amount)."""
    result = WriteResult.committed(2, {"bot_state_history": 3})
    assert result.unchanged == {"bot_state_history": 0}
