"""The medium topology: an app host and a separate database host, allow-listed.

The medium profile's own extras (encrypted remote backups, TOTP enforcement)
come with later issues; this proves the roles already split across two hosts:
PostgreSQL listening on the network but reachable only from the app host, over
TLS the app verifies (a plain connection refused), the app talking to it, HTTPS
on the app host, egress closed to what each host needs, unattended security
updates from the site's mirror, an idempotent re-run, and last an offline re-run
two days later with the route to the mirror cut.
"""

from __future__ import annotations

import socket
import time

import pytest
import requests
import yaml

from tests.lab.conftest import record, run_playbook, write_inventory
from tests.lab.harness import debian_mirror

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
            # The lab's hosts take packages from this machine's mirror, as a site's from its own.
            appliance_apt_mirror=debian_mirror(),
            appliance_security_updates="unattended",
            # The lab machine has 2 vCPUs; medium asks for 4 per host.
            appliance_sizing_overrides={"hosts": {"app": {"minimum": {"vcpus": 2}}, "db": {"minimum": {"vcpus": 2}}}},
        )
        run = run_playbook(inventory, "site.yml")
        record("medium install (2 hosts)", run.seconds)
        assert run.returncode == 0, f"site.yml failed (log {run.log}):\n{run.tail()}"
        yield {"app": app, "db": db, "inventory": inventory, "lab": lab}
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


def test_app_reaches_the_database_over_tls_it_verifies(medium):
    app, db = medium["app"], medium["db"]
    config = yaml.safe_load(app.ssh("cat /var/lib/appliance/config.yml").stdout)
    assert config["database_url"].endswith("?sslmode=verify-full&sslrootcert=/var/lib/appliance/tls/postgresql-ca.crt")
    # Every connection of the app's role is encrypted (the web service and the worker hold some).
    rows = db.ssh("cd /tmp && sudo -u postgres psql -Atc \"select s.ssl, s.version from pg_stat_ssl s join "
                  "pg_stat_activity a using (pid) where a.usename = 'appliance'\"").stdout.split()
    assert rows and all(row.startswith("t|TLSv1.") for row in rows), rows
    hba = db.ssh("grep -v '^#' /etc/postgresql/15/main/pg_hba.conf").stdout
    lines = [line.split() for line in hba.splitlines() if line.strip()]
    assert ["hostssl", "appliance", "appliance", f"{app.address}/32", "scram-sha-256"] in lines, hba
    assert not [line for line in lines if line[0] == "host" and app.address in line[3]], hba
    key = db.ssh("stat -c '%a %U' /etc/postgresql/15/main/tls/server.key").stdout.split()
    assert key == ["600", "postgres"]
    pki = medium["inventory"] / "credentials" / "pki"
    assert oct((pki / "postgresql-ca.key").stat().st_mode & 0o777) == "0o600"


def _connect_from_app(app, db, sslmode: str) -> str:
    """A connection attempt from the app host with the app's own libpq (psycopg2 in its venv)."""
    script = (f"import psycopg2\ntry:\n psycopg2.connect(host='{db.address}', dbname='appliance', user='appliance', "
              f"password='not-the-password', sslmode='{sslmode}', connect_timeout=5)\n"
              "except psycopg2.OperationalError as e:\n print(e)\n")
    return app.ssh(f"/opt/appliance/venv/bin/python -c \"{script}\"").stdout


def test_database_refuses_a_connection_without_tls(medium):
    app, db = medium["app"], medium["db"]
    refused = _connect_from_app(app, db, "disable")
    assert "no pg_hba.conf entry" in refused and "no encryption" in refused, refused
    # With TLS the same attempt gets as far as the password (which is wrong here).
    assert "password authentication failed" in _connect_from_app(app, db, "require")


def _connect(host, address: str, port: int) -> str:
    """From inside a host: "open", "refused" (a reset came back) or "dropped" (nothing came back in 4 s)."""
    probe = host.ssh(f"timeout 4 bash -c 'exec 3<>/dev/tcp/{address}/{port}' 2>/dev/null; echo $?",
                     check=False, timeout=30)
    return {"0": "open", "124": "dropped"}.get(probe.stdout.strip(), "refused")


