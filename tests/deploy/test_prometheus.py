"""deploy/prometheus: the scrape config and alert rules pass promtool's checks, every alert has
unit tests that show it firing and staying quiet, and the rules name only metrics the daemon
exports."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml
from prometheus_client import REGISTRY

import tickvault.metrics  # noqa: F401  (registers every metric)
from tests.deploy.tools import DEPLOY, metrics_port, run, tool

PROMETHEUS = DEPLOY / "prometheus"
TESTS = sorted((PROMETHEUS / "tests").glob("*.yml"))


def load(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def alert_rules() -> dict[str, str]:
    """alert name → its expression."""
    groups = load(PROMETHEUS / "alerts.yml")["groups"]
    return {rule["alert"]: rule["expr"] for group in groups for rule in group["rules"] if "alert" in rule}


def test_promtool_accepts_the_scrape_config_and_the_rules() -> None:
    promtool = tool("promtool")
    config = run(promtool, "check", "config", str(PROMETHEUS / "prometheus.yml"))
    assert config.returncode == 0, config.stdout + config.stderr
    assert "SUCCESS: 1 rule files found" in config.stdout  # alerts.yml is the rule file it loads
    rules = run(promtool, "check", "rules", str(PROMETHEUS / "alerts.yml"))
    assert rules.returncode == 0, rules.stdout + rules.stderr
    assert f"SUCCESS: {len(alert_rules())} rules found" in rules.stdout


def test_the_alert_unit_tests_pass() -> None:
    assert TESTS, "no promtool unit tests in deploy/prometheus/tests"
    result = run(tool("promtool"), "test", "rules", *map(str, TESTS))
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("SUCCESS") == len(TESTS)


def test_every_alert_is_tested_firing_and_quiet() -> None:
    firing: set[str] = set()
    quiet: set[str] = set()
    for path in TESTS:
        for case in load(path)["tests"]:
            for check in case.get("alert_rule_test", []):
                (firing if check.get("exp_alerts") else quiet).add(check["alertname"])
    alerts = set(alert_rules())
    assert alerts - firing == set(), "alerts never shown firing"
    assert alerts - quiet == set(), "alerts never shown quiet"
    assert (firing | quiet) - alerts == set(), "tests of alerts that do not exist"


def test_the_issue_s_alerts_are_all_there() -> None:
    """lag growing, no data, dead letters, flush failures, roller failing, a dependency down,
    the daemon down."""
    assert {
        "TickvaultConsumerLagGrowing", "TickvaultNoMessages", "TickvaultMarketDataStale",
        "TickvaultDeadLetters", "TickvaultFlushRetries", "TickvaultArchiveFailing",
        "TickvaultArchiveStale", "TickvaultDependencyDown", "TickvaultDown",
    } <= set(alert_rules())  # fmt: skip


def test_the_rules_name_only_metrics_the_daemon_exports() -> None:
    exported = set(REGISTRY._names_to_collectors)
    used = {name for expr in alert_rules().values() for name in re.findall(r"\btickvault_\w+", expr)}
    assert used, "no tickvault metric in the rules"
    assert used - exported == set()


def test_the_scrape_target_is_the_daemon_s_metrics_port() -> None:
    config = load(PROMETHEUS / "prometheus.yml")
    (job,) = config["scrape_configs"]
    assert job["job_name"] == "tickvault"  # the rules select job="tickvault"
    assert job.get("metrics_path", "/metrics") == "/metrics"
    assert job["static_configs"][0]["targets"] == [f"tickvault:{metrics_port()}"]
    assert config["rule_files"] == ["alerts.yml"]
