#!/bin/sh
# Run the lab: fresh Debian 12 hosts (systemd-nspawn) installed with the
# playbooks over SSH. Needs root on a Debian/Ubuntu machine; installs what
# it needs from the distribution's repositories. The host image is cached
# in /var/cache/appliance-lab (override: APPLIANCE_LAB_CACHE) and rebuilt
# when missing. Extra arguments go to pytest, e.g. -k preflight.
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

command -v ansible-playbook >/dev/null 2>&1 || {
    echo "run_lab.sh: ansible-playbook missing: pip install '.[lab]' (the ansible package, not only ansible-core)" >&2
    exit 2
}

exec timeout --signal=TERM --kill-after=60 3600 python -m pytest -m lab tests/lab -v "$@"
