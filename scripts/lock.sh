#!/usr/bin/env bash
# The locked dependency set, requirements/lock.txt, resolved by uv from pyproject.toml (every
# extra) and requirements/build.in (the build backend), for Python >= 3.11 on any platform.
#   scripts/lock.sh            re-resolve after editing pyproject.toml, keeping every pin
#                              that still fits (add --upgrade-package NAME to move one)
#   scripts/lock.sh --upgrade  move every pin to the newest release that fits
#   scripts/lock.sh --check    exit 1 when the lock no longer matches pyproject.toml (CI)
# The installs (scripts/test.sh, scripts/dev-run.sh, the Dockerfile) use the lock as pip
# constraints: they install exactly these versions.
set -euo pipefail
cd "$(dirname "$0")/.."

UV_VERSION=0.13.9
lock=requirements/lock.txt
tools=${TICKVAULT_TOOLS_VENV:-.venv-tools}
if [ ! -x "$tools/bin/uv" ] || [ "$("$tools/bin/uv" --version | cut -d' ' -f2)" != "$UV_VERSION" ]; then
    [ -x "$tools/bin/python" ] || python3 -m venv "$tools"
    "$tools/bin/python" -m pip install -q --disable-pip-version-check "uv==$UV_VERSION"
fi
compile() {
    "$tools/bin/uv" pip compile --quiet pyproject.toml requirements/build.in --all-extras \
        --universal --python-version 3.11 --no-emit-index-url --custom-compile-command scripts/lock.sh "$@"
}

if [ "${1:-}" = "--check" ]; then
    scratch=$(mktemp -d)
    trap 'rm -rf "$scratch"' EXIT
    cp "$lock" "$scratch/lock.txt"
    compile -o "$scratch/lock.txt"
    if ! diff -u "$lock" "$scratch/lock.txt"; then
        echo "requirements/lock.txt does not match pyproject.toml: run scripts/lock.sh and commit the result" >&2
        exit 1
    fi
    echo "requirements/lock.txt matches pyproject.toml"
else
    compile -o "$lock" "$@"
    echo "wrote $lock"
fi
