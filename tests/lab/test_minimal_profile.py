"""The minimal profile installed over SSH on a fresh Debian 12 host, as a customer would.

One host is installed once (the package fixture `installed`, shared with the
other lab files that only look at an installed host); the tests then check it
from outside, in order: HTTPS, services, key files, idempotence, check mode,
sandboxing, and last the upgrade (which changes the host).
"""

from __future__ import annotations

import re
import time

import pytest
import requests
import yaml

from tests.lab.conftest import MINIMAL_ADMIN as ADMIN
from tests.lab.conftest import MINIMAL_HOST as HOST
from tests.lab.conftest import record, run_playbook

pytestmark = [pytest.mark.lab, pytest.mark.timeout(2400)]

SERVICES = ("appliance-web", "appliance-worker")


def _get(installed, path, **kw):
    # Verified against the host's own certificate: its subject names must cover the address.
    address = installed["host"].address
    return requests.get(f"https://{address}{path}", verify=str(installed["ca"]), timeout=10, **kw)


def test_install_reports_no_failure(installed):
    recap = installed["run"].recap()
    assert recap[HOST]["failed"] == 0 and recap[HOST]["unreachable"] == 0
    assert recap[HOST]["changed"] > 10, "a fresh install must change the host"


def test_https_through_nginx_serves_the_login_page(installed):
    host = installed["host"]
    page = _get(installed, "/login")
    assert page.status_code == 200
    assert "<title>Log in</title>" in page.text
    assert page.headers["Server"] == "nginx"
    assert page.headers["Strict-Transport-Security"].startswith("max-age=")
    assert page.headers.get("X-Frame-Options") == "DENY"
    health = _get(installed, "/health")
    assert health.status_code == 200 and health.json()["status"] == "ok"
    plain = requests.get(f"http://{host.address}/login", allow_redirects=False, timeout=10)
    assert plain.status_code == 301 and plain.headers["Location"].startswith("https://")


