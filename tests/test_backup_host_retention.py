"""The backup host's retention command (roles/appliance_backup_host), rendered and run as it is there.

It judges archives by their names (the backup host has no key to check a manifest) with
the appliance's own rule: the profile's days, the first archive of each month for the
archive period, and always the newest.
"""

from __future__ import annotations

import datetime as dt
import shutil
import subprocess
import sys
from pathlib import Path

import jinja2

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = ROOT / "roles/appliance_backup_host/templates/usr/local/sbin/appliance-backup-retention.j2"


def _install(tmp_path) -> Path:
    libdir = tmp_path / "lib"
    libdir.mkdir()
    shutil.copy(ROOT / "appliance/core/backup/retention.py", libdir / "retention.py")
    script = tmp_path / "appliance-backup-retention"
    script.write_text(jinja2.Template(TEMPLATE.read_text()).render(
        ansible_managed="test", __appliance_backup_host_libdir=str(libdir)))
    return script


def _archives(directory: Path, now: dt.datetime, days_ago: list[int]) -> dict[int, str]:
    names = {}
    for n in days_ago:
        name = f"appliance-{now - dt.timedelta(days=n):%Y%m%dT%H%M%SZ}-abc123.apbk"
        (directory / name).write_bytes(b"ciphertext")
        names[n] = name
    return names


NOW = dt.datetime(2026, 7, 20, 2, 15, tzinfo=dt.UTC)


def _run(script, directory, days, months, *extra):
    return subprocess.run([sys.executable, str(script), str(directory), str(days), str(months),
                           f"--now={NOW.isoformat()}", *extra],
                          capture_output=True, text=True, check=True).stdout


def test_keeps_the_days_and_deletes_the_rest_but_never_the_newest(tmp_path):
    script = _install(tmp_path)
    received = tmp_path / "received"
    received.mkdir()
    now = NOW
    names = _archives(received, now, [0, 3, 6, 8, 40])
    (received / "not-an-archive.txt").write_text("left alone")
    assert "would delete" in _run(script, received, 7, 0, "--dry-run")
    assert len(list(received.glob("*.apbk"))) == 5
    out = _run(script, received, 7, 0)
    assert sorted(p.name for p in received.glob("*.apbk")) == sorted(names[n] for n in (0, 3, 6))
    assert "3 kept, 2 deleted" in out
    assert (received / "not-an-archive.txt").exists()

    # All past retention: the newest stays.
    old = tmp_path / "old"
    old.mkdir()
    old_names = _archives(old, now, [30, 60])
    _run(script, old, 7, 0)
    assert [p.name for p in old.glob("*.apbk")] == [old_names[30]]


def test_monthly_archives_are_kept_for_the_archive_period(tmp_path):
    script = _install(tmp_path)
    received = tmp_path / "received"
    received.mkdir()
    now = NOW
    # Two archives in each of the last ~4 months: only the first of each month survives beyond the days.
    days = [0, 1, 32, 33, 64, 65, 96, 97]
    names = _archives(received, now, days)
    _run(script, received, 7, 12)
    kept = {p.name for p in received.glob("*.apbk")}
    assert names[0] in kept and names[1] in kept
    by_month: dict[tuple[int, int], list[str]] = {}
    for n in days[2:]:
        created = now - dt.timedelta(days=n)
        by_month.setdefault((created.year, created.month), []).append(names[n])
    for month, month_names in by_month.items():
        if month == (now.year, now.month):
            continue
        assert min(month_names) in kept, month  # the earliest name is the first of that month
        assert not (set(month_names) - {min(month_names)}) & kept, month


def test_each_profiles_retention_reaches_config_yml_as_the_app_reads_it(tmp_path):
    """The appliance role writes the profile's backup: block into config.yml; the app accepts it."""
    import yaml

    from appliance.core.config import Instance

    template = (ROOT / "roles/appliance/templates/var/lib/appliance/config.yml.j2").read_text()
    defaults = (ROOT / "roles/appliance/defaults/main.yml").read_text()
    for key in ("retention_days", "archive", "archive_retention_months"):
        assert f"'{key}': appliance_backup_{key}" in template
        assert f"appliance_backup_{key}: \"{{{{ appliance_sizing.backup.{key}" in defaults
    for profile in ("minimal", "medium", "maximal"):
        backup = yaml.safe_load((ROOT / "sizing" / f"{profile}.yml").read_text())["backup"]
        home = tmp_path / profile
        home.mkdir()
        written = {"retention_days": int(backup["retention_days"]), "archive": bool(backup["archive"]),
                   "archive_retention_months": int(backup.get("archive_retention_months", 0))}
        (home / "config.yml").write_text(yaml.safe_dump({"database_url": "sqlite:///appliance.db",
                                                         "backup": written}))
        instance = Instance.load(home)
        for key, value in written.items():
            assert instance["backup"][key] == value, (profile, key)
    assert yaml.safe_load((ROOT / "sizing/maximal.yml").read_text())["backup"]["archive_retention_months"] == 60
