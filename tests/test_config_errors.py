"""Bad configuration and bad databases at start-up: every entry point refuses with one message
naming the file, the key and the fix, and never a traceback.

Most cases run the command in-process (click's runner, fast); a few run the real
``python -m appliance`` and gunicorn processes, to show that serve and worker fail fast
and that what an operator sees in the terminal or the journal is the message alone.
docs/OPERATIONS.md ("Configuration and start-up errors") is written from these cases.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import yaml

from appliance.cli import main
from appliance.web.migrations import available

ROOT = Path(__file__).resolve().parents[1]
GUNICORN = Path(sys.executable).with_name("gunicorn")
NOBODY = 65534
LATEST = max(v for v, _ in available())


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    """One initialised SQLite instance; each case works on a copy of it."""
    from click.testing import CliRunner

    home = tmp_path_factory.mktemp("template") / "home"
    result = CliRunner().invoke(main, ["--home", str(home), "init", "--admin-email", "admin@example.com",
                                       "--admin-password", "a-long-admin-password"])
    assert result.exit_code == 0, result.output
    return home


@pytest.fixture
def home(template, tmp_path):
    copy = tmp_path / "home"
    shutil.copytree(template, copy, symlinks=True)
    return copy


def _settings(home: Path) -> dict:
    return yaml.safe_load((home / "config.yml").read_text())


def _write(home: Path, text: str) -> None:
    (home / "config.yml").write_text(text)


def _refused(result, *expected):
    """The command stopped with a message (not an exception) holding every ``expected`` fragment."""
    output = result.output
    assert result.exit_code != 0, output
    assert isinstance(result.exception, SystemExit), f"uncaught {result.exception!r}"
    assert "Traceback" not in output
    for fragment in expected:
        assert fragment in output, f"{fragment!r} not in:\n{output}"
    return output


# -- config.yml: one row per mistake an operator makes ------------------------------------
# (id, text appended to the instance's own config.yml, fragments the message must hold)

BASE = "database_url: sqlite:///appliance.db\nprofile: embedded\n"

CONFIG_CASES = [
    ("typo-top-level", "database-url: postgresql://app@db/app\n",
     ["line 3: database-url", "did you mean 'database_url'"]),
    ("typo-in-section", "sync:\n  enable: true\n", ["sync.enable", "did you mean 'sync.enabled'"]),
    ("unknown-key", "frobnicate: 3\n", ["frobnicate", "unknown setting"]),
    ("key-outside-its-section", "vendor_url: https://vendor.example\n",
     ["vendor_url", "did you mean 'sync.vendor_url'"]),
    ("section-given-a-bool", "sync: yes\n", ["sync", "must be a section", "sync: {enabled: false}"]),
    ("number-given-a-word", "max_request_bytes: lots\n", ["max_request_bytes", "whole number", "'lots'"]),
    ("typo-with-a-suffix", "database_url_x: 1\n", ["database_url_x", "did you mean 'database_url'"]),
    ("database-url-a-number", None, ["database_url", "must be text"]),
    ("database-url-unknown-scheme", None, ["database_url", "postgresql://USER"]),
    ("below-range", "json_max_depth: 0\n", ["json_max_depth", "between 1 and 1000"]),
    ("negative-size", "attachment_max_bytes: -5\n", ["attachment_max_bytes", "1 or more"]),
    ("nested-range", "business:\n  partner_discounts:\n    gold: 150\n",
     ["business.partner_discounts.gold", "between 0 and 100"]),
    ("list-item-range", "business:\n  renewal_reminder_days: [30, 0]\n",
     ["line 4: business.renewal_reminder_days[1]", "between 1 and 3650"]),
    ("nested-type", "email:\n  network_timeout: fast\n", ["email.network_timeout", "a number", "'fast'"]),
    ("nested-empty-value", "channels:\n  outbox_batch:\n", ["channels.outbox_batch", "has no value", "50"]),
    ("bool-given-a-word", "session_cookie_secure: maybe\n", ["session_cookie_secure", "true or false"]),
    ("choice", "master_key_source: vault\n", ["master_key_source", "'vault'", "file, env, passphrase"]),
    ("choice-misspelt", "pan_reveal_role: supervisr\n", ["pan_reveal_role", "did you mean 'supervisor'"]),
    ("unknown-time-zone", "timezone: Europe/Atlantis\n", ["timezone", "IANA"]),
    ("currency-code", "business:\n  currency: euro\n", ["business.currency", "ISO 4217"]),
    ("list-given-text", "attachment_types: image/png\n", ["attachment_types", "a list"]),
    ("two-mistakes-both-named", "databse_url: x\nlive_poll_seconds: 0\n",
     ["2 setting(s)", "line 3: databse_url", "line 4: live_poll_seconds"]),
    ("yaml-bad-indentation", "sync:\n  enabled: true\n vendor_url: https://v.example\n",
     ["not valid YAML at line 5", "indent with spaces"]),
    ("yaml-tab", "sync:\n\tenabled: true\n", ["not valid YAML at line 4"]),
    ("yaml-unclosed-list", "attachment_types: [image/png\n", ["not valid YAML at line"]),
    ("not-a-mapping", None, ["must be a mapping of settings"]),
]


def _config_text(case_id: str, extra: str | None) -> str:
    if case_id == "database-url-a-number":
        return "database_url: 5\nprofile: embedded\n"
    if case_id == "database-url-unknown-scheme":
        return "database_url: mysql://app@db/app\nprofile: embedded\n"
    if case_id == "not-a-mapping":
        return "- database_url: sqlite:///appliance.db\n"
    return BASE + extra


@pytest.mark.parametrize("case_id,extra,expected", CONFIG_CASES, ids=[c[0] for c in CONFIG_CASES])
def test_a_bad_config_is_refused_naming_the_file_and_the_key(home, runner, case_id, extra, expected):
    _write(home, _config_text(case_id, extra))
    for command in (["status"], ["migrate"], ["audit", "verify"]):
        result = runner.invoke(main, ["--home", str(home), *command])
        _refused(result, str(home / "config.yml"), *expected)


def test_a_database_password_is_never_repeated_in_the_message(home, runner):
    _write(home, "database_url: 'mysql://app:s3cret-pw@db/app'\n")
    output = _refused(runner.invoke(main, ["--home", str(home), "status"]), "database_url")
    assert "s3cret-pw" not in output
    _write(home, "metrics_token: 123456789\n")
    output = _refused(runner.invoke(main, ["--home", str(home), "status"]), "metrics_token")
    assert "123456789" not in output


@pytest.mark.parametrize("variable,value,expected", [
    ("APPLIANCE_MAX_REQUEST_BYTES", "lots", "whole number"),
    ("APPLIANCE_SESSION_COOKIE_SECURE", "perhaps", "true or false"),
    ("APPLIANCE_PROFILE", "huge", "embedded, minimal, medium, maximal"),
    ("APPLIANCE_JSON_MAX_DEPTH", "0", "between 1 and 1000"),
])
def test_a_bad_environment_variable_is_refused_by_name(home, runner, monkeypatch, variable, value, expected):
    monkeypatch.setenv(variable, value)
    _refused(runner.invoke(main, ["--home", str(home), "status"]), variable, expected)


def test_the_settings_written_by_init_and_by_ansible_are_accepted(home, runner):
    """The role's template writes these keys; a schema that refused them would stop every install."""
    settings = _settings(home)
    settings.update(session_cookie_secure=True, admin_totp_required=True, trusted_proxy_hops=1,
                    sync={"enabled": False, "locked_off": True, "vendor_url": ""},
                    backup={"retention_days": 30, "archive": True, "archive_retention_months": 12},
                    phone_default_country_code=49, crypto_key_cache_seconds=0.5)
    _write(home, yaml.safe_dump(settings))
    result = runner.invoke(main, ["--home", str(home), "migrate"])
    assert result.exit_code == 0 and "schema up to date" in result.output, result.output