def test_only_modern_tls(installed):
    import socket
    import ssl

    host = installed["host"]
    for version in (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        ctx.minimum_version = ctx.maximum_version = version
        with socket.create_connection((host.address, 443), timeout=10) as sock, ctx.wrap_socket(sock) as tls:
            assert tls.version() == version.name.replace("_", ".")
    # Older protocols: the client library may refuse them itself, so read the
    # server's own configuration rather than trust a failed handshake.
    config = host.ssh("nginx -T 2>/dev/null").stdout
    protocols = re.findall(r"^\s*ssl_protocols\s+([^;]+);", config, re.M)
    assert protocols and set(protocols) == {"TLSv1.2 TLSv1.3"}, protocols


def _main_pid(host, service):
    return int(host.ssh(f"systemctl show --property=MainPID --value {service}").stdout.strip())


@pytest.mark.parametrize("service", SERVICES)
def test_service_restarts_after_kill_9(installed, service):
    host = installed["host"]
    assert host.ssh(f"systemctl is-active {service}").stdout.strip() == "active"
    assert host.ssh(f"systemctl is-enabled {service}").stdout.strip() == "enabled"
    before = _main_pid(host, service)
    assert before > 0
    host.ssh(f"kill -9 {before}")
    deadline = time.monotonic() + 60
    while True:
        state = host.ssh(f"systemctl is-active {service}", check=False).stdout.strip()
        pid = _main_pid(host, service)
        if state == "active" and pid not in (0, before):
            break
        assert time.monotonic() < deadline, f"{service} did not come back after kill -9 (state {state})"
        time.sleep(1)
    if service == "appliance-web":
        deadline = time.monotonic() + 60
        while _get(installed, "/health").status_code != 200:
            assert time.monotonic() < deadline, "web did not answer again after restart"
            time.sleep(1)


def test_key_files_are_private_to_the_service_user(installed):
    host = installed["host"]
    listing = host.ssh("stat -c '%n %a %U %G' /var/lib/appliance/keys/* /var/lib/appliance/config.yml").stdout
    rows = [line.split() for line in listing.splitlines()]
    names = {row[0].rsplit("/", 1)[-1] for row in rows}
    assert {"master.key", "session.key", "config.yml"} <= names
    for path, mode, user, group in rows:
        assert (mode, user, group) == ("600", "appliance", "appliance"), path
    keys_dir = host.ssh("stat -c '%a %U' /var/lib/appliance/keys").stdout.split()
    assert keys_dir == ["700", "appliance"]


def test_firewall_drops_what_the_profile_does_not_open(installed):
    host = installed["host"]
    ruleset = host.ssh("nft list ruleset").stdout
    assert re.search(r"hook input priority filter; policy drop;", ruleset)
    assert "tcp dport 443 accept" in ruleset
    assert "5432" not in ruleset


def test_second_run_changes_nothing(installed):
    run = run_playbook(installed["inventory"], "site.yml")
    record("re-run (site.yml, installed host)", run.seconds)
    assert run.returncode == 0, run.tail()
    assert run.recap()[HOST]["changed"] == 0, f"changed on re-run: {run.changed_tasks()}"


def test_check_diff_is_clean_and_shows_no_secret(installed):
    run = run_playbook(installed["inventory"], "site.yml", "--check", "--diff")
    assert run.returncode == 0, run.tail()
    assert run.recap()[HOST]["changed"] == 0, f"check mode would change: {run.changed_tasks()}"
    password_file = installed["inventory"] / "credentials" / "postgresql_app_password"
    admin_file = installed["inventory"] / "credentials" / "admin_password"
    for secret_file in (password_file, admin_file):
        secret = secret_file.read_text().split()[0]
        assert len(secret) >= 20
        assert secret not in run.output


def test_systemd_sandboxing_exposure_is_low(installed):
    host = installed["host"]
    out = host.ssh("systemd-analyze security --no-pager " + " ".join(f"{s}.service" for s in SERVICES)).stdout
    scores = dict(re.findall(r"^(appliance-\w+)\.service\s+([\d.]+)\s", out, re.M))
    assert set(scores) == set(SERVICES), out
    for service, score in scores.items():
        record(f"systemd exposure {service}", float(score))
        assert float(score) <= 2.0, f"{service} exposure {score}:\n{out}"


def _table_counts(host) -> dict[str, int]:
    tables = host.ssh(
        "cd /tmp && sudo -u postgres psql -d appliance -Atc "
        "\"select table_name from information_schema.tables where table_schema='public'\""
    ).stdout.split()
    query = " union all ".join(f"select '{t}', count(*) from \\\"{t}\\\"" for t in tables)
    out = host.ssh(f"cd /tmp && sudo -u postgres psql -d appliance -At -F ' ' -c \"{query}\"").stdout
    return {name: int(count) for name, count in (line.split() for line in out.splitlines())}


def test_upgrade_to_a_newer_bundle_keeps_the_data(installed, newer_bundle):
    host, inventory = installed["host"], installed["inventory"]
    new_dir, new_manifest = newer_bundle
    assert new_manifest["version"] != installed["manifest"]["version"]
    before = _table_counts(host)
    assert before["user"] >= 1
    admin_before = host.ssh(
        f"cd /tmp && sudo -u postgres psql -d appliance -Atc \"select id from \\\"user\\\" where email='{ADMIN}'\""
    ).stdout.strip()
    assert admin_before, "the first admin should exist before the upgrade"
    key_before = host.ssh("sha256sum /var/lib/appliance/keys/master.key").stdout.split()[0]

    vars_file = inventory / "group_vars" / "all.yml"
    variables = yaml.safe_load(vars_file.read_text())
    variables["appliance_bundle_dir"] = str(new_dir)
    vars_file.write_text(yaml.safe_dump(variables, sort_keys=False))
    run = run_playbook(inventory, "upgrade.yml")
    record("upgrade (upgrade.yml)", run.seconds)
    assert run.returncode == 0, run.tail()

    version = host.ssh("/opt/appliance/venv/bin/appliance --version").stdout
    assert new_manifest["version"] in version
    after = _table_counts(host)
    for table, count in before.items():
        assert after.get(table, -1) >= count, f"{table}: {count} rows before, {after.get(table)} after"
    admin_after = host.ssh(
        f"cd /tmp && sudo -u postgres psql -d appliance -Atc \"select id from \\\"user\\\" where email='{ADMIN}'\""
    ).stdout.strip()
    assert admin_after == admin_before
    assert host.ssh("sha256sum /var/lib/appliance/keys/master.key").stdout.split()[0] == key_before
    assert _get(installed, "/login").status_code == 200
    for service in SERVICES:
        assert host.ssh(f"systemctl is-active {service}").stdout.strip() == "active"
    # The previous bundle stays for a rollback.
    assert installed["manifest"]["version"] in host.ssh("ls /opt/appliance/bundles").stdout
    # And the upgraded host is as settled as before.
    again = run_playbook(inventory, "site.yml")
    assert again.returncode == 0 and again.recap()[HOST]["changed"] == 0, again.changed_tasks()