def test_egress_outside_the_profile_is_dropped(medium):
    app, db = medium["app"], medium["db"]
    for host in (app, db):
        assert "hook output priority filter; policy drop;" in host.ssh("nft list ruleset").stdout
    # Both ports listen and answer this machine: only the hosts' own output rules stop them.
    for address, port in ((db.address, 22), (app.address, 443)):
        socket.create_connection((address, port), timeout=3).close()
    started = time.monotonic()
    assert _connect(app, db.address, 5432) == "open", "the app host must reach the database"
    assert _connect(app, db.address, 22) == "dropped", "app -> db:22 is not in the app host's list"
    assert _connect(db, app.address, 443) == "dropped", "db -> app:443 is not in the database host's list"
    record("egress probes", time.monotonic() - started)


def test_unattended_security_updates_come_from_the_site_mirror(medium):
    mirror_host = debian_mirror().split("/")[2].split(":")[0]
    for host in (medium["app"], medium["db"]):
        periodic = host.ssh("apt-config dump APT::Periodic").stdout
        assert 'APT::Periodic::Unattended-Upgrade "1";' in periodic, periodic
        dry = host.ssh("unattended-upgrade --dry-run --debug 2>&1 | grep -m1 'Allowed origins'", timeout=120).stdout
        assert dry.strip().endswith(
            f"origin=Debian,codename=bookworm-security,label=Debian-Security,site={mirror_host}"), dry


def test_medium_rerun_changes_nothing(medium):
    run = run_playbook(medium["inventory"], "site.yml")
    assert run.returncode == 0, run.tail()
    recap = run.recap()
    assert recap["app1"]["changed"] == 0 and recap["db1"]["changed"] == 0, run.changed_tasks()


def _set_vars(inventory, **changes):
    vars_file = inventory / "group_vars" / "all.yml"
    variables = yaml.safe_load(vars_file.read_text())
    variables.update(changes)
    vars_file.write_text(yaml.safe_dump(variables, sort_keys=False))


# Last: it leaves the hosts offline.
def test_offline_rerun_two_days_later_changes_nothing(medium):
    app, db, inventory = medium["app"], medium["db"], medium["inventory"]
    hosts = (app, db)
    _set_vars(inventory, appliance_offline=True, appliance_security_updates="manual")
    # Two days without a mirror: the cache is stale, and the mirror out of reach.
    age = ("touch -d '2 days ago' /var/lib/apt/lists /var/lib/apt/lists/* /var/cache/apt/*.bin "
           "/var/lib/apt/periodic/* 2>/dev/null; true")
    for host in hosts:
        host.ssh(age)
    lab = medium["lab"]
    lab.cut_nat()
    try:
        lists_before = {h.name: h.ssh("stat -c %Y /var/lib/apt/lists").stdout for h in hosts}
        switch = run_playbook(inventory, "site.yml")
        assert switch.returncode == 0, switch.tail()
        again = run_playbook(inventory, "site.yml")
        record("offline re-run, cache 2 days old", again.seconds)
        assert again.returncode == 0, again.tail()
        recap = again.recap()
        assert recap["app1"]["changed"] == 0 and recap["db1"]["changed"] == 0, again.changed_tasks()
        for host in hosts:
            # Never refreshed, and Debian's timers will not try either.
            assert host.ssh("stat -c %Y /var/lib/apt/lists").stdout == lists_before[host.name]
            timers = host.ssh("systemctl is-enabled apt-daily.timer apt-daily-upgrade.timer", check=False).stdout
            assert timers.split() == ["disabled", "disabled"], timers
            assert "policy drop" in host.ssh("nft list chain inet appliance output").stdout
            assert "apt from the mirror" not in host.ssh("nft list chain inet appliance output").stdout
        # A package the host does not have is named, with the fix, before anything changes.
        missing = run_playbook(inventory, "site.yml", "-e", '{"base_packages": ["nftables", "lab-absent-package"]}')
        record("offline run refused for a missing package", missing.seconds)
        assert missing.returncode != 0
        assert "neither installed nor in its apt cache: lab-absent-package" in missing.output, missing.tail()
        assert "offline package set" in missing.output
        assert missing.recap()["db1"]["changed"] == 0
    finally:
        lab.restore_nat()
