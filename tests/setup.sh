#!/usr/bin/env bash
# Sets up a fresh Debian 12 or Ubuntu 22.04/24.04 machine to run the whole test suite:
# system packages (PostgreSQL server and Dovecot IMAP for the tests, Chromium for the browser test,
# debootstrap/systemd-nspawn/nftables for the Ansible lab) and a virtualenv in .venv.
#
# Safe to run again: installs only what is missing and keeps an existing .venv.
# Run it as root or as a user with sudo; without either it names the packages to
# install by hand and still sets up the virtualenv.
# PYTHON names the interpreter for the virtualenv (default python3, which must be 3.11
# or newer), e.g. on Ubuntu 22.04: PYTHON=python3.11 bash tests/setup.sh
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3}"

say() { echo "setup.sh: $*"; }

# How to run a command as root: directly, through sudo, or not at all.
if [ "$(id -u)" -eq 0 ]; then
  AS_ROOT=()
elif command -v sudo >/dev/null 2>&1; then
  AS_ROOT=(sudo)
else
  AS_ROOT=(none)
fi
can_be_root() { [ "${AS_ROOT[*]-}" != none ]; }
as_root() { "${AS_ROOT[@]}" env DEBIAN_FRONTEND=noninteractive "$@"; }

installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "ok installed"; }
candidate() { apt-cache policy "$1" 2>/dev/null | grep -q 'Candidate: [^(]'; }

# Debian ships chromium/chromium-driver, Ubuntu chromium-browser/chromium-chromedriver.
# A pair already installed wins, then what apt offers, then the distribution's name.
chromium_packages() {
  local debian="chromium chromium-driver" ubuntu="chromium-browser chromium-chromedriver"
  if installed chromium && installed chromium-driver; then echo "$debian"; return; fi
  if installed chromium-browser && installed chromium-chromedriver; then echo "$ubuntu"; return; fi
  if candidate chromium; then echo "$debian"; return; fi
  if candidate chromium-browser; then echo "$ubuntu"; return; fi
  local ids=""  # ID and ID_LIKE, e.g. "linuxmint ubuntu debian"
  if [ -r /etc/os-release ]; then
    ids="$(sed -n 's/^ID\(_LIKE\)\{0,1\}=//p' /etc/os-release | tr -d '"' | tr '\n' ' ')"
  fi
  case " $ids " in
    *" ubuntu "*) echo "$ubuntu" ;;
    *) echo "$debian" ;;
  esac
}

# The interpreter and its venv module, for making .venv: python3-venv for python3,
# python3.N and python3.N-venv for python3.N; an interpreter by another name or path
# (pyenv, a build of one's own) brings its own.
PYTHON_PACKAGES=()
if [ ! -x .venv/bin/python ]; then
  case "${PYTHON##*/}" in
    python3) PYTHON_PACKAGES=(python3-venv) ;;
    python3.[0-9]*) PYTHON_PACKAGES=("${PYTHON##*/}" "${PYTHON##*/}-venv") ;;
  esac
fi
# npm fetches axe-core for the accessibility test; a Node.js installed another way brings its own.
NPM_PACKAGES=()
command -v npm >/dev/null 2>&1 || NPM_PACKAGES=(npm)
BASE_PACKAGES=(postgresql dovecot-imapd debootstrap systemd-container nftables iproute2 openssh-client rsync git
               "${PYTHON_PACKAGES[@]}" "${NPM_PACKAGES[@]}")

missing_packages() {
  local p
  for p in "$@"; do installed "$p" || echo "$p"; done
}

# Names the packages still missing, for a user who has to install them by hand.
left_for_hand=()

if ! command -v apt-get >/dev/null 2>&1 || ! command -v dpkg-query >/dev/null 2>&1; then
  say "no apt-get here (not Debian/Ubuntu): install by hand the equivalents of" \
      "${BASE_PACKAGES[*]} chromium chromium-driver; continuing with the virtualenv"
