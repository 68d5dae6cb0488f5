"""deploy/k8s: the manifests pass kubernetes-validate (strict, against the Kubernetes schemas),
and match the code: variables that are settings, commands the CLI has, probes and ports on the
metrics endpoint, replicas sharing one consumer group under their own names, no credentials."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.tools import DEPLOY, metrics_port, parses, run, setting_of, tool
from tickvault.settings import load_settings

K8S = DEPLOY / "k8s"
MANIFESTS = sorted(K8S.glob("*.yaml"))
SECRET_SETTINGS = {"TICKVAULT_POSTGRES__DSN", "TICKVAULT_REDIS__URL", "TICKVAULT_KAFKA__SASL_PASSWORD"}


def resources() -> dict[str, dict[str, Any]]:
    """kind → the manifest (one of each kind)."""
    out: dict[str, dict[str, Any]] = {}
    for path in MANIFESTS:
        for doc in yaml.safe_load_all(path.read_text()):
            assert doc["kind"] not in out, f"two {doc['kind']}s"
            out[doc["kind"]] = doc
    return out


def pod_spec() -> dict[str, Any]:
    spec: dict[str, Any] = resources()["Deployment"]["spec"]["template"]["spec"]
    return spec


def container(name: str) -> dict[str, Any]:
    spec = pod_spec()
    (found,) = [c for c in spec["containers"] + spec.get("initContainers", []) if c["name"] == name]
    return found


def test_kubernetes_validate_accepts_every_manifest() -> None:
    assert {r for r in resources()} == {"ConfigMap", "Deployment", "PodDisruptionBudget", "Service"}
    result = run(tool("kubernetes-validate"), "--strict", *map(str, MANIFESTS))
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count(" passed for resource ") == len(MANIFESTS)


def test_kubernetes_validate_rejects_a_broken_manifest(tmp_path: Path) -> None:
    """The validator sees what matters: a misspelt probe field fails."""
    text = (K8S / "deployment.yaml").read_text().replace("readinessProbe:", "readinessProbes:")
    (tmp_path / "deployment.yaml").write_text(text)
    result = run(tool("kubernetes-validate"), "--strict", str(tmp_path / "deployment.yaml"))
    assert result.returncode != 0
    assert "readinessProbes" in result.stdout + result.stderr


def test_every_variable_is_a_setting_and_loads(monkeypatch: pytest.MonkeyPatch) -> None:
    config = resources()["ConfigMap"]["data"]
    names = set(config) | {e["name"] for c in ("migrate", "tickvault") for e in container(c).get("env", [])}
    assert [n for n in sorted(names) if setting_of(n) is None] == []
    for key in [k for k in os.environ if k.startswith("TICKVAULT_")]:
        monkeypatch.delenv(key)
    for key, value in config.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("TICKVAULT_REDIS__CONSUMER", "tickvault-7d9f-abcde")  # the pod name
    settings = load_settings()
    assert settings.metrics.port == metrics_port()
    assert not settings.postgres.migrate_on_start
    assert settings.redis.consumer == "tickvault-7d9f-abcde"


def test_credentials_are_secret_references() -> None:
    assert "Secret" not in resources()
    for name in ("migrate", "tickvault"):
        for entry in container(name).get("env", []):
            if entry["name"] in SECRET_SETTINGS:
                assert "value" not in entry and entry["valueFrom"]["secretKeyRef"]["name"] == "tickvault"
    config = resources()["ConfigMap"]["data"]
    assert SECRET_SETTINGS.isdisjoint(config)
    assert not any("@" in value for value in config.values())


def test_replicas_share_one_group_under_their_own_names() -> None:
    deployment = resources()["Deployment"]
    assert deployment["spec"]["replicas"] > 1
    config = resources()["ConfigMap"]["data"]
    assert config["TICKVAULT_KAFKA__GROUP_ID"] and config["TICKVAULT_REDIS__GROUP"]  # one, for all
    env = {e["name"]: e for e in container("tickvault")["env"]}
    for per_pod in ("TICKVAULT_REDIS__CONSUMER", "TICKVAULT_KAFKA__CLIENT_ID"):
        assert env[per_pod]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"


def test_commands_exist_in_the_cli() -> None:
    assert container("migrate")["args"] == ["migrate"] and parses(["migrate"])
    assert container("tickvault")["args"] == ["run"] and parses(["run"])


def test_probes_and_ports_are_the_metrics_endpoint() -> None:
    daemon = container("tickvault")
    (port,) = daemon["ports"]
    assert (port["name"], port["containerPort"]) == ("metrics", metrics_port())
    for probe, path in (
        ("livenessProbe", "/healthz"),
        ("readinessProbe", "/readyz"),
        ("startupProbe", "/healthz"),
    ):
        assert daemon[probe]["httpGet"] == {"path": path, "port": "metrics"}, probe
    annotations = resources()["Deployment"]["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/port"] == str(metrics_port())
    service = resources()["Service"]["spec"]
    assert service["ports"] == [{"name": "metrics", "port": metrics_port(), "targetPort": "metrics"}]
    # scraped while /readyz fails: the metrics of a pod that is not ready say why
    assert service["publishNotReadyAddresses"] is True


def test_resources_security_and_drain() -> None:
    spec = pod_spec()
    for c in spec["containers"] + spec["initContainers"]:
        assert {"cpu", "memory"} <= set(c["resources"]["requests"]), c["name"]
        assert "memory" in c["resources"]["limits"], c["name"]
        assert c["securityContext"]["allowPrivilegeEscalation"] is False
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["runAsUser"] == 10001  # the Dockerfile's USER
    config = resources()["ConfigMap"]["data"]
    assert spec["terminationGracePeriodSeconds"] > float(config["TICKVAULT_RUN__DRAIN_GRACE_S"])


def test_the_disruption_budget_and_service_select_the_pods() -> None:
    labels = resources()["Deployment"]["spec"]["template"]["metadata"]["labels"]
    assert resources()["Deployment"]["spec"]["selector"]["matchLabels"].items() <= labels.items()
    pdb = resources()["PodDisruptionBudget"]["spec"]
    assert pdb["selector"]["matchLabels"].items() <= labels.items()
    assert pdb["maxUnavailable"] == 1
    # a pod stuck not ready (a dependency down) does not block a node drain
    assert pdb["unhealthyPodEvictionPolicy"] == "AlwaysAllow"
    assert resources()["Service"]["spec"]["selector"].items() <= labels.items()


def test_the_service_label_names_the_job_the_rules_select() -> None:
    """A ServiceMonitor with `jobLabel: app.kubernetes.io/name` (README) names the job after
    this label: the job TickvaultDown watches."""
    rules = yaml.safe_load((DEPLOY / "prometheus/alerts.yml").read_text())["groups"][0]["rules"]
    (down,) = [r["expr"] for r in rules if r.get("alert") == "TickvaultDown"]
    jobs = set(re.findall(r'job="([^"]+)"', down))
    assert jobs == {resources()["Service"]["metadata"]["labels"]["app.kubernetes.io/name"]}
