#!/usr/bin/env bash
# Sets up a virtualenv, makes sure PostgreSQL and Redis run on localhost, and runs the daemon
# (it creates the database and migrates the schema on start). Extra arguments go to `tickvault run`.
set -euo pipefail
cd "$(dirname "$0")/.."

venv=${TICKVAULT_VENV:-.venv}
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/python" -m pip install -q --upgrade pip
"$venv/bin/python" -m pip install -q -e .

bash scripts/services.sh
exec "$venv/bin/tickvault" run "$@"
