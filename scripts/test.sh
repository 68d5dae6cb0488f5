#!/usr/bin/env bash
# Sets up a virtualenv with the test extras at the locked versions (requirements/lock.txt),
# makes sure PostgreSQL and Redis are running and the deploy tests' Debian tools installed
# (promtool, docker-compose), then runs ruff, mypy and the whole pytest suite. Extra arguments
# go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${TICKVAULT_VENV:-.venv}
[[ "$venv" = /* ]] || venv="$PWD/$venv"

TICKVAULT_VENV="$venv" bash scripts/venv.sh test
bash scripts/services.sh
bash scripts/tools.sh

"$venv/bin/ruff" check .
"$venv/bin/ruff" format --check .
"$venv/bin/mypy"
"$venv/bin/pytest" "$@"
