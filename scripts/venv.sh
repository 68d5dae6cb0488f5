#!/usr/bin/env bash
# scripts/venv.sh EXTRAS: makes sure the virtualenv ${TICKVAULT_VENV:-.venv} (relative to the
# repository) holds tickvault (editable) with EXTRAS (e.g. "dev" or "test"), at exactly the
# versions in requirements/lock.txt. A second run with the same lock, pyproject.toml and
# extras installs nothing: a stamp in the virtualenv remembers what it holds.
set -euo pipefail
venv=${TICKVAULT_VENV:-.venv}
[[ "$venv" = /* ]] || venv="$(cd "$(dirname "$0")/.." && pwd)/$venv"
cd "$(dirname "$0")/.."

extras=${1:?usage: scripts/venv.sh EXTRAS}
if ! "$venv/bin/python" -m pip --version >/dev/null 2>&1; then
    if [ -e "$venv" ] && [ ! -f "$venv/pyvenv.cfg" ]; then
        echo "$venv exists and is not a virtualenv; set TICKVAULT_VENV to another path" >&2
        exit 1
    fi
    rm -rf "$venv"  # missing, or left half-made by a failed `python3 -m venv`
    if ! python3 -m venv "$venv"; then
        rm -rf "$venv"
        echo "python3 -m venv failed; on Debian: apt-get install python3-venv" >&2
        exit 1
    fi
fi
stamp="$venv/.tickvault-installed"
want="$extras $(cat requirements/lock.txt pyproject.toml | sha256sum | cut -d' ' -f1)"
if [ -f "$stamp" ] && grep -qxF "$want" "$stamp"; then
    exit 0
fi
echo "installing tickvault[$extras] and its locked dependencies into $venv" >&2
# PIP_CONSTRAINT (not -c) also reaches the isolated environment that builds tickvault itself
PIP_CONSTRAINT="$PWD/requirements/lock.txt" "$venv/bin/python" -m pip install -q \
    --disable-pip-version-check -e ".[$extras]"
echo "$want" >> "$stamp"
