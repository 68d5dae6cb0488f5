"""The fault suite's figures: one row per scenario, printed at the end of the pytest run.

A scenario records how many rounds it ran, how many messages were sent, and how many were
lost or stored twice after the fault. The summary is printed by `pytest_terminal_summary`
in tests/conftest.py, so CI's log carries the figures the README quotes.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

ROUNDS_ENV = "TICKVAULT_FAULT_ROUNDS"


def rounds(default: int) -> int:
    """How many rounds a repeated scenario runs: `default` in CI, more when
    TICKVAULT_FAULT_ROUNDS is set (the long mode, e.g. `TICKVAULT_FAULT_ROUNDS=50`)."""
    value = os.environ.get(ROUNDS_ENV)
    return max(default, int(value)) if value else default


@dataclass
class FaultFigures:
    """What one scenario ended with: messages sent, rows stored once, lost, duplicated."""

    scenario: str
    rounds: int
    sent: int
    lost: int
    duplicated: int
    detail: str = ""


FIGURES: list[FaultFigures] = []


def record(figures: FaultFigures) -> None:
    """Keep `figures` for the end-of-run summary (also when the test then fails)."""
    FIGURES.append(figures)


def summary_lines() -> list[str]:
    """The summary table, one line per recorded scenario, or nothing when none ran."""
    if not FIGURES:
        return []
    head = f"{'scenario':<44} {'rounds':>6} {'sent':>9} {'lost':>5} {'dup':>5}  detail"
    rows = [
        f"{f.scenario:<44} {f.rounds:>6} {f.sent:>9} {f.lost:>5} {f.duplicated:>5}  {f.detail}"
        for f in FIGURES
    ]
    return [head, *rows]