else
  read -r -a chromium <<<"$(chromium_packages)"
  mapfile -t missing < <(missing_packages "${BASE_PACKAGES[@]}" "${chromium[@]}")
  if [ "${#missing[@]}" -gt 0 ] && ! can_be_root; then
    left_for_hand=("${missing[@]}")
    say "not root and no sudo: as root, run: apt-get install ${missing[*]}"
    say "continuing with the virtualenv; the tests needing those packages will fail or skip until then"
  elif [ "${#missing[@]}" -gt 0 ]; then
    as_root apt-get update -qq
    # With fresh package lists apt itself says which Chromium names this system has.
    read -r -a chromium <<<"$(chromium_packages)"
    mapfile -t missing < <(missing_packages "${BASE_PACKAGES[@]}")
    # A Python this release does not package (python3.12 on Debian 12) may still be
    # installed another way: leave it out here, the version check below speaks for it.
    wanted=()
    for p in "${missing[@]}"; do
      if [[ " ${PYTHON_PACKAGES[*]} " == *" $p "* ]] && ! candidate "$p"; then continue; fi
      wanted+=("$p")
    done
    missing=("${wanted[@]}")
    if [ "${#missing[@]}" -gt 0 ]; then
      say "installing: ${missing[*]}"
      as_root apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    fi
    mapfile -t missing < <(missing_packages "${chromium[@]}")
    if [ "${#missing[@]}" -gt 0 ]; then
      say "installing: ${missing[*]}"
      # Ubuntu's chromium-browser installs a snap and fails without snapd (containers):
      # only the browser test needs it, and that test skips without it.
      as_root apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null ||
        say "warning: ${missing[*]} did not install; the browser test will be skipped"
    fi
  fi
  if can_be_root; then
    # The tests start their own throwaway PostgreSQL; the packaged cluster is not needed.
    as_root systemctl disable --now postgresql >/dev/null 2>&1 || true
    # Likewise Dovecot: the e-mail tests start their own on a free loopback port.
    as_root systemctl disable --now dovecot >/dev/null 2>&1 || true
  fi
fi

python_ok() { "$1" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; }

if [ ! -x .venv/bin/python ]; then
  if ! command -v "$PYTHON" >/dev/null 2>&1; then
    say "$PYTHON not found: install Python 3.11 or newer, or name one: PYTHON=python3.11 bash tests/setup.sh" >&2
    exit 2
  fi
  if ! python_ok "$PYTHON"; then
    say "$PYTHON is $("$PYTHON" -V 2>&1), the appliance needs 3.11 or newer:" \
        "PYTHON=python3.11 bash tests/setup.sh (apt-get install python3.11 python3.11-venv)" >&2
    exit 2
  fi
  "$PYTHON" -m venv .venv
elif ! python_ok .venv/bin/python; then
  say ".venv holds $(.venv/bin/python -V 2>&1), the appliance needs 3.11 or newer:" \
      "rm -r .venv, then run this again with PYTHON=python3.11" >&2
  exit 2
fi
.venv/bin/pip install -q --upgrade pip
.venv/bin/pip install -q -e '.[test,lab]'

# axe-core for the accessibility checks of the browser tests, at the version pinned in
# tests/js/package-lock.json (npm ci installs exactly that, from the registry or npm's cache).
if command -v npm >/dev/null 2>&1; then
  npm ci --prefix tests/js --no-audit --no-fund --loglevel=error
else
  say "npm not found: the accessibility test fails until 'npm ci --prefix tests/js' has run"
fi

# README holds the test command once; this prints it rather than a copy that could drift.
test_command="$(awk '/<!-- test-command -->/ { found = 1; next }
                     found && /^```/ { if (inside) exit; inside = 1; next }
                     inside { print }' README.md)"
if [ "${#left_for_hand[@]}" -gt 0 ]; then
  say "still to install as root: apt-get install ${left_for_hand[*]}"
fi
if [ -n "$test_command" ]; then
  say "done. Run the tests (README's command; this script is its first step):"
  echo "  $test_command"
else
  say "done, but README.md has no code block after <!-- test-command -->: restore it there" >&2
fi
