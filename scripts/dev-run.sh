#!/usr/bin/env bash
# First run with nothing installed: sets up a virtualenv with the embedded servers
# (tickvault[dev], locked versions; skipped when already installed) and runs
# `tickvault dev --demo`: embedded PostgreSQL and Redis under ./.tickvault, the daemon, and a
# synthetic market. Ctrl-C stops it; data is kept. Extra arguments go to `tickvault dev`
# (e.g. --data-dir DIR, --metrics-port PORT); relative paths are relative to where you are.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
venv=${TICKVAULT_VENV:-.venv}
[[ "$venv" = /* ]] || venv="$repo/$venv"

TICKVAULT_VENV="$venv" bash "$repo/scripts/venv.sh" dev
exec "$venv/bin/tickvault" dev --demo "$@"
