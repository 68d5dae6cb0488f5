"""The Dockerfile: hadolint finds nothing, and what it says matches the code: the entrypoint is
the `tickvault` console script, its command and healthcheck exist in the CLI, the exposed port
is the metrics port; multi-stage, pinned base images, an unprivileged user."""

from __future__ import annotations

import json
import re

from tests.deploy.tools import ROOT, metrics_port, parses, run, tickvault_args, tool

DOCKERFILE = ROOT / "Dockerfile"


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            out.append((keyword.upper(), rest.strip()))
    return out


def only(keyword: str) -> str:
    (value,) = [rest for k, rest in instructions() if k == keyword]
    return value


def test_hadolint_finds_nothing() -> None:
    result = run(tool("hadolint"), "--no-color", str(DOCKERFILE))
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == ""


def test_multi_stage_from_pinned_slim_images() -> None:
    images = [rest.split()[0] for k, rest in instructions() if k == "FROM"]
    assert len(images) == 2  # build, runtime
    for image in images:
        name, _, tag = image.partition(":")
        assert name == "python" and re.fullmatch(r"3\.11\.\d+-slim-\w+", tag), image
    # the runtime takes only the wheels of the build stage
    assert any("from=build" in rest for k, rest in instructions() if k in ("RUN", "COPY"))


def test_installs_from_the_lock() -> None:
    runs = [rest for k, rest in instructions() if k == "RUN"]
    assert any("PIP_CONSTRAINT=/src/requirements/lock.txt" in r and "pip wheel" in r for r in runs)
    assert any("--no-index" in r and "pip install" in r for r in runs)  # nothing but the built wheels


def test_runs_as_an_unprivileged_user() -> None:
    user = only("USER")
    uid = user.split(":")[0]
    assert uid.isdigit() and int(uid) >= 1000  # numeric: Kubernetes' runAsNonRoot can check it


def test_entrypoint_command_healthcheck_and_port_match_the_code() -> None:
    assert json.loads(only("ENTRYPOINT")) == ["tickvault"]
    command = json.loads(only("CMD"))
    assert command == ["run"] and parses(command)
    healthcheck = only("HEALTHCHECK")
    assert tickvault_args(json.loads(healthcheck[healthcheck.index("CMD") + 4 :])) == ["check"]
    assert only("EXPOSE") == str(metrics_port())


def test_the_build_context_holds_what_the_build_copies() -> None:
    ignored = (ROOT / ".dockerignore").read_text().splitlines()
    assert "*" in ignored  # an allow-list: nothing else (.venv, .git, data) reaches the daemon
    allowed = {line[1:].rstrip("/") for line in ignored if line.startswith("!")}
    copied = {
        source.rstrip("/")
        for k, rest in instructions()
        if k == "COPY" and "--from" not in rest
        for source in rest.split()[:-1]
    }
    assert copied <= allowed
    assert all((ROOT / path).exists() for path in allowed)
