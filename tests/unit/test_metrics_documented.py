"""Every metric the daemon registers is in the README's Metrics table, with its type and
labels; none is listed that does not exist."""

from __future__ import annotations

import re
from pathlib import Path

from prometheus_client import REGISTRY
from prometheus_client.metrics import MetricWrapperBase

from tickvault import metrics

README = Path(__file__).resolve().parents[2] / "README.md"
ROW = re.compile(r"^\| `(tickvault_\w+)` \| (\w+) \| ([^|]*) \|", re.MULTILINE)


def documented() -> dict[str, tuple[str, set[str]]]:
    section = README.read_text().split("\n## Metrics\n", 1)[1].split("\n## ", 1)[0]
    return {name: (kind, set(re.findall(r"`(\w+)`", labels))) for name, kind, labels in ROW.findall(section)}


def registered() -> dict[str, tuple[str, set[str]]]:
    """Name → (type, label names) of every metric of tickvault.metrics."""
    out = {}
    for value in vars(metrics).values():
        if isinstance(value, MetricWrapperBase):
            suffix = "_total" if value._type == "counter" else ""
            out[value._name + suffix] = (value._type, set(value._labelnames))
    for family in metrics.NEWEST_EVENTS.collect():
        out[family.name] = (family.type, {"kind", "exchange", "symbol"})
    names = {f.name + ("_total" if f.type == "counter" else "") for f in REGISTRY.collect()}
    assert set(out) <= names  # all registered
    return out


def test_every_metric_is_documented_with_its_type_and_labels() -> None:
    have, docs = registered(), documented()
    assert set(have) == set(docs)
    for name, described in have.items():
        assert docs[name] == described, name
