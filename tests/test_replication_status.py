"""Streaming replication on the System page and in /metrics, against a real standby:
pg_basebackup of the suite's PostgreSQL server, started as a hot standby streaming
from it through a replication slot."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from tests.helpers import login, make_instance, running_app
from tests.pg import free_port

SLOT = "test_standby"


def _as_postgres(cmd: list[str]) -> list[str]:
    # PostgreSQL refuses to run as root; the suite's own server runs as postgres too.
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd


@pytest.fixture(scope="module")
def standby(pg_server):
    root = Path(tempfile.mkdtemp(prefix="appliance-pg-standby-"))
    if os.geteuid() == 0:
        pw = pwd.getpwnam("postgres")
        os.chown(root, pw.pw_uid, pw.pw_gid)
    data, port = root / "data", free_port()
    env = dict(os.environ, PGPASSWORD=pg_server.password)
    subprocess.run(_as_postgres([str(pg_server.bindir / "pg_basebackup"), "-h", "127.0.0.1", "-p", str(pg_server.port),
                                 "-U", pg_server.user, "-D", str(data), "-X", "stream", "-R", "-C", "-S", SLOT]),
                   check=True, capture_output=True, env=env, timeout=120)
    opts = (f"-c port={port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={root} "
            f"-c cluster_name={SLOT} -c hot_standby=on -c fsync=off")
    subprocess.run(_as_postgres([str(pg_server.bindir / "pg_ctl"), "-D", str(data), "-o", opts,
                                 "-l", str(root / "log"), "-w", "-t", "60", "start"]),
                   check=True, capture_output=True, timeout=90)
    try:
        deadline = time.monotonic() + 30
        while pg_server.psql(f"SELECT state FROM pg_stat_replication WHERE application_name = '{SLOT}'").strip() \
                != "streaming":
            assert time.monotonic() < deadline, (root / "log").read_text()
            time.sleep(0.2)
        yield port
    finally:
        subprocess.run(_as_postgres([str(pg_server.bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w",
                                     "stop"]), capture_output=True, timeout=60)
        pg_server.psql(f"SELECT pg_drop_replication_slot('{SLOT}') FROM pg_replication_slots "
                       f"WHERE slot_name = '{SLOT}'")
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def primary_app(tmp_path, pg_url, standby):
    with running_app(make_instance(tmp_path / "home", pg_url)) as app:
        yield app


def test_metrics_show_the_standby_and_its_lag(primary_app):
    text = primary_app.test_client().get("/metrics").get_data(as_text=True)
    assert "appliance_database_in_recovery 0" in text
    assert "appliance_replication_standbys 1" in text
    lag = next(line for line in text.splitlines() if line.startswith("appliance_replication_lag_seconds{"))
    assert f'standby="{SLOT}"' in lag and 0 <= float(lag.split()[-1]) < 60
    assert f'appliance_replication_lag_bytes{{standby="{SLOT}"}} ' in text


def test_system_page_shows_replication_streaming(primary_app):
    from tests.helpers import build_world

    with primary_app.app_context():
        world = build_world()
    client = primary_app.test_client()
    assert login(client, world.email("P", "admin")).status_code == 302
    page = client.get("/admin/system/").get_data(as_text=True)
    assert "Replication" in page and f"{SLOT} streaming" in page


def test_a_standby_says_it_is_read_only(tmp_path, pg_server, pg_url, standby):
    from appliance.web.system_status import collect, replication_state

    instance = make_instance(tmp_path / "home", pg_url)
    # The same database, read from the standby once replay has reached it.
    standby_url = pg_url.replace(f":{pg_server.port}/", f":{standby}/")
    instance.settings["database_url"] = standby_url
    from appliance.web import db as dbmod

    database = dbmod.bind(standby_url)
    deadline = time.monotonic() + 30
    with database.connection_context():
        while True:
            try:
                database.execute_sql("SELECT 1 FROM schema_version LIMIT 1")
                break
            except Exception:
                database.rollback()
                assert time.monotonic() < deadline, "the standby never replayed the new database"
                time.sleep(0.2)
        state = replication_state(database)
        assert state.in_recovery and state.standbys == []
        checks = {c.name: c for c in collect(instance, database)}
    assert checks["Replication"].level == "warn" and "read-only standby" in checks["Replication"].detail


def test_sqlite_has_no_replication_line(tmp_path):
    from appliance.web.system_status import collect

    instance = make_instance(tmp_path / "home", "sqlite:///appliance.db")
    with running_app(instance) as app, app.app_context():
        names = [c.name for c in collect(instance, app.extensions["database"])]
        metrics = app.test_client().get("/metrics").get_data(as_text=True)
    assert "Database" in names and "Replication" not in names
    assert "appliance_replication" not in metrics
