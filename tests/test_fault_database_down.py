"""PostgreSQL down when the appliance starts: every entry point starts anyway, answers
503 with the reason, and connects by itself once the database is back (no restart)."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
import requests

from appliance.cli import main
from tests.helpers import CSRF_RE, stop_process_group
from tests.pg import TempPostgres, find_bindir, free_port, wait_port

pytestmark = pytest.mark.skipif(find_bindir() is None, reason="PostgreSQL server binaries not installed")

ADMIN, PASSWORD = "ops@example.test", "a-long-password-1"


@pytest.fixture
def own_pg():
    """A cluster of this test's own: it is stopped and started again, which the shared one must not be."""
    server = TempPostgres().start()
    try:
        yield server
    finally:
        server.stop()


def _appliance(home, *args, **kwargs):
    return [sys.executable, "-m", "appliance", "--home", str(home), *args]


def test_postgres_down_at_start_then_back_without_restart(own_pg, tmp_path, runner):
    home = tmp_path / "inst"
    result = runner.invoke(main, ["--home", str(home), "init", "--database-url", own_pg.url(own_pg.create_database()),
                                  "--admin-email", ADMIN, "--admin-password", PASSWORD])
    assert result.exit_code == 0, result.output
    own_pg.stop_server()

    # status: a finding and a non-zero exit, not a traceback.
    status = subprocess.run(_appliance(home, "status"), capture_output=True, text=True, timeout=60)
    assert status.returncode == 1, status.stdout + status.stderr
    assert "Traceback" not in status.stderr, status.stderr
    line = next(line for line in status.stdout.splitlines() if "Database" in line)
    assert line.startswith("ERROR") and "not reachable (connection refused)" in line and "config.yml" in line, line

    port, gport = free_port(), free_port()
    base = f"http://127.0.0.1:{port}"
    gunicorn = subprocess.Popen(
        [os.path.join(os.path.dirname(sys.executable), "gunicorn"), "--bind", f"127.0.0.1:{gport}", "--workers", "1",
         "--worker-class", "gthread", "--threads", "2", "appliance.web:create_app()"],
        env=dict(os.environ, APPLIANCE_HOME=str(home)), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True, start_new_session=True)
    serve = subprocess.Popen(_appliance(home, "serve", "--port", str(port)), stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True, start_new_session=True)
    worker = subprocess.Popen(_appliance(home, "worker", "--interval", "1"), stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        assert wait_port(port, timeout=30), "serve did not start while the database was down"
        health = requests.get(f"{base}/health", timeout=10)
        assert health.status_code == 503 and health.json()["database"] == "unreachable"
        assert "connection refused" in health.json()["reason"]
        api = requests.get(f"{base}/api/v1/me", headers={"Authorization": "Bearer x"}, timeout=10)
        assert api.status_code == 503 and api.json()["reason"] == "database_down"
        assert "not reachable (connection refused)" in api.json()["message"]
        hook = requests.post(f"{base}/hooks/some-key", data=b"{}", timeout=10)
        assert hook.status_code == 503 and hook.headers["Content-Type"].startswith("application/json")
        assert hook.json()["reason"] == "database_down"
        page = requests.get(f"{base}/login", timeout=10)
        assert page.status_code == 503 and page.headers["Content-Type"].startswith("text/html")
        assert "not reachable (connection refused)" in page.text
        assert wait_port(gport, timeout=30), "gunicorn's app factory did not start while the database was down"
        assert requests.get(f"http://127.0.0.1:{gport}/health", timeout=10).status_code == 503

        own_pg.start_server()
        started = time.monotonic()
        while requests.get(f"{base}/health", timeout=10).status_code != 200:
            assert time.monotonic() - started < 10, "the server did not reconnect within 10 s"
            time.sleep(0.1)
        healed_after = time.monotonic() - started
        # The master key check that waited for the database has run: logging in reads encrypted columns.
        session = requests.Session()
        token = CSRF_RE.search(session.get(f"{base}/login", timeout=10).text).group(1)
        login = session.post(f"{base}/login", data={"email": ADMIN, "password": PASSWORD, "csrf_token": token},
                             allow_redirects=False, timeout=10)
        assert login.status_code == 302, login.text[:500]
        assert requests.get(f"http://127.0.0.1:{gport}/health", timeout=10).status_code == 200
        started = time.monotonic()
        while True:  # the worker resumed its rounds: status sees its heartbeat and the database
            status = subprocess.run(_appliance(home, "status"), capture_output=True, text=True, timeout=60)
            if status.returncode == 0 and "OK     Background worker" in status.stdout:
                break
            assert time.monotonic() - started < 20, status.stdout + status.stderr
            time.sleep(0.5)
        assert "OK     Database" in status.stdout
    finally:
        served = stop_process_group(serve)
        worked = stop_process_group(worker)
        gunicorned = stop_process_group(gunicorn)
    assert healed_after < 10
    assert "Traceback" not in served, served
    assert "Traceback" not in gunicorned and "Booting worker" in gunicorned, gunicorned
    assert "waiting: The database is not reachable (connection refused); next try in 1 s" in worked, worked
    assert "the database answers again: running jobs" in worked, worked
    assert "Traceback" not in worked, worked
    print(f"healed {healed_after:.2f} s after PostgreSQL came back")
