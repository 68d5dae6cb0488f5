"""deploy/prometheus against a real Prometheus (the Debian package) scraping a running daemon:
the scrape config, with the target pointed at the test's daemon, finds it up; every alert rule
is loaded and evaluates without error on the daemon's real series; TickvaultDown stays inactive
while the daemon runs and turns pending once it stops."""

from __future__ import annotations

import json
import subprocess
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.test_prometheus import PROMETHEUS, alert_rules
from tests.deploy.tools import tool
from tests.helpers import TestEnv, free_port, spawn_daemon, stop_process, wait_for_port, wait_until

pytestmark = pytest.mark.integration


def api(port: int, path: str) -> Any:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/{path}", timeout=5) as response:
        return json.load(response)["data"]


def start_prometheus(tmp_path: Path, target: str) -> tuple[subprocess.Popen[bytes], int]:
    """deploy/prometheus/prometheus.yml with the test's target, evaluated every second."""
    config = yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text())
    config["global"] |= {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"}
    config["scrape_configs"][0]["static_configs"] = [{"targets": [target]}]
    config["rule_files"] = [str(PROMETHEUS / name) for name in config["rule_files"]]
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    with (tmp_path / "prometheus.log").open("ab") as log:
        proc = subprocess.Popen(
            [
                tool("prometheus"), f"--config.file={tmp_path / 'prometheus.yml'}",
                f"--storage.tsdb.path={tmp_path / 'tsdb'}", f"--web.listen-address=127.0.0.1:{port}",
            ],
            stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    return proc, port


def rules_by_name(port: int) -> dict[str, dict[str, Any]]:
    return {rule["name"]: rule for group in api(port, "rules")["groups"] for rule in group["rules"]}


async def test_the_scrape_config_and_rules_work_on_a_running_daemon(env: TestEnv, tmp_path: Path) -> None:
    daemon_port = free_port()
    metrics = {"enabled": True, "host": "127.0.0.1", "port": daemon_port}
    daemon = spawn_daemon(env, tmp_path / "daemon.log", metrics=metrics)
    prometheus, port = start_prometheus(tmp_path, f"127.0.0.1:{daemon_port}")
    try:
        wait_for_port(daemon_port, daemon, "the daemon's metrics endpoint", timeout_s=120)
        wait_for_port(port, prometheus, "prometheus", timeout_s=60)
        await wait_until(lambda: target_health(port, "up"), 60, what="prometheus to scrape the daemon")
        await wait_until(lambda: all_evaluated(port), 60, what="every rule to be evaluated")
        rules = rules_by_name(port)
        assert {name: r["health"] for name, r in rules.items()} == dict.fromkeys(alert_rules(), "ok")
        # inactive once the scrapes succeed (a scrape before the daemon listened made it pending)
        await wait_until(lambda: down_alert(port, "inactive"), 60, what="TickvaultDown to be inactive")

        assert stop_process(daemon) == 0
        await wait_until(lambda: target_health(port, "down"), 60, what="the scrape to fail")
        await wait_until(lambda: down_alert(port, "pending"), 60, what="TickvaultDown to be pending")
    finally:
        stop_process(daemon)
        stop_process(prometheus)


async def target_health(port: int, health: str) -> bool:
    targets = api(port, "targets")["activeTargets"]
    return any(t["labels"]["job"] == "tickvault" and t["health"] == health for t in targets)


async def down_alert(port: int, state: str) -> bool:
    """Whether TickvaultDown is in `state` (it would fire after 2 minutes of pending)."""
    return bool(rules_by_name(port)["TickvaultDown"]["state"] == state)


async def all_evaluated(port: int) -> bool:
    rules = rules_by_name(port)
    never = "0001-01-01T00:00:00Z"  # Go's zero time: not evaluated yet
    return set(rules) == set(alert_rules()) and all(r["lastEvaluation"] != never for r in rules.values())
