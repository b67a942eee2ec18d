"""``appliance backup`` end to end through click, and retention: prune never deletes the last good backup."""

from __future__ import annotations

import datetime as dt

import pytest

from appliance.cli import main
from appliance.core.backup.retention import Candidate, plan_prune
from appliance.core.config import write_config
from tests.helpers import START, make_instance


@pytest.fixture
def home(tmp_path):
    return make_instance(tmp_path / "home", "sqlite:///appliance.db")


def run(runner, home, *args, ok=True):
    result = runner.invoke(main, ["--home", str(home.home), *args], catch_exceptions=False)
    assert (result.exit_code == 0) == ok, result.output
    return result


def test_create_list_verify_restore(runner, home):
    created = run(runner, home, "backup", "create")
    path = created.stdout.strip().splitlines()[-1]
    assert path.endswith(".apbk") and "backing up" in created.stderr
    listed = run(runner, home, "backup", "list")
    assert path.rsplit("/", 1)[1] in listed.output and "sqlite" in listed.output
    verified = run(runner, home, "backup", "verify", path)
    assert "good" in verified.output and "scratch database" in verified.output
    restored = run(runner, home, "backup", "restore", "--yes", path)
    assert "restored" in restored.output and "keys verify" in restored.output


def test_errors_are_messages_not_tracebacks(runner, home, tmp_path):
    missing = run(runner, home, "backup", "verify", str(tmp_path / "nope.apbk"), ok=False)
    assert "does not exist" in missing.output and "Traceback" not in missing.output
    junk = tmp_path / "junk.apbk"
    junk.write_bytes(b"hello")
    bad = run(runner, home, "backup", "restore", "--yes", str(junk), ok=False)
    assert "not an appliance backup archive" in bad.output
    (home.home / "appliance.db").rename(tmp_path / "elsewhere.db")
    gone = run(runner, home, "backup", "create", ok=False)
    assert "does not exist: nothing to back up" in gone.output
    assert not (home.home / "appliance.db").exists()


def test_prune_keeps_retention_and_the_last_good_one(runner, home, clock):
    write_config(home.home, {**{"database_url": "sqlite:///appliance.db"},
                             "backup": {"retention_days": 3}})
    paths = []
    for _ in range(5):
        paths.append(run(runner, home, "backup", "create").stdout.strip().splitlines()[-1])
        clock.advance(days=2)
    out = run(runner, home, "backup", "prune", "--dry-run").output
    # Archives from days 0, 2, 4, 6, 8; now is day 10, so only day 8 is inside 3 days.
    assert out.count("would delete") == 4
    clock.advance(days=30)
    out = run(runner, home, "backup", "prune").output
    assert out.count("deleted ") == 4 and "1 kept" in out
    remaining = list((home.home / "backups").glob("*.apbk"))
    assert [p.name for p in remaining] == [paths[-1].rsplit("/", 1)[1]]


def _c(name, days_ago, good=True):
    return Candidate(name, START - dt.timedelta(days=days_ago), good)


def test_plan_prune_never_deletes_the_newest_good_archive_even_when_all_are_old():
    old = [_c("a", 100), _c("b", 90), _c("bad-newest", 80, good=False)]
    keep, delete = plan_prune(old, START, retention_days=7)
    assert [c.name for c in keep] == ["b"]
    assert {c.name for c in delete} == {"a", "bad-newest"}


def test_plan_prune_monthly_archives():
    days = [_c(f"d{n}", n) for n in range(0, 120, 5)]
    keep, _ = plan_prune(days, START, retention_days=10, monthly_months=3)
    kept = {c.name for c in keep}
    assert {"d0", "d5", "d10"} <= kept
    firsts = {}
    for c in sorted(days, key=lambda c: c.created_at):
        firsts.setdefault((c.created_at.year, c.created_at.month), c.name)
    months = sorted(firsts)[-3:]
    assert {firsts[m] for m in months} <= kept
    assert firsts[sorted(firsts)[0]] not in kept


def test_new_host_with_only_the_recovery_kit(runner, home, tmp_path, monkeypatch):
    """The documented procedure: config, keys import-recovery, backup restore, keys verify."""
    from tests.helpers import running_app
    from tests.test_backup import seed

    monkeypatch.setattr("appliance.web.crypto.master.SCRYPT_N", 2**14)  # fast KDF for the test
    monkeypatch.setenv("APPLIANCE_RECOVERY_PASSPHRASE", "a long recovery passphrase")
    with running_app(home) as app:
        seed(app)
    kit = tmp_path / "kit.txt"
    run(runner, home, "keys", "export-recovery", "-o", str(kit))
    archive = run(runner, home, "backup", "create").stdout.strip().splitlines()[-1]

    new_home = tmp_path / "new"
    write_config(new_home, {"database_url": "sqlite:///appliance.db"})
    new = type(home).load(new_home)
    run(runner, new, "keys", "import-recovery", str(kit))
    assert not (new_home / "appliance.db").exists()  # keys first: no empty database made on the way
    restored = run(runner, new, "backup", "restore", "--yes", archive)
    assert "keys/installation.id" in restored.output
    verified = run(runner, new, "keys", "verify")
    assert "0 failed" in verified.output and " 0 values" not in verified.output


def test_create_on_postgresql_in_a_process_of_its_own_as_the_timer_runs_it(tmp_path, pg_url):
    """The nightly timer runs the command in a fresh process: no app, no database proxy bound."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    instance = make_instance(tmp_path / "home", pg_url)
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(root)}
    result = subprocess.run(
        [sys.executable, "-c", "from appliance.cli import main; main()", "--home", str(instance.home),
         "backup", "create"], capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr
    path = Path(result.stdout.strip().splitlines()[-1])
    assert path.suffix == ".apbk" and path.stat().st_size > 0
