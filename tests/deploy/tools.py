"""What the deploy tests share: the repository's paths, the external tools they run (installed
by scripts/tools.sh and the test extras; a missing one fails the test rather than skipping it),
and what the code says the deployment files may use: TICKVAULT_* variables, CLI commands, the
metrics port."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from pydantic import BaseModel

from tickvault.cli import _parser
from tickvault.settings import MetricsSettings, Settings

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
ENV_PREFIX = "TICKVAULT_"


def tool(name: str) -> str:
    """The path of `name`: next to the test interpreter (PyPI tools of the test extras), else on
    PATH (Debian packages). AssertionError naming the install step when it is missing."""
    beside = Path(sys.executable).parent / name
    found = str(beside) if beside.exists() else shutil.which(name)
    assert found, f"{name} not found: run scripts/tools.sh (Debian packages) and scripts/venv.sh test"
    return found


def run(*argv: str, cwd: Path = ROOT, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run a tool to completion; its output is in the result (and in the assertion message)."""
    return subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=240, check=False)


def setting_of(env_name: str) -> tuple[str, ...] | None:
    """The settings path a TICKVAULT_* variable sets (e.g. TICKVAULT_POSTGRES__DSN →
    ("postgres", "dsn")), or None when no setting has that name. Follows pydantic-settings:
    `__` nests, matching is case-insensitive, a field is named by its alias where it has one."""
    if not env_name.startswith(ENV_PREFIX):
        return None
    model: type[BaseModel] = Settings
    path: list[str] = []
    parts = env_name[len(ENV_PREFIX) :].lower().split("__")
    for i, part in enumerate(parts):
        fields = {(f.alias or name).lower(): (name, f) for name, f in model.model_fields.items()}
        if part not in fields:
            return None
        name, field = fields[part]
        path.append(name)
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            model = annotation
        elif i != len(parts) - 1:
            return None  # nesting below a plain value
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return None  # a whole section is set as JSON: allowed by pydantic, not used here
    return tuple(path)


def parses(args: list[str]) -> bool:
    """Whether `tickvault ARGS...` is a valid command line for the CLI's parser (commands,
    subcommands and options exist, values are well-formed)."""
    try:
        _parser().parse_args(args)
    except SystemExit:
        return False
    return True


def tickvault_args(argv: list[str]) -> list[str] | None:
    """The arguments after `tickvault` in an exec-form command (["CMD", "tickvault", "check"],
    ["tickvault", "migrate"]), or None when it does not run tickvault."""
    for i, word in enumerate(argv):
        if Path(word).name == "tickvault":
            return argv[i + 1 :]
    return None


def metrics_port() -> int:
    """The port /metrics, /healthz and /readyz listen on by default."""
    return int(MetricsSettings().port)
