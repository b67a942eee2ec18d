"""A full disk under the SQLite instance: named answers (507 "disk full on <path>"),
one log line a minute, /health and status failing, recovery once space is freed, and
an init that stops cleanly and resumes."""

from __future__ import annotations

import datetime as dt
import errno
import json
import logging
import os
import sqlite3
import subprocess
import sys
import time
from contextlib import closing

import pytest
import requests

from appliance.cli import main
from appliance.web.channels.webhook import signed_headers
from tests.helpers import FakeClock, build_world, make_instance, running_app, stop_process_group
from tests.pg import free_port, wait_port


@pytest.fixture
def small_disk(tmp_path):
    """A 16 MiB tmpfs of the test's own (we run as root; containers may forbid mounts)."""
    where = tmp_path / "disk"
    where.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m,mode=0755", "tmpfs", str(where)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs for the full-disk test (needs root with CAP_SYS_ADMIN): "
                    f"{done.stderr.strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], capture_output=True)


def fill(disk, leave: int = 0):
    """Write a filler file until the disk has no more than ``leave`` bytes free."""
    filler = disk / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        for chunk in (1 << 20, 1 << 16, 1 << 12):
            while True:
                st = os.statvfs(disk)
                if st.f_bavail * st.f_frsize - chunk < leave:
                    break
                try:
                    os.write(fd, b"\0" * chunk)
                except OSError as exc:
                    assert exc.errno == errno.ENOSPC
                    break
    finally:
        os.close(fd)
    return filler


def test_full_disk_is_named_logged_once_failed_by_health_and_healed_without_restart(small_disk, clock):
    clock.set(dt.datetime.now(dt.UTC))  # the seed's rows and licence clock match the server's real time
    home = small_disk / "inst"
    instance = make_instance(home, "sqlite:///appliance.db")
    with instance.config_path.open("a") as cfg:
        cfg.write("disk_min_free_bytes: 1048576\n")
    with running_app(instance) as app, app.app_context():
        world = build_world()
        channel = world.objects["A"]["shared_channel"]
        key, secret = channel.public_key, channel.secret
        conversation = world.objects["A"]["conversation"].id
        api_headers = world.headers("A", "agent")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    serve = subprocess.Popen([sys.executable, "-m", "appliance", "--home", str(home), "serve", "--port", str(port)],
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)

    def hook(n):
        raw = json.dumps({"phone": "+49 170 5550000", "body": f"delivery {n} " + "x" * 2000}).encode()
        signed = signed_headers(secret, raw, now=int(time.time()))
        return requests.post(f"{base}/hooks/{key}", data=raw, timeout=10,
                             headers={"Content-Type": "application/json"} | signed)

    def reply(n):
        return requests.post(f"{base}/api/v1/conversations/{conversation}/messages", timeout=10,
                             json={"body": f"reply {n}"}, headers=api_headers)

    def status():
        return subprocess.run([sys.executable, "-m", "appliance", "--home", str(home), "status"],
                              capture_output=True, text=True, timeout=60)

    try:
        assert wait_port(port, timeout=30)
        assert requests.get(f"{base}/health", timeout=10).status_code == 200
        assert hook(0).status_code == 202 and reply(0).status_code == 201
        with closing(sqlite3.connect(home / "appliance.db")) as db:  # no WAL left to reuse: the next write needs space
            db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            stored = db.execute("SELECT COUNT(*) FROM message").fetchone()[0]
        filler = fill(small_disk)

        health = requests.get(f"{base}/health", timeout=10)
        assert health.status_code in (503, 507) and health.json()["status"] == "error"
        assert f"disk full on {home}" in json.dumps(health.json())
        for n in range(1, 21):
            answer = hook(n)
            assert answer.status_code == 507, answer.text
            assert answer.json()["reason"] == "disk_full"
            assert f"disk full on {home}" in answer.json()["message"]
        answer = reply(1)
        assert answer.status_code == 507 and f"disk full on {home}" in answer.json()["message"], answer.text
        during = status()
        assert during.returncode == 1, during.stdout + during.stderr
        assert "Traceback" not in during.stderr, during.stderr
        assert any(line.startswith("ERROR") and "disk full on" in line for line in during.stdout.splitlines()), \
            during.stdout

        filler.unlink()
        started = time.monotonic()
        while requests.get(f"{base}/health", timeout=10).status_code != 200:
            assert time.monotonic() - started < 10, "/health did not recover within 10 s of freeing space"
            time.sleep(0.1)
        assert hook(100).status_code == 202 and reply(100).status_code == 201
        with closing(sqlite3.connect(home / "appliance.db")) as db:  # the refused writes left nothing behind
            assert db.execute("SELECT COUNT(*) FROM message").fetchone()[0] == stored + 2
        after = status()
        assert "ERROR" not in after.stdout and after.returncode == 0, after.stdout + after.stderr
    finally:
        output = stop_process_group(serve)
    logged = [line for line in output.splitlines() if "disk full on" in line]
    assert len(logged) == 1, output  # 20 webhooks, a reply and /health within a minute: one line
    assert "Traceback" not in output, output


