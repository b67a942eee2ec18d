"""The medium topology: an app host and a separate database host, allow-listed.

The medium profile's own extras (encrypted remote backups, TOTP enforcement)
come with later issues; this proves the roles already split across two hosts:
PostgreSQL listening on the network but reachable only from the app host,
the app talking to it, HTTPS on the app host, and an idempotent re-run.
"""

from __future__ import annotations

import socket

import pytest
import requests

from tests.lab.conftest import record, run_playbook, write_inventory

pytestmark = [pytest.mark.lab, pytest.mark.timeout(1500)]


@pytest.fixture(scope="module")
def medium(lab, bundle):
    bundle_dir, _ = bundle
    app = lab.boot("app1", 31)
    db = lab.boot("db1", 32)
    try:
        inventory = write_inventory(
            lab.run_dir / "inventory-medium", lab,
            {"app1": (app.address, ["appliance_app"]), "db1": (db.address, ["appliance_db"])},
            appliance_profile="medium",
            appliance_bundle_dir=str(bundle_dir),
            appliance_admin_email="admin@lab.example",
            nginx_server_name="app1.lab.example",
            nginx_server_aliases=[f"IP:{app.address}"],
            postgresql_hba_entries=[{"address": f"{app.address}/32"}],
            # The lab machine has 2 vCPUs; medium asks for 4 per host.
            appliance_sizing_overrides={"hosts": {"app": {"minimum": {"vcpus": 2}}, "db": {"minimum": {"vcpus": 2}}}},
        )
        run = run_playbook(inventory, "site.yml")
        record("medium install (2 hosts)", run.seconds)
        assert run.returncode == 0, f"site.yml failed (log {run.log}):\n{run.tail()}"
        yield {"app": app, "db": db, "inventory": inventory}
    finally:
        lab.stop_host(app)
        lab.stop_host(db)


def test_app_host_serves_https_with_the_database_on_the_other_host(medium):
    app, db = medium["app"], medium["db"]
    cert = medium["inventory"] / "app1.crt"
    cert.write_text(app.ssh("cat /etc/nginx/tls/server.crt").stdout)
    health = requests.get(f"https://{app.address}/health", verify=str(cert), timeout=10)
    assert health.status_code == 200 and health.json()["database"] == "ok"
    assert requests.get(f"https://{app.address}/login", verify=str(cert), timeout=10).status_code == 200
    assert f"@{db.address}:5432/" in app.ssh("cat /var/lib/appliance/config.yml").stdout
    assert app.ssh("systemctl is-active postgresql", check=False).stdout.split() == ["inactive"]
    assert db.ssh("systemctl is-active nginx appliance-web", check=False).stdout.split() == ["inactive", "inactive"]


def test_database_port_is_open_to_the_app_host_only(medium):
    app, db = medium["app"], medium["db"]
    assert db.ssh("ss -Hltn 'sport = :5432'").stdout.strip(), "PostgreSQL should listen on the network"
    ruleset = db.ssh("nft list ruleset").stdout
    assert f"ip saddr {app.address} tcp dport 5432 accept" in ruleset
    # From this machine (not the app host) the port is filtered.
    with pytest.raises(OSError):
        socket.create_connection((db.address, 5432), timeout=3).close()
    # The app's web and worker may reach only loopback and the database host.
    unit = app.ssh("systemctl cat appliance-web").stdout
    assert f"IPAddressAllow=localhost {db.address}" in unit


def test_medium_rerun_changes_nothing(medium):
    run = run_playbook(medium["inventory"], "site.yml")
    assert run.returncode == 0, run.tail()
    recap = run.recap()
    assert recap["app1"]["changed"] == 0 and recap["db1"]["changed"] == 0, run.changed_tasks()
