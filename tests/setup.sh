#!/usr/bin/env bash
# Sets up a fresh Debian/Ubuntu machine to run the whole test suite:
# system packages (PostgreSQL server for the tests, Chromium for the browser test,
# debootstrap/systemd-nspawn/nftables for the Ansible lab) and a virtualenv in .venv.
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
APT_PACKAGES=(postgresql chromium chromium-driver debootstrap systemd-container nftables iproute2
              openssh-client rsync git python3-venv)
missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "installing: ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
# The tests start their own throwaway PostgreSQL; the packaged cluster is not needed.
$SUDO systemctl disable --now postgresql >/dev/null 2>&1 || true

PYTHON="${PYTHON:-python3}"
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/pip install -q --upgrade pip
.venv/bin/pip install -q -e '.[test,lab]'
echo "setup done: run .venv/bin/python -m pytest"
