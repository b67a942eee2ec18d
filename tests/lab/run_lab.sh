#!/bin/sh
# Run the lab: fresh Debian 12 hosts (systemd-nspawn) installed with the
# playbooks over SSH. Needs root on a Debian/Ubuntu machine; installs what
# it needs from the distribution's repositories. The host image is cached
# in /var/cache/appliance-lab (override: APPLIANCE_LAB_CACHE) and rebuilt
# when missing. Runs the virtualenv's python and ansible (.venv, made by
# tests/setup.sh). Extra arguments go to pytest, e.g. -k preflight.
set -eu
cd "$(dirname "$0")/../.."

if [ "$(id -u)" -ne 0 ]; then
    echo "run_lab.sh: needs root (bridges, nftables, systemd-nspawn)" >&2
    exit 2
fi

need=""
for pair in debootstrap:debootstrap systemd-nspawn:systemd-container nft:nftables \
            nsenter:util-linux ssh:openssh-client ssh-keygen:openssh-client ip:iproute2; do
    command -v "${pair%%:*}" >/dev/null 2>&1 || need="$need ${pair#*:}"
done
if [ -n "$need" ]; then
    apt-get update -q
    # shellcheck disable=SC2086
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q $need
fi

# The virtualenv's tools, not whatever python or ansible is first on PATH: the lab
# tests the ansible and the appliance code that tests/setup.sh installed in .venv.
VENV="$PWD/.venv"
[ -x "$VENV/bin/python" ] || {
    echo "run_lab.sh: no virtualenv in $VENV: run 'bash tests/setup.sh' first" >&2
    exit 2
}
[ -x "$VENV/bin/ansible-playbook" ] || {
    echo "run_lab.sh: $VENV/bin/ansible-playbook missing: $VENV/bin/pip install -e '.[lab]'" \
         "(the ansible package, not only ansible-core)" >&2
    exit 2
}
PATH="$VENV/bin:$PATH"
export PATH

exec timeout --signal=TERM --kill-after=60 3600 "$VENV/bin/python" -m pytest -m lab tests/lab -v "$@"
