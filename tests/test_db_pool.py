"""Connections are pooled per process: PostgreSQL's pool outlives a server restart, SQLite's keeps its locks.

Real HTTP over loopback (waitress, 4 threads) against a cluster of the test's own, so
it can be stopped and started while signed webhook deliveries keep arriving.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from appliance.core.config import Instance
from appliance.web import provisioning as setup
from appliance.web.channels.webhook import signed_headers
from appliance.web.db import PooledPostgres
from tests.helpers import running_app, served_over_loopback
from tests.pg import TempPostgres

THREADS = 4


@pytest.fixture
def own_server():
    server = TempPostgres().start()
    yield server
    server.stop()


def _instance(tmp_path, url) -> Instance:
    home = tmp_path / "home"
    home.mkdir()
    # No webhook throttle: the load here is one address posting as fast as it can.
    setup.ensure_config(home, {"database_url": url, "database_pool_size": THREADS,
                               "throttle": {"webhook_requests_per_address": 10**6}})
    instance = Instance.load(home)
    setup.ensure_keys(instance)
    setup.migrate(instance)
    return instance


def _channel(app):
    from appliance.web.models.contact_center import Channel
    from appliance.web.services import tenants

    with app.app_context():
        provider = tenants.create_provider("Provider P")
        customer = tenants.create_child(provider, "Customer C", "customer")
        return Channel.create(tenant=customer, kind="webhook", name="gateway")


def _post(base, channel, n):
    raw = json.dumps({"id": f"d{n}", "sender_id": f"s{n % 7}", "body": f"message {n}"}).encode()
    request = urllib.request.Request(f"{base}/hooks/{channel.public_key}", data=raw, method="POST", headers={
        "Content-Type": "application/json"} | signed_headers(channel.secret, raw))
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return 0  # the connection itself failed: counted, and asserted on below


def _sessions(server, database) -> int:
    return int(server.psql(f"SELECT sessions FROM pg_stat_database WHERE datname = '{database}'"))


def test_pool_reuses_connections_and_survives_a_restart(own_server, tmp_path):
    name = own_server.create_database()
    instance = _instance(tmp_path, own_server.url(name))
    with running_app(instance) as app:
        assert isinstance(app.extensions["database"], PooledPostgres)
        channel = _channel(app)
        results, stop, counter, lock = [], threading.Event(), iter(range(10**9)), threading.Lock()

        with served_over_loopback(app, threads=THREADS) as base:
            before = _sessions(own_server, name)
            for n in range(40):
                assert _post(base, channel, n) == 202
            # 40 requests, at most one new backend per serving thread.
            assert _sessions(own_server, name) - before <= THREADS

            def load():
                for _ in range(3000):  # bounded, whatever happens
                    if stop.is_set():
                        return
                    with lock:
                        n = next(counter) + 100
                    began = time.monotonic()
                    results.append((began, _post(base, channel, n)))

            clients = [threading.Thread(target=load, daemon=True) for _ in range(THREADS)]
            for t in clients:
                t.start()
            time.sleep(0.5)
            own_server.stop_server()
            time.sleep(0.5)
            own_server.start_server()
            back = time.monotonic()
            time.sleep(2.0)
            stop.set()
            for t in clients:
                t.join(30)
            # A restart while the pool sits idle: its connections are dead when the next
            # requests draw them, and not one of those requests may fail for it.
            own_server.stop_server()
            own_server.start_server()
            quiet = [_post(base, channel, 10**6 + n) for n in range(3 * THREADS)]
            app.extensions["database"].close_all()

    statuses = {status for _, status in results}
    assert statuses <= {202, 503}, f"only stored (202) or database unavailable (503): {sorted(statuses)}"
    after = [status for began, status in results if began > back + 1.0]
    assert len(after) >= 20, f"the load went on after the restart ({len(after)} requests)"
    assert set(after) == {202}, f"{after.count(503)} of {len(after)} requests failed over a second after the restart"
    assert quiet == [202] * len(quiet), f"after a restart of an idle pool: {quiet}"


_OTHER_PROCESS = """
import sqlite3, sys
con = sqlite3.connect(sys.argv[1])
con.execute("PRAGMA journal_mode=wal")
con.execute("CREATE TABLE IF NOT EXISTS other_process (n INTEGER)")
con.execute("INSERT INTO other_process VALUES (1)")
con.commit()
con.close()  # its last connection: it checkpoints and removes the WAL unless another process holds the file
"""


def test_kept_sqlite_connections_keep_their_locks(tmp_path):
    """``serve`` and ``worker`` build the app, then check the schema: that check must neither
    bind a second database nor open and close the file beside the app's kept connections;
    nor may a later check of the file in the same process (an in-process command).

    A close of the file by the process drops the POSIX locks its SQLite connections hold;
    another process's last connection then removes the WAL the pooled ones still write to
    (two servers under a key rotation ended with "database disk image is malformed").
    """
    from appliance.cli.instance import _build_app, _check_schema
    from appliance.web.db import PooledSqlite, database_proxy
    from appliance.web.models.tenancy import Tenant
    from appliance.web.startup import check_sqlite_file

    instance = _instance(tmp_path, "sqlite:///appliance.db")
    app = _build_app(instance)
    _check_schema(app)
    database = app.extensions["database"]
    assert isinstance(database, PooledSqlite)
    assert database_proxy.obj is database, "the models must use the app's own database"
    path = database.database
    with app.app_context(), database.connection_context():
        Tenant.select().count()  # a kept connection, back in the pool when the context ends
    assert database._connections, "the connection is kept between requests"
    # What an in-process command does next (``keys status`` checks the file before binding its own).
    check_sqlite_file(instance, Path(path))
    subprocess.run([sys.executable, "-c", _OTHER_PROCESS, path], check=True, timeout=60)
    assert os.path.exists(f"{path}-wal"), "another process removed the WAL this one's kept connections use"
    with app.app_context(), database.connection_context():
        assert Tenant.select().count() >= 0
        assert database.execute_sql("PRAGMA quick_check").fetchone()[0] == "ok"
