"""The maximal topology, reduced to what fits the lab: a load balancer (HAProxy), two
app hosts, a PostgreSQL primary and its streaming standby (no backup host: the
backup work proves that one). One set of hosts for the whole module, booted in
parallel and installed once; the failover runs last, since it changes the topology.
"""

from __future__ import annotations

import base64
import itertools
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from tests.lab.conftest import record, run_playbook, write_inventory

pytestmark = [pytest.mark.lab, pytest.mark.timeout(2400)]

HOSTS = {"lb1": 41, "app1": 42, "app2": 43, "db1": 44, "db2": 45}
GROUPS = {"lb1": ["appliance_lb"], "app1": ["appliance_app"], "app2": ["appliance_app"],
          "db1": ["appliance_db"], "db2": ["appliance_db_standby"]}
ADMIN = "admin@lab.example"
METRICS_TOKEN = "lab-metrics-token-0123456789abcdef"
SMALL = {"vcpus": 1, "memory_gib": 1, "disk_gib": 1}


@pytest.fixture(scope="module")
def maximal(lab, bundle):
    bundle_dir, _ = bundle
    started = time.monotonic()
    with ThreadPoolExecutor(len(HOSTS)) as pool:
        booted = dict(zip(HOSTS, pool.map(lambda item: lab.boot(*item), HOSTS.items()), strict=True))
    record("maximal: boot 5 hosts (parallel)", time.monotonic() - started)
    try:
        app_addresses = [booted[name].address for name in ("app1", "app2")]
        inventory = write_inventory(
            lab.run_dir / "inventory-maximal", lab,
            {name: (host.address, GROUPS[name]) for name, host in booted.items()},
            appliance_profile="maximal",
            appliance_bundle_dir=str(bundle_dir),
            appliance_admin_email=ADMIN,
            haproxy_server_name="lb1.lab.example",
            haproxy_server_aliases=[f"IP:{booted['lb1'].address}"],
            postgresql_hba_entries=[{"address": f"{address}/32"} for address in app_addresses],
            appliance_config_extra={"metrics_token": METRICS_TOKEN},
            # The lab's hosts are small: the profile's sizes, scaled down; no backup host here.
            appliance_sizing_overrides={
                "hosts": {kind: {"minimum": SMALL} for kind in ("lb", "app", "db_primary", "db_standby", "backup")}
                | {"backup": {"minimum": SMALL, "count": {"min": 0, "max": 1}}},
                "web": {"workers": 2, "threads": 4},
                "worker": {"processes": 1},
                "postgresql": {"max_connections": 100, "shared_buffers": "128MB", "effective_cache_size": "512MB",
                               "maintenance_work_mem": "64MB"},
            },
        )
        # With --diff: the keys copied between the app hosts must not show even then.
        run = run_playbook(inventory, "site.yml", "--diff")
        record("maximal install (5 hosts)", run.seconds)
        assert run.returncode == 0, f"site.yml failed (log {run.log}):\n{run.tail()}"
        ca = inventory / "lb1.crt"
        ca.write_text(booted["lb1"].ssh("cat /etc/haproxy/tls/server.crt").stdout)
        yield {**booted, "inventory": inventory, "ca": str(ca), "base": f"https://{booted['lb1'].address}",
               "run": run}
    finally:
        for host in booted.values():
            lab.stop_host(host)


def _haproxy_servers(lb) -> dict[str, dict[str, str]]:
    """HAProxy's own view of its app hosts (status, sessions), from its stats socket."""
    script = ("import socket; s = socket.socket(socket.AF_UNIX); s.connect('/run/haproxy/admin.sock'); "
              "s.sendall(b'show stat\\n'); import sys; sys.stdout.write(s.makefile().read())")
    out = lb.ssh(f'python3 -c "{script}"').stdout.lstrip("# ").splitlines()
    header = out[0].split(",")
    rows = [dict(zip(header, line.split(","), strict=False)) for line in out[1:] if line]
    return {r["svname"]: r for r in rows if r["pxname"] == "appliance_app" and r["svname"] not in ("BACKEND",)}


def _password(maximal) -> str:
    return (maximal["inventory"] / "credentials" / "admin_password").read_text().split()[0]


