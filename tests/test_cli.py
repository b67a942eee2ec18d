"""The core ``appliance`` commands: init, migrate, worker, serve, as an operator runs them."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import urllib.request

import pytest

from appliance.cli import main
from tests.helpers import make_instance
from tests.pg import free_port, wait_port


@pytest.fixture
def run(runner):
    """``appliance [--home HOME] ARGS...``; what a command raises is raised here."""

    def invoke(*args, home=None, **kwargs):
        base = ["--home", str(home)] if home else []
        return runner.invoke(main, [*base, *args], catch_exceptions=False, **kwargs)

    return invoke


def test_init_is_idempotent_and_keeps_secrets_private(tmp_path, run):
    home = tmp_path / "inst"
    first = run("init", "--admin-email", "Root@Example.test", "--admin-password", "a-long-password", home=home)
    assert first.exit_code == 0, first.output
    assert "initialised" in first.output and "provider admin" in first.output
    keys = {p.name: p for p in (home / "keys").iterdir()}
    assert "session.key" in keys
    before = {name: p.read_bytes() for name, p in keys.items()}
    for path in [*keys.values(), home / "config.yml", home / "appliance.db"]:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    assert stat.S_IMODE((home / "keys").stat().st_mode) == 0o700
    second = run("init", "--admin-email", "other@example.test", "--admin-password", "another-password", home=home)
    assert second.exit_code == 0 and "already initialised" in second.output
    assert {p.name: p.read_bytes() for p in (home / "keys").iterdir()} == before  # never overwritten
    assert run("migrate", home=home).output.strip() == "schema up to date"


def test_init_without_admin_says_what_to_pass(tmp_path, runner):
    result = runner.invoke(main, ["--home", str(tmp_path / "x"), "init"], input="")
    assert result.exit_code != 0
    assert "--admin-email" in result.output and "--admin-password" in result.output


def test_init_refuses_a_weak_password(tmp_path, run):
    result = run("init", "--admin-email", "a@example.test", "--admin-password", "short", home=tmp_path / "x")
    assert result.exit_code != 0 and "10 characters" in result.output


def test_commands_without_home_explain(tmp_path, monkeypatch, run, runner):
    monkeypatch.delenv("APPLIANCE_HOME", raising=False)
    result = runner.invoke(main, ["migrate"])
    assert result.exit_code != 0 and "--home" in result.output
    result = run("migrate", home=tmp_path / "missing")
    assert result.exit_code != 0 and "init" in result.output


def test_database_down_is_a_clear_error(tmp_path, run):
    home = tmp_path / "inst"
    result = run("init", "--admin-email", "a@example.test", "--admin-password", "a-long-password",
                 "--database-url", f"postgresql://nobody:pw@127.0.0.1:{free_port()}/none", home=home)
    assert result.exit_code != 0
    assert "Migration failed" in result.output and "OperationalError" in result.output


def test_worker_runs_a_round(tmp_path, run):
    home = tmp_path / "inst"
    run("init", "--admin-email", "a@example.test", "--admin-password", "a-long-password", home=home)
    result = run("worker", "--once", home=home)
    assert result.exit_code == 0, result.output
    assert "worker started" in result.output and "worker stopped" in result.output
    # ``status`` sees that round, and nothing in a fresh installation is an error (exit 0).
    status = run("status", home=home)
    assert status.exit_code == 0, status.output
    assert "OK     Background worker" in status.output, status.output


def test_serve_answers_over_http_and_stops_on_sigterm(tmp_path, run):
    home = tmp_path / "inst"
    run("init", "--admin-email", "a@example.test", "--admin-password", "a-long-password", home=home)
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "appliance", "--home", str(home), "serve", "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        assert wait_port(port, timeout=30)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/login", timeout=10) as resp:
            assert resp.status == 200
            cookie = resp.headers.get("Set-Cookie", "")
            assert resp.headers["X-Frame-Options"] == "DENY"
            assert "default-src 'self'" in resp.headers["Content-Security-Policy"]
        assert "HttpOnly" in cookie and "SameSite=Lax" in cookie
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=20)


def test_secure_cookie_when_configured(tmp_path):
    from appliance.web import create_app

    instance = make_instance(tmp_path / "h", "sqlite:///appliance.db")
    text = instance.config_path.read_text() + "session_cookie_secure: true\n"
    instance.config_path.write_text(text)
    from appliance.core.config import Instance

    app = create_app(instance=Instance.load(instance.home))
    resp = app.test_client().get("/login")
    assert "Secure" in resp.headers["Set-Cookie"]


def test_missing_session_key_refuses_to_start(tmp_path, run):
    instance = make_instance(tmp_path / "h", "sqlite:///appliance.db")
    (instance.home / "keys" / "session.key").unlink()
    result = run("serve", "--port", str(free_port()), home=instance.home)
    assert result.exit_code != 0
    assert "session.key" in result.output and "init" in result.output


def test_migrate_refuses_a_wrong_master_key_and_changes_nothing(tmp_path, run):
    home = tmp_path / "inst"
    run("init", "--admin-email", "a@example.test", "--admin-password", "a-long-password", home=home)
    key = home / "keys" / "master.key"
    db_before = (home / "appliance.db").read_bytes()
    key.unlink()
    result = run("migrate", home=home)
    assert result.exit_code != 0 and "master.key" in result.output
    assert (home / "appliance.db").read_bytes() == db_before


def test_init_takes_the_admin_password_from_the_environment(tmp_path, monkeypatch, run):
    monkeypatch.setenv("APPLIANCE_ADMIN_PASSWORD", "from-the-environment")
    result = run("init", "--admin-email", "env@example.test", home=tmp_path / "inst")
    assert result.exit_code == 0 and "provider admin" in result.output


def test_init_reads_the_admin_password_from_stdin_and_can_force_its_change(tmp_path, run):
    home = tmp_path / "inst"
    result = run("init", "--admin-email", "stdin@example.test", "--admin-password-stdin", "--force-password-change",
                 home=home, input="a-piped-password-42\n")
    assert result.exit_code == 0 and "provider admin" in result.output
    assert "a-piped-password-42" not in result.output
    from appliance.core.config import Instance
    from appliance.web import db as dbmod
    from appliance.web.models.tenancy import User
    from appliance.web.services.passwords import verify_password

    database = dbmod.bind(Instance.load(home).database_url)
    with database.connection_context():
        admin = User.get(User.email == "stdin@example.test")
        assert admin.must_change_password
        assert verify_password(admin.password_hash, "a-piped-password-42")
    # An installer re-run pipes the password again: read, and the admin is left alone.
    again = run("init", "--admin-password-stdin", "--force-password-change", home=home, input="another-one-123\n")
    assert again.exit_code == 0 and "already initialised" in again.output


def test_init_refuses_an_empty_stdin_password_and_two_sources(tmp_path, run):
    empty = run("init", "--admin-email", "a@example.test", "--admin-password-stdin", home=tmp_path / "a", input="")
    assert empty.exit_code != 0 and "standard input held no password" in empty.output
    both = run("init", "--admin-email", "a@example.test", "--admin-password-stdin", "--admin-password",
               "a-long-password", home=tmp_path / "b", input="a-long-password\n")
    assert both.exit_code != 0 and "not both" in both.output
    assert not (tmp_path / "b").exists()