# -- the database: only init creates one; none is accepted from newer code --------------------

def _set_schema(home: Path, version: int | None = None, drop_last: bool = False):
    with sqlite3.connect(home / "appliance.db") as conn:
        if version is not None:
            conn.execute("INSERT INTO schema_version (version, name, applied_at) VALUES (?, ?, ?)",
                         (version, f"m{version:04d}_future", "2031-01-01 00:00:00"))
        if drop_last:
            conn.execute("DELETE FROM schema_version WHERE version = ?", (LATEST,))
    conn.close()


COMMANDS = [["status"], ["migrate"], ["worker", "--once"], ["audit", "verify"], ["keys", "status"]]


def test_a_missing_database_is_created_by_init_alone(home, runner):
    database = home / "appliance.db"
    database.unlink()
    for extra in ("-wal", "-shm"):
        (home / f"appliance.db{extra}").unlink(missing_ok=True)
    for command in COMMANDS:
        result = runner.invoke(main, ["--home", str(home), *command])
        _refused(result, f"{database} does not exist", "init")
        assert not database.exists(), f"{command} created the database"
    result = runner.invoke(main, ["--home", str(home), "init", "--admin-email", "admin@example.com",
                                  "--admin-password", "a-long-admin-password"])
    assert result.exit_code == 0 and database.exists(), result.output
    assert runner.invoke(main, ["--home", str(home), "migrate"]).exit_code == 0


