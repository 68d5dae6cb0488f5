"""docker-compose.yml: the file a compose parser (`docker-compose config`) accepts, and what it
parses to: the stack's services, healthchecks, start order, and commands, variables and ports
that exist in tickvault's code."""

from __future__ import annotations

import os
import shlex
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from tests.deploy.tools import ROOT, metrics_port, parses, run, setting_of, tickvault_args, tool
from tickvault.settings import load_settings

SERVICES = {"timescaledb", "kafka", "redis", "migrate", "tickvault", "demo", "prometheus", "grafana"}
ONE_SHOT = {"migrate"}  # runs to completion before the daemon starts
NO_HEALTHCHECK = ONE_SHOT | {"demo"}  # the demo publisher serves nothing to probe either


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    """The stack as the compose parser resolves it (variables substituted, anchors merged)."""
    environ = {
        k: v for k, v in os.environ.items() if not k.startswith(("POSTGRES_", "GRAFANA_", "TICKVAULT_PG_"))
    }
    result = run(tool("docker-compose"), "--file", str(ROOT / "docker-compose.yml"), "config", env=environ)
    assert result.returncode == 0, result.stderr
    parsed: dict[str, Any] = yaml.safe_load(result.stdout)
    return parsed


def tickvault_services(compose: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """The services that run the image of the Dockerfile."""
    for name, service in compose["services"].items():
        if "build" in service:
            assert service["build"]["context"] == str(ROOT)
            yield name, service


def test_the_stack_has_its_services(compose: dict[str, Any]) -> None:
    assert set(compose["services"]) == SERVICES
    assert {name for name, _ in tickvault_services(compose)} == {"migrate", "tickvault", "demo"}


def test_images_are_pinned(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        if "build" in service:
            continue
        tag = service["image"].partition(":")[2]
        assert tag and tag != "latest" and any(c.isdigit() for c in tag), f"{name}: {service['image']}"


def test_long_running_services_have_healthchecks(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        if name in NO_HEALTHCHECK:
            # else the image's HEALTHCHECK (tickvault check) would apply
            assert service["healthcheck"]["test"] == ["NONE"], name  # `disable: true`, as parsed
            continue
        test = service.get("healthcheck", {}).get("test")
        assert test and test[0] in ("CMD", "CMD-SHELL"), name


def test_services_start_after_what_they_need_is_healthy(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name, service in services.items():
        for needed, how in service.get("depends_on", {}).items():
            expected = "service_completed_successfully" if needed in ONE_SHOT else "service_healthy"
            assert how["condition"] == expected, f"{name} -> {needed}"
            if expected == "service_healthy":
                probe = services[needed].get("healthcheck", {}).get("test", ["NONE"])
                assert probe != ["NONE"], f"{name} waits on {needed}: no healthcheck"
    daemon = services["tickvault"]["depends_on"]
    assert set(daemon) == {"migrate", "timescaledb", "kafka", "redis"}
    assert set(services["migrate"]["depends_on"]) == {"timescaledb"}
    assert "kafka" in services["demo"]["depends_on"]
    assert {"prometheus", "timescaledb"} <= set(services["grafana"]["depends_on"])


def test_migrations_run_before_the_daemon(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert services["migrate"]["command"] == ["migrate"]
    assert services["migrate"].get("restart", "no") == "no"
    assert services["tickvault"]["command"] == ["run"]
    env = services["tickvault"]["environment"]
    assert env["TICKVAULT_POSTGRES__MIGRATE_ON_START"] == "false"  # migrate did it, once


def test_commands_and_healthchecks_exist_in_the_cli(compose: dict[str, Any]) -> None:
    """The Dockerfile's ENTRYPOINT is `tickvault` (test_dockerfile), so a command is its arguments."""
    seen = set()
    for name, service in tickvault_services(compose):
        assert parses(service["command"]), f"{name}: tickvault {' '.join(service['command'])}"
        seen.add(service["command"][0])
        if service["healthcheck"]["test"] != ["NONE"]:
            args = tickvault_args(service["healthcheck"]["test"])
            assert args == ["check"], name
    assert seen == {"migrate", "run", "demo"}


def test_every_tickvault_variable_is_a_setting_and_loads(
    compose: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, service in tickvault_services(compose):
        env = service["environment"]
        unknown = [k for k in env if k.startswith("TICKVAULT_") and setting_of(k) is None]
        assert unknown == [], f"{name}: no such setting"
        for key in [k for k in os.environ if k.startswith("TICKVAULT_")]:
            monkeypatch.delenv(key)
        for key, value in env.items():
            monkeypatch.setenv(key, str(value))
        settings = load_settings()
        assert settings.source.kind == "kafka"
        assert urlsplit(settings.postgres.dsn.get_secret_value()).hostname == "timescaledb"
        assert settings.kafka.bootstrap_servers.split(":")[0] == "kafka"
        assert urlsplit(settings.redis.url.get_secret_value()).hostname == "redis"
        assert settings.metrics.port == metrics_port()


def test_the_metrics_port_is_published_and_scraped(compose: dict[str, Any]) -> None:
    ports = compose["services"]["tickvault"]["ports"]
    assert {p["target"] for p in ports} == {metrics_port()}
    scrape = yaml.safe_load((ROOT / "deploy/prometheus/prometheus.yml").read_text())
    assert scrape["scrape_configs"][0]["static_configs"][0]["targets"] == [f"tickvault:{metrics_port()}"]


def test_kafka_runs_in_kraft_mode(compose: dict[str, Any]) -> None:
    kafka = compose["services"]["kafka"]
    assert kafka["image"].startswith("apache/kafka:")
    env = kafka["environment"]
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    assert not any("ZOOKEEPER" in k for k in env)
    assert env["KAFKA_ADVERTISED_LISTENERS"] == "PLAINTEXT://kafka:9092"
    assert f"kafka:{env['KAFKA_LOG_DIRS']}:rw" in kafka["volumes"]  # the data outlives the container


def test_prometheus_and_grafana_mount_the_provisioning(compose: dict[str, Any]) -> None:
    def mounts(service: str) -> dict[str, str]:
        volumes = compose["services"][service]["volumes"]
        return {v.split(":")[1]: v.split(":")[0] for v in volumes if isinstance(v, str)}

    prometheus, grafana = mounts("prometheus"), mounts("grafana")
    assert prometheus["/etc/prometheus"] == str(ROOT / "deploy/prometheus")
    assert grafana["/etc/grafana/provisioning"] == str(ROOT / "deploy/grafana/provisioning")
    assert grafana["/var/lib/grafana/dashboards"] == str(ROOT / "deploy/grafana/dashboards")
    env = compose["services"]["grafana"]["environment"]
    assert env["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"].startswith("/var/lib/grafana/dashboards/")


def test_tickvault_and_grafana_use_the_roles_the_database_creates(compose: dict[str, Any]) -> None:
    db = compose["services"]["timescaledb"]
    initdb = {v.split(":")[1]: v.split(":")[0] for v in db["volumes"] if v.startswith("/")}
    script = "/docker-entrypoint-initdb.d/10-tickvault-roles.sh"
    assert initdb[script] == str(ROOT / "deploy/compose/initdb/10-tickvault-roles.sh")
    assert initdb["/tickvault/roles.sql"] == str(ROOT / "deploy/postgres/roles.sql")
    # tickvault signs in as the writer the script creates, not as the database's superuser
    for name in ("migrate", "tickvault"):
        dsn = urlsplit(compose["services"][name]["environment"]["TICKVAULT_POSTGRES__DSN"])
        assert dsn.username == db["environment"]["TICKVAULT_PG_USER"] != db["environment"]["POSTGRES_USER"]
        assert dsn.password == db["environment"]["TICKVAULT_PG_PASSWORD"]
    # the directory itself stays the image's: its scripts install TimescaleDB in the database
    assert "/docker-entrypoint-initdb.d" not in initdb
    grafana = compose["services"]["grafana"]["environment"]
    assert grafana["TICKVAULT_GRAFANA_PG_USER"] == db["environment"]["GRAFANA_PG_USER"]
    assert grafana["TICKVAULT_GRAFANA_PG_PASSWORD"] == db["environment"]["GRAFANA_PG_PASSWORD"]
    assert grafana["TICKVAULT_GRAFANA_PG_USER"] != db["environment"]["POSTGRES_USER"]  # not the owner


def test_the_database_is_healthy_only_once_it_listens_on_the_network(compose: dict[str, Any]) -> None:
    """pg_isready over TCP: on a new volume the entrypoint runs the init scripts against a
    temporary server listening on the Unix socket only, which a socket probe would pass."""
    kind, command = compose["services"]["timescaledb"]["healthcheck"]["test"]
    assert kind == "CMD-SHELL"
    args = shlex.split(command)
    assert args[0] == "pg_isready"
    assert args[args.index("-h") + 1] == "127.0.0.1"


def test_credentials_come_from_the_environment() -> None:
    environ = dict(
        os.environ, POSTGRES_PASSWORD="s3cret-from-env", GRAFANA_ADMIN_PASSWORD="admin-from-env",
        GRAFANA_PG_PASSWORD="reader-from-env", TICKVAULT_PG_PASSWORD="writer-from-env",
    )  # fmt: skip
    result = run(tool("docker-compose"), "--file", str(ROOT / "docker-compose.yml"), "config", env=environ)
    assert result.returncode == 0, result.stderr
    services = yaml.safe_load(result.stdout)["services"]
    assert services["timescaledb"]["environment"]["POSTGRES_PASSWORD"] == "s3cret-from-env"
    dsn = services["tickvault"]["environment"]["TICKVAULT_POSTGRES__DSN"]
    assert urlsplit(dsn).password == "writer-from-env"
    assert services["timescaledb"]["environment"]["TICKVAULT_PG_PASSWORD"] == "writer-from-env"
    assert services["grafana"]["environment"]["TICKVAULT_GRAFANA_PG_PASSWORD"] == "reader-from-env"
    assert services["timescaledb"]["environment"]["GRAFANA_PG_PASSWORD"] == "reader-from-env"
    assert services["grafana"]["environment"]["GF_SECURITY_ADMIN_PASSWORD"] == "admin-from-env"