def _login(maximal, session=None) -> requests.Response:
    """A write through the load balancer: a sign-in stores a session and an audit event."""
    session, base = session or requests.Session(), maximal["base"]
    page = session.get(f"{base}/login", verify=maximal["ca"], timeout=10)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
    return session.post(f"{base}/login", data={"email": ADMIN, "password": _password(maximal), "csrf_token": token},
                        headers={"Referer": f"{base}/login"}, verify=maximal["ca"], timeout=10,
                        allow_redirects=False)


def _sql(host, query: str) -> str:
    return host.ssh(f"runuser -u postgres -- psql -d appliance -tAc \"{query}\"").stdout.strip()


def test_install_reports_no_failure(maximal):
    recap = maximal["run"].recap()
    assert set(recap) == set(HOSTS) and all(r["failed"] == 0 for r in recap.values()), recap


def test_install_with_diff_shows_no_key_or_password(maximal):
    output = maximal["run"].output
    secrets = {name: (maximal["inventory"] / "credentials" / name).read_text().split()[0]
               for name in ("admin_password", "postgresql_app_password", "postgresql_replication_password")}
    for name in maximal["app1"].ssh("ls /var/lib/appliance/keys").stdout.split():
        content = maximal["app1"].ssh(f"cat /var/lib/appliance/keys/{name}").stdout.strip()
        if len(content) >= 16:
            secrets[name] = content
            secrets[f"{name} (base64)"] = base64.b64encode(content.encode()).decode()
    assert "master.key" in secrets and "session.key" in secrets
    shown = [name for name, value in secrets.items()
             if any(len(line) >= 16 and line in output for line in value.splitlines())]
    assert shown == [], f"--diff output of site.yml shows {shown}"


def test_requests_through_the_load_balancer_reach_both_app_hosts(maximal):
    before = {name: int(row["stot"]) for name, row in _haproxy_servers(maximal["lb1"]).items()}
    for _ in range(20):
        health = requests.get(f"{maximal['base']}/health", verify=maximal["ca"], timeout=10)
        assert health.status_code == 200 and health.json()["database"] == "ok"
    servers = _haproxy_servers(maximal["lb1"])
    assert {name: row["status"] for name, row in servers.items()} == {"app1": "UP", "app2": "UP"}
    assert all(int(servers[name]["stot"]) - before[name] >= 5 for name in servers), servers
    # Round robin sends the form to one app host and its post to the other: it only
    # works because both hold the same session key.
    answer = _login(maximal)
    assert answer.status_code == 302, answer.text[:500]
    keys = {name: maximal[name].ssh("cd /var/lib/appliance/keys && sha256sum * | sort").stdout
            for name in ("app1", "app2")}
    assert keys["app1"] == keys["app2"] and "master.key" in keys["app1"]
    # gunicorn listens for the load balancer only: from this machine the port is filtered.
    assert requests.get(f"{maximal['base']}/health", verify=maximal["ca"], timeout=10).status_code == 200
    with pytest.raises(requests.ConnectionError):
        requests.get(f"http://{maximal['app1'].address}:8000/health", timeout=3)
    # Plain HTTP only redirects.
    plain = requests.get(f"http://{maximal['lb1'].address}/login", allow_redirects=False, timeout=10)
    assert plain.status_code == 301 and plain.headers["Location"].startswith("https://")


def test_stopping_one_app_host_loses_no_request(maximal):
    app2, results, stop_at = maximal["app2"], [], 40
    session = requests.Session()
    for n in range(200):  # bounded: one client, one request at a time (at most one in flight)
        if n == stop_at:
            stopper = threading.Thread(target=app2.ssh, args=("systemctl stop appliance-web appliance-worker",))
            stopper.start()
        try:
            results.append(session.get(f"{maximal['base']}/login", verify=maximal["ca"], timeout=15).status_code)
        except requests.RequestException as exc:
            results.append(type(exc).__name__)
    stopper.join(60)
    try:
        deadline = time.monotonic() + 20
        while not _haproxy_servers(maximal["lb1"])["app2"]["status"].startswith("DOWN"):
            assert time.monotonic() < deadline, "HAProxy never marked the stopped app2 down"
            time.sleep(0.5)
        lost = [r for r in results if r != 200]
        record("maximal: requests lost, app2 stopped", len(lost))
        assert len(lost) <= 1, f"{len(lost)} of {len(results)} requests failed: {lost}"
    finally:
        app2.ssh("systemctl start appliance-web appliance-worker")
        deadline = time.monotonic() + 60
        while _haproxy_servers(maximal["lb1"])["app2"]["status"] != "UP":
            assert time.monotonic() < deadline, "app2 did not come back behind the load balancer"
            time.sleep(1)


