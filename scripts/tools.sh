#!/usr/bin/env bash
# Makes sure the Debian tools that tests/deploy runs are installed: promtool and prometheus
# (package prometheus) and the compose parser docker-compose. Installs only what is missing, and
# starts nothing: while installing, a policy-rc.d keeps the package's own Prometheus service
# (port 9090) from starting. The PyPI tools (hadolint, kubernetes-validate) come with the test
# extras at their locked versions (scripts/venv.sh).
set -euo pipefail

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

missing=()
if ! command -v promtool >/dev/null || ! command -v prometheus >/dev/null; then
    missing+=(prometheus)
fi
command -v docker-compose >/dev/null || missing+=(docker-compose)
[ ${#missing[@]} = 0 ] && exit 0

policy=/usr/sbin/policy-rc.d
if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\n# scripts/tools.sh: start no service while installing\nexit 101\n' | as_root tee "$policy" >/dev/null
    as_root chmod 755 "$policy"
    trap 'as_root rm -f "$policy"' EXIT
fi
echo "installing ${missing[*]} from Debian packages"
as_root apt-get update -qq
# no recommends: prometheus would bring node-exporter, docker-compose the Docker engine
DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
if [ -d /run/systemd/system ] && systemctl list-unit-files prometheus.service >/dev/null 2>&1; then
    as_root systemctl disable --now prometheus.service >/dev/null 2>&1 || true  # not on the next boot either
fi
promtool --version | head -n 1
docker-compose version --short
