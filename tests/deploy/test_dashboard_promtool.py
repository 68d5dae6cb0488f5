"""PromQL of the operations dashboard evaluated by promtool (`promql_expr_test`) on series as
several replicas report them: figures that must not grow with the number of replicas."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import yaml

from tests import grafana
from tests.deploy.tools import run, tool

NOW = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def panel_expr(dashboard: str, title: str) -> str:
    """The one PromQL query of a panel, with every instance selected (All)."""
    (panel,) = [p for p in grafana.panels(grafana.dashboards()[dashboard]) if p.get("title") == title]
    (target,) = panel["targets"]
    ctx = grafana.Context(
        grafana.TimeRange(NOW - dt.timedelta(hours=1), NOW),
        {"instance": grafana.Variable([], multi=True, include_all=True, all_value=".*", all_selected=True)},
    )
    return grafana.expand_promql(target["expr"], ctx)


def promtool_eval(tmp_path: Path, series: dict[str, str], expr: str, expected: list[dict[str, Any]]) -> str:
    """Run `expr` at 1m over `series` (series → promtool values); promtool's output on failure."""
    test = {
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": [{"series": s, "values": v} for s, v in series.items()],
                "promql_expr_test": [{"expr": expr, "eval_time": "1m", "exp_samples": expected}],
            }
        ],
    }
    path = tmp_path / "dashboard_test.yml"
    path.write_text(yaml.safe_dump(test))
    result = run(tool("promtool"), "test", "rules", str(path))
    return "" if result.returncode == 0 else result.stdout + result.stderr


def test_consumer_lag_counts_a_stream_once_however_many_replicas_report_it(tmp_path: Path) -> None:
    """Each replica reports the whole group's lag of a Redis stream (`partition=""`), and of
    the Kafka partitions it owns: two replicas, one stream of 500 entries behind, one Kafka
    topic of two partitions (one reported by both replicas during a rebalance)."""
    lag = "tickvault_source_lag_messages"
    series = {
        f'{lag}{{instance="a:9108", source="redis", group="tv", topic="tv.klines", partition=""}}': "500 500",
        f'{lag}{{instance="b:9108", source="redis", group="tv", topic="tv.klines", partition=""}}': "500 500",
        f'{lag}{{instance="a:9108", source="kafka", group="tv", topic="tv.fills", partition="0"}}': "30 30",
        f'{lag}{{instance="a:9108", source="kafka", group="tv", topic="tv.fills", partition="1"}}': "20 20",
        f'{lag}{{instance="b:9108", source="kafka", group="tv", topic="tv.fills", partition="1"}}': "20 20",
    }
    expected: list[dict[str, Any]] = [
        {"labels": '{source="redis", group="tv", topic="tv.klines"}', "value": 500},
        {"labels": '{source="kafka", group="tv", topic="tv.fills"}', "value": 50},
    ]
    failure = promtool_eval(tmp_path, series, panel_expr("operations", "Consumer lag"), expected)
    assert failure == ""
