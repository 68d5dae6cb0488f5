#!/usr/bin/env bash
# First run with nothing installed: sets up a virtualenv with the embedded servers
# (tickvault[dev], locked versions; skipped when already installed) and runs
# `tickvault dev --demo`: embedded PostgreSQL and Redis under ./.tickvault, the daemon, and a
# synthetic market. Ctrl-C stops it; data is kept. Extra arguments go to `tickvault dev`
# (e.g. --data-dir DIR, --metrics-port PORT).
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/venv.sh dev
exec "${TICKVAULT_VENV:-.venv}/bin/tickvault" dev --demo "$@"