def test_writes_on_the_primary_appear_on_the_standby(maximal):
    db1, db2 = maximal["db1"], maximal["db2"]
    for _ in range(3):
        assert _login(maximal).status_code == 302
    newest = _sql(db1, "SELECT max(id) FROM audit_event")
    deadline = time.monotonic() + 30
    while _sql(db2, f"SELECT count(*) FROM audit_event WHERE id = {newest}") != "1":
        assert time.monotonic() < deadline, "the standby never showed the primary's newest audit event"
        time.sleep(0.5)
    assert _sql(db2, "SELECT pg_is_in_recovery()") == "t"
    metrics = requests.get(f"{maximal['base']}/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"},
                           verify=maximal["ca"], timeout=10).text
    assert "appliance_replication_standbys 1" in metrics, metrics
    assert 'appliance_replication_lag_seconds{standby="standby_db2"}' in metrics


def test_rerun_changes_nothing(maximal):
    run = run_playbook(maximal["inventory"], "site.yml")
    record("maximal re-run (changed=0)", run.seconds)
    assert run.returncode == 0, run.tail()
    changed = {name: r["changed"] for name, r in run.recap().items()}
    assert set(changed.values()) == {0}, (changed, run.changed_tasks())
    check = run_playbook(maximal["inventory"], "site.yml", "--check", "--diff")
    assert check.returncode == 0, check.tail()
    assert {r["changed"] for r in check.recap().values()} == {0}, check.changed_tasks()


def test_failover_promotes_the_standby_and_writes_resume(maximal):
    db1, db2 = maximal["db1"], maximal["db2"]
    assert _login(maximal).status_code == 302  # at least one event from before, whichever tests ran
    count_before = _sql(db1, "SELECT count(*) FROM audit_event")
    newest_before = _sql(db1, "SELECT max(id) FROM audit_event")
    attempts, done = [], threading.Event()

    def writer():  # one sign-in after another through the load balancer, each timed
        while not done.is_set():
            try:
                ok = _login(maximal).status_code == 302
            except (requests.RequestException, AttributeError):
                ok = False
            attempts.append((time.monotonic(), ok))
            time.sleep(0.1)

    thread = threading.Thread(target=writer, daemon=True)
    thread.start()
    time.sleep(3)
    run = run_playbook(maximal["inventory"], "failover.yml")
    record("failover.yml", run.seconds)
    deadline = time.monotonic() + 60
    while not (attempts and attempts[-1][1] and attempts[-1][0] > deadline - 55):
        assert time.monotonic() < deadline, "writes did not resume after the failover"
        time.sleep(0.5)
    time.sleep(2)
    done.set()
    thread.join(30)
    assert run.returncode == 0, run.tail()
    # Write unavailability: the longest stretch between two successful writes.
    oks = [t for t, ok in attempts if ok]
    gap = max(b - a for a, b in itertools.pairwise(oks))
    record("failover: seconds without writes", gap)
    assert gap < 60, gap
    assert _sql(db2, "SELECT pg_is_in_recovery()") == "f"
    assert _sql(db2, f"SELECT count(*) FROM audit_event WHERE id <= {newest_before}") == count_before
    assert int(_sql(db2, "SELECT max(id) FROM audit_event")) > int(newest_before)
    # The old primary is fenced: stopped, and masked so a reboot does not bring it back.
    assert db1.ssh("systemctl is-enabled postgresql@15-main", check=False).stdout.strip() == "masked"
    assert f"@{db2.address}:5432/" in maximal["app1"].ssh("cat /var/lib/appliance/config.yml").stdout
    audit = maximal["app1"].ssh("runuser -u appliance -- /opt/appliance/venv/bin/appliance --home /var/lib/appliance "
                                "audit verify", check=False)
    assert audit.returncode == 0, audit.stdout + audit.stderr
    again = run_playbook(maximal["inventory"], "failover.yml")
    assert again.returncode == 0, again.tail()
    assert {r["changed"] for r in again.recap().values()} == {0}, again.changed_tasks()
