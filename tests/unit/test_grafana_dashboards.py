"""The dashboards of deploy/grafana are well formed for Grafana's JSON model, refer only to
the provisioned datasources, and name only metrics that tickvault.metrics defines (the
integration tests then run every query for real)."""

from __future__ import annotations

import re

import pytest
from prometheus_client import REGISTRY

from tests import grafana
from tickvault import metrics
from tickvault.store.schema import TABLES

PANEL_TYPES = {"row", "timeseries", "stat", "table", "candlestick", "bargauge"}
SUFFIXES = {"counter": ("_total",), "gauge": ("",), "histogram": ("_bucket", "_sum", "_count")}
DASHBOARDS = grafana.dashboards()


def defined_metric_names() -> set[str]:
    """Every sample name of the tickvault_ metrics registered once tickvault.metrics is
    imported (families without samples yet included)."""
    assert metrics.UP is not None  # imported for its registrations
    names = set()
    for family in REGISTRY.collect():
        if family.name.startswith("tickvault_"):
            names |= {family.name + s for s in SUFFIXES.get(family.type, ("",))}
    return names


def test_both_dashboards_are_there() -> None:
    assert set(DASHBOARDS) == {"operations", "markets"}
    assert {d["uid"] for d in DASHBOARDS.values()} == {"tickvault-operations", "tickvault-markets"}


@pytest.mark.parametrize("name", sorted(DASHBOARDS))
def test_panels_fit_the_grid_and_use_provisioned_datasources(name: str) -> None:
    dashboard = DASHBOARDS[name]
    assert dashboard["schemaVersion"] == 39
    uids = set(grafana.datasources())
    assert uids == {"prometheus", "postgres"}
    panels = list(grafana.panels(dashboard))
    assert len({p["id"] for p in panels}) == len(panels)
    for panel in panels:
        assert panel["type"] in PANEL_TYPES, panel["title"]
        box = panel["gridPos"]
        assert box["x"] >= 0 and box["x"] + box["w"] <= 24, panel["title"]
        if panel["type"] == "row":
            continue
        assert panel["datasource"]["uid"] in uids, panel["title"]
        refs = [t["refId"] for t in panel["targets"]]
        assert refs and len(set(refs)) == len(refs), panel["title"]
        assert all((t.get("datasource") or panel["datasource"])["uid"] in uids for t in panel["targets"])


@pytest.mark.parametrize("name", sorted(DASHBOARDS))
def test_promql_names_only_defined_metrics(name: str) -> None:
    defined = defined_metric_names()
    used: set[str] = set()
    for target in grafana.targets(name, DASHBOARDS[name]):
        if target.datasource == "prometheus":
            used |= set(re.findall(r"\btickvault_\w+", target.text))
    assert used <= defined, sorted(used - defined)


def test_every_variable_a_query_uses_is_defined() -> None:
    for name, dashboard in DASHBOARDS.items():
        variables = {v["name"] for v in grafana.template_variables(dashboard)}
        for target in grafana.targets(name, dashboard):
            used = set(re.findall(r"\$\{?(\w+)", target.text))
            builtin = {u for u in used if u.startswith("__")}
            assert used - builtin <= variables, (target.where, sorted(used - builtin - variables))


def _sql_tables(text: str) -> set[str]:
    return set(re.findall(r"\$\{schema\}\.(\w+)", text))


def test_sql_reads_only_tables_of_the_schema() -> None:
    known = set(TABLES) | {"bot_state_history", "archive_log", "cold_kline_series"}
    used: set[str] = set()
    for name, dashboard in DASHBOARDS.items():
        for target in grafana.targets(name, dashboard):
            if target.datasource == "postgres":
                assert "${schema}." in target.text, target.where
                used |= _sql_tables(target.text)
    assert used <= known, sorted(used - known)
    assert {"klines", "fills", "orders", "balances", "bot_state", "dead_letters"} <= used