def test_init_on_a_full_disk_says_so_keeps_nothing_half_written_and_resumes(small_disk, runner):
    home = small_disk / "inst"
    args = ["--home", str(home), "init", "--admin-email", "ops@example.test", "--admin-password", "a-long-password-1"]
    filler = fill(small_disk)
    first = runner.invoke(main, args)
    assert first.exit_code == 1 and f"disk full on {home}" in first.output, first.output
    assert "run 'appliance --home" in first.output and "Traceback" not in first.output
    assert not (home / "config.yml").exists() and not list(home.rglob("*.tmp"))

    # Room for the config, the keys and the first migrations: stops part-way through the schema.
    filler.unlink()
    filler = fill(small_disk, leave=400 * 1024)
    second = runner.invoke(main, args)
    assert second.exit_code == 1 and f"disk full on {home}" in second.output, second.output
    assert "applying m0001_core" in second.output
    assert (home / "config.yml").exists() and not list(home.rglob("*.tmp"))

    filler.unlink()
    third = runner.invoke(main, args)
    assert third.exit_code == 0, third.output
    assert "provider admin" in third.output and "m0001_core" not in third.output  # resumed, not redone
    status = runner.invoke(main, ["--home", str(home), "status"])
    assert "OK     Database" in status.output, status.output


def test_a_fault_is_logged_once_a_minute_however_many_requests_meet_it(caplog, tmp_path):
    from peewee import OperationalError

    from appliance.web.readiness import Readiness

    clock = FakeClock()
    readiness = Readiness(None, [tmp_path], 0, clock=lambda: clock().timestamp())
    full = OperationalError(sqlite3.OperationalError("database or disk is full"))
    with caplog.at_level(logging.ERROR, logger="appliance.web.readiness"):
        for _ in range(50):
            assert readiness.report(full).status == 507
        clock.advance(seconds=59)
        readiness.report(full)
        clock.advance(seconds=2)
        readiness.report(full)
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2, lines
    assert "[50 more in the last minute]" in lines[1]


def test_a_disk_fault_heals_when_space_grows_or_a_minute_after_the_last_one(tmp_path):
    from peewee import OperationalError

    from appliance.web.readiness import Readiness

    clock = FakeClock()
    readiness = Readiness(None, [tmp_path], 0, clock=lambda: clock().timestamp())
    readiness.report(OperationalError(sqlite3.OperationalError("disk I/O error")))
    assert readiness.disk_problem() == "disk I/O error on the database server (a full or failing disk)"
    clock.advance(seconds=59)
    assert readiness.disk_problem() is not None
    clock.advance(seconds=2)
    assert readiness.disk_problem() is None
    # A local fault clears as soon as its disk has more room than when it was met.
    full = OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "audit.anchor"))
    assert readiness.report(full).reason == f"disk full on {tmp_path}"
    assert readiness.disk_problem() == f"disk full on {tmp_path}"
    (tmp_path / "ballast").write_bytes(b"\0" * (1 << 20))
    readiness.report(full)  # met again, with a little less space
    (tmp_path / "ballast").unlink()
    assert readiness.disk_problem() is None
