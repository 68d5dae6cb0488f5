"""Readiness (`metrics.Health`) under the verdicts of the pipeline and of the PostgreSQL probe."""

from __future__ import annotations

from tickvault.metrics import POSTGRES_UNAVAILABLE, Health


def running() -> Health:
    health = Health()
    health.set(True)
    return health


def test_the_probe_turns_a_ready_daemon_unready_and_back() -> None:
    health = running()
    health.postgres_answers(False)
    assert (health.ready, health.reason) == (False, POSTGRES_UNAVAILABLE)
    health.postgres_answers(True)
    assert health.ready


def test_the_probe_does_not_make_a_starting_or_stopping_daemon_ready() -> None:
    for reason in ("starting", "stopping"):
        health = Health()
        health.set(False, reason)
        health.postgres_answers(False)
        health.postgres_answers(True)
        assert (health.ready, health.reason) == (False, reason)


def test_an_answering_probe_does_not_flip_a_failing_write_back_to_ready() -> None:
    health = running()
    health.set(False, POSTGRES_UNAVAILABLE)  # the pipeline: a write failed
    health.postgres_answers(True)  # the probe answered all along: no change, no verdict
    assert not health.ready


def test_writes_that_succeed_again_make_the_daemon_ready_whatever_the_probe_said() -> None:
    health = running()
    health.postgres_answers(False)
    health.set(True)  # the pipeline: a retried write went through
    assert health.ready
    health.postgres_answers(True)
    assert health.ready