def test_a_database_from_newer_code_is_refused_by_every_command(home, runner):
    _set_schema(home, version=LATEST + 7)
    for command in [*COMMANDS, ["init"]]:
        result = runner.invoke(main, ["--home", str(home), *command])
        _refused(result, f"schema version {LATEST + 7}", f"this code's {LATEST}", "install the appliance release")


@pytest.mark.parametrize("damage,expected", [
    ("truncated", "is truncated"),
    ("garbage", "is not an SQLite database"),
    ("empty", "is empty (0 bytes)"),
    ("corrupt-pages", "cannot be read"),
])
def test_a_damaged_database_file_is_named(home, runner, damage, expected):
    database = home / "appliance.db"
    with sqlite3.connect(database) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    (home / "appliance.db-wal").unlink(missing_ok=True)
    data = database.read_bytes()
    if damage == "truncated":
        database.write_bytes(data[: len(data) // 2])
    elif damage == "garbage":
        database.write_bytes(b"PK\x03\x04 this is a zip file, restored over the database" + bytes(4096))
    elif damage == "empty":
        database.write_bytes(b"")
    else:  # a whole header, then noise where the schema's pages were
        database.write_bytes(data[:100] + os.urandom(len(data) - 100))
    for command in (["status"], ["migrate"], ["worker", "--once"], *([["init"]] if damage != "empty" else [])):
        _refused(runner.invoke(main, ["--home", str(home), *command]), str(database), expected)


def test_health_is_not_ok_on_an_empty_schema_or_a_pending_migration(home):
    from appliance.core.config import Instance
    from appliance.web import create_app

    _set_schema(home, drop_last=True)
    client = create_app(instance=Instance.load(home)).test_client()
    answer = client.get("/health")
    assert answer.status_code == 503
    assert answer.get_json()["status"] == "error" and "1 migration(s) pending" in answer.get_json()["reason"]

    (home / "appliance.db").unlink()
    with sqlite3.connect(home / "appliance.db") as conn:  # a database without our tables: schema 0
        conn.execute("CREATE TABLE unrelated (a)")
    conn.close()
    client = create_app(instance=Instance.load(home)).test_client()
    answer = client.get("/health")
    assert answer.status_code == 503 and answer.get_json()["schema_version"] == 0
    assert "no schema" in answer.get_json()["reason"]


# -- real processes: what the terminal and the journal show -------------------------------

def _run(args, home: Path, timeout=60, user=None, program=None):
    env = dict(os.environ, PYTHONPATH=str(ROOT), APPLIANCE_HOME=str(home))
    command = [str(program)] if program else [sys.executable, "-m", "appliance"]
    command += args
    if user is not None:
        command = ["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups", *command]
    started = time.monotonic()
    proc = subprocess.run(command, env=env, cwd=str(home), capture_output=True, text=True, timeout=timeout)
    return proc, time.monotonic() - started


def _process_refused(proc, *expected):
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0, output
    assert "Traceback" not in output, output
    for fragment in expected:
        assert fragment in output, f"{fragment!r} not in:\n{output}"


def test_serve_refuses_a_missing_database_fast(home):
    (home / "appliance.db").unlink()
    proc, took = _run(["serve", "--port", "1"], home)
    _process_refused(proc, f"{home / 'appliance.db'} does not exist", "init")
    assert took < 30 and not (home / "appliance.db").exists()


def test_worker_refuses_sync_yes_fast(home):
    _write(home, BASE + "sync: yes\n")
    proc, took = _run(["worker", "--interval", "1"], home)
    _process_refused(proc, str(home / "config.yml"), "sync: must be a section")
    assert took < 30


def test_serve_names_the_yaml_line(home):
    _write(home, BASE + "sync:\n  enabled: true\n   vendor_url: x\n")
    proc, _ = _run(["serve", "--port", "1"], home)
    _process_refused(proc, str(home / "config.yml"), "line 5")


@pytest.mark.skipif(not GUNICORN.exists(), reason="gunicorn is not installed in this virtualenv")
@pytest.mark.parametrize("fault", ["newer-schema", "missing-database", "typo"])
def test_gunicorn_stops_with_one_message(home, fault):
    """As the systemd unit starts it: the arbiter checks once and stops with status 4, no worker traceback."""
    if fault == "newer-schema":
        _set_schema(home, version=LATEST + 1)
        expected = f"schema version {LATEST + 1}"
    elif fault == "missing-database":
        (home / "appliance.db").unlink()
        expected = "does not exist"
    else:
        _write(home, BASE + "databse_url: postgresql://app@db/app\n")
        expected = "did you mean 'database_url'"
    proc, took = _run(["--bind", "127.0.0.1:0", "--workers", "2", "--worker-class", "gthread",
                       "--config", "python:appliance.web.gunicorn_hooks", "appliance.web:create_app()"],
                      home, program=GUNICORN)
    _process_refused(proc, expected)
    assert proc.returncode == 4 and took < 30
    assert not (home / "appliance.db").exists() or fault != "missing-database"


@pytest.fixture
def nobody_home(template):
    """A copy of the instance owned by an unprivileged user (root reads every file regardless of mode)."""
    if os.geteuid() != 0:
        path = Path(tempfile.mkdtemp(prefix="appliance-perm-"))
        shutil.copytree(template, path / "home", symlinks=True)
        yield path / "home", None
    else:
        if not shutil.which("setpriv"):
            pytest.skip("setpriv (util-linux) is needed to drop root for permission cases")
        path = Path(tempfile.mkdtemp(prefix="appliance-perm-"))
        shutil.copytree(template, path / "home", symlinks=True)
        for item in [path, *path.rglob("*")]:
            os.chown(item, NOBODY, NOBODY, follow_symlinks=False)
        yield path / "home", NOBODY
    shutil.rmtree(path, ignore_errors=True)


@pytest.mark.parametrize("target,expected", [
    ("config.yml", "Cannot read {path}: permission denied"),
    ("keys/master.key", "Master key file {path} cannot be read: permission denied"),
    ("appliance.db", "Cannot open the database {path}: permission denied"),
])
def test_an_unreadable_file_is_named(nobody_home, target, expected):
    home, user = nobody_home
    path = home / target
    if target == "keys/master.key" and user is not None:
        os.chown(path, 0, 0)  # root's, mode 0600: the key file check on its mode still passes
    else:
        path.chmod(0o000)
    for command in (["status"], ["worker", "--once"]):
        proc, took = _run(command, home, user=user)
        _process_refused(proc, expected.format(path=path))
        assert took < 30


def test_a_newer_postgresql_schema_is_refused_and_health_fails_on_a_pending_one(tmp_path, pg_url, runner):
    """The same refusals on PostgreSQL, where there is no file: the message names the database and host."""
    from appliance.web import create_app
    from appliance.web.migrations import SchemaVersion
    from tests.helpers import make_instance

    instance = make_instance(tmp_path / "home", pg_url)
    app = create_app(instance=instance)
    database = app.extensions["database"]
    with database.connection_context():
        SchemaVersion.delete().where(SchemaVersion.version == LATEST).execute()
    answer = app.test_client().get("/health")
    assert answer.status_code == 503 and "1 migration(s) pending" in answer.get_json()["reason"]
    assert runner.invoke(main, ["--home", str(instance.home), "migrate"]).exit_code == 0
    assert app.test_client().get("/health").status_code == 200
    with database.connection_context():
        SchemaVersion.create(version=LATEST + 3, name="m9999_future")
    for command in (["status"], ["migrate"], ["worker", "--once"], ["audit", "verify"]):
        result = runner.invoke(main, ["--home", str(instance.home), *command])
        _refused(result, f"schema version {LATEST + 3}", "on 127.0.0.1", str(instance.config_path))
