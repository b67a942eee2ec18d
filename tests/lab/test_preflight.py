"""Preflight on a host too small for its profile: fails with the table, changes nothing."""

from __future__ import annotations

import pytest

from tests.lab.conftest import record, run_playbook, write_inventory

pytestmark = [pytest.mark.lab, pytest.mark.timeout(900)]


def _state(host) -> str:
    """What site.yml would change first: packages, the app's directories, the firewall."""
    return host.ssh(
        "dpkg-query -W -f '${Package} ${Version}\\n' | sort | sha256sum; "
        "ls -d /opt/appliance /var/lib/appliance /etc/nginx /etc/postgresql 2>&1; "
        "getent passwd appliance || echo no-user; nft list ruleset | wc -l"
    ).stdout


def test_site_stops_at_preflight_on_a_too_small_host(lab, bundle):
    bundle_dir, _ = bundle
    host = lab.boot("small1", 20)
    try:
        # This machine is big; make the profile ask for more RAM than it has,
        # the way a 2 GiB VM would fall short of the minimal profile's 4 GiB.
        inventory = write_inventory(
            lab.run_dir / "inventory-small", lab, {"small1": (host.address, ["appliance_app", "appliance_db"])},
            appliance_profile="minimal",
            appliance_bundle_dir=str(bundle_dir),
            appliance_admin_email="admin@lab.example",
            appliance_sizing_overrides={"hosts": {"allinone": {"minimum": {"memory_gib": 4096}}}},
        )
        before = _state(host)
        run = run_playbook(inventory, "site.yml", timeout=600)
        record("preflight failure (site.yml)", run.seconds)
        assert run.returncode != 0
        assert "Preflight small1 (minimal profile)" in run.output
        memory_row = next(line for line in run.output.splitlines() if line.strip().startswith("memory GiB"))
        assert ">= 4096" in memory_row and memory_row.rstrip().endswith("FAIL")
        cpu_row = next(line for line in run.output.splitlines() if line.strip().startswith("vCPUs"))
        assert cpu_row.rstrip().endswith("ok")
        assert "Preflight failed on small1: memory GiB" in run.output
        assert run.recap()["small1"]["changed"] == 0
        assert "Base system on every appliance host" not in run.output
        assert _state(host) == before
        assert "No such file" in before and "no-user" in before
    finally:
        lab.stop_host(host)
