"""The sizing files: one source of truth read by Python and by Ansible alike."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from appliance.cli import main
from appliance.core.sizing import SIZED_PROFILES, SizingError, load_all, load_profile, recommend, sizing_dir

ROOT = Path(__file__).resolve().parents[1]


def test_the_three_profiles_load_from_the_repository():
    assert sizing_dir() == ROOT / "sizing"
    profiles = load_all()
    assert list(profiles) == list(SIZED_PROFILES)
    for name, data in profiles.items():
        assert data["profile"] == name


def test_profiles_carry_the_product_table():
    p = load_all()
    assert p["minimal"]["hosts"]["allinone"]["minimum"] == {"vcpus": 2, "memory_gib": 4, "disk_gib": 50}
    assert p["minimal"]["hosts"]["allinone"]["groups"] == ["appliance_app", "appliance_db"]
    for kind in ("app", "db"):
        assert p["medium"]["hosts"][kind]["minimum"]["vcpus"] == 4
        assert p["medium"]["hosts"][kind]["minimum"]["memory_gib"] == 8
    assert p["medium"]["security"]["admin_totp_required"] is True
    assert p["minimal"]["security"]["admin_totp_required"] is False
    assert p["medium"]["backup"]["encrypted"] is True and p["medium"]["backup"]["target"] == "remote"
    maximal = p["maximal"]["hosts"]
    assert maximal["app"]["count"]["min"] >= 2
    assert (maximal["app"]["minimum"]["vcpus"], maximal["app"]["minimum"]["memory_gib"]) == (8, 16)
    assert (maximal["db_primary"]["minimum"]["vcpus"], maximal["db_primary"]["minimum"]["memory_gib"]) == (8, 32)
    assert {"lb", "db_standby", "backup"} <= set(maximal)
    assert p["maximal"]["postgresql"]["replication"] is True
    # Capacity grows with the profile, or recommend() would be meaningless.
    caps = [p[n]["capacity"]["conversations_per_day"] for n in SIZED_PROFILES]
    assert caps == sorted(caps) and caps[0] == 2000


def test_a_broken_profile_is_reported_with_its_file(tmp_path):
    for name in SIZED_PROFILES:
        shutil.copy(ROOT / "sizing" / f"{name}.yml", tmp_path)
    data = yaml.safe_load((tmp_path / "medium.yml").read_text())
    data["hosts"]["app"]["minimum"]["vcpus"] = "four"
    (tmp_path / "medium.yml").write_text(yaml.safe_dump(data))
    with pytest.raises(SizingError, match=r"medium\.yml: hosts\.app\.minimum\.vcpus"):
        load_profile("medium", tmp_path)
    with pytest.raises(SizingError, match="unknown profile"):
        load_profile("huge")


@pytest.mark.parametrize(
    ("conversations", "operators", "profile"),
    [(0, 0, "minimal"), (1500, 20, "minimal"), (2000, 30, "minimal"), (2001, 5, "medium"),
     (100, 31, "medium"), (20000, 300, "medium"), (50000, 100, "maximal"), (1000, 301, "maximal")],
)
def test_recommend_picks_the_smallest_profile_that_fits(conversations, operators, profile):
    assert recommend(conversations, operators)["profile"] == profile


def test_recommend_explains_and_scales_out_beyond_the_largest_profile():
    rec = recommend(2500, 10)
    assert rec["reasons"][0] == "not minimal: 2,500 conversations a day exceeds its 2,000."
    assert {h["kind"]: h["count"] for h in rec["hosts"]} == {"app": 1, "db": 1}
    big = recommend(350000, 1000)
    assert big["profile"] == "maximal" and big["beyond_profiles"] is True
    app = next(h for h in big["hosts"] if h["kind"] == "app")
    assert app["count"] == 4  # 350,000 at 100,000 per app host
    assert any("vendor review" in r for r in big["reasons"])
    normal = recommend(150000, 1000)
    assert next(h for h in normal["hosts"] if h["kind"] == "app")["count"] == 2


def test_cli_recommend_prints_profile_hosts_and_why(runner):
    result = runner.invoke(main, ["sizing", "recommend", "--conversations-per-day", "5000", "--operators", "40"])
    assert result.exit_code == 0, result.output
    assert "Recommended profile: medium" in result.output
    assert "Why:" in result.output and "exceeds its 2,000" in result.output
    assert "Admins must use TOTP: yes" in result.output
    as_json = runner.invoke(main, ["sizing", "recommend", "--conversations-per-day", "10", "--operators", "1",
                                   "--json"])
    assert json.loads(as_json.output)["profile"] == "minimal"
    bad = runner.invoke(main, ["sizing", "recommend", "--conversations-per-day", "-1", "--operators", "1"])
    assert bad.exit_code != 0


def test_role_defaults_take_their_figures_from_the_profile():
    """No sizing figure is written in a role: each tuned default points at appliance_sizing."""
    derived = {
        "postgresql": ["postgresql_max_connections", "postgresql_shared_buffers", "postgresql_work_mem",
                       "postgresql_effective_cache_size", "postgresql_maintenance_work_mem",
                       "postgresql_listen_addresses"],
        "appliance": ["appliance_web_workers", "appliance_web_threads", "appliance_admin_totp_required",
                      "appliance_session_cookie_secure", "appliance_sync_locked_off"],
        "base": ["base_firewall_rules", "base_firewall_ssh_port"],
        "nginx": ["nginx_tls_protocols"],
    }
    for role, names in derived.items():
        defaults = yaml.safe_load((ROOT / "roles" / role / "defaults" / "main.yml").read_text())
        for name in names:
            assert "appliance_sizing." in str(defaults[name]), f"{role}: {name} = {defaults[name]!r}"


def _ansible_playbook():
    beside = Path(sys.executable).parent / "ansible-playbook"
    return str(beside) if beside.exists() else shutil.which("ansible-playbook")


@pytest.mark.skipif(_ansible_playbook() is None, reason="ansible not installed")
def test_ansible_loads_the_same_profile_and_applies_overrides(tmp_path):
    playbook = tmp_path / "dump.yml"
    out = tmp_path / "sizing.json"
    playbook.write_text(yaml.safe_dump([{
        "name": "Dump the profile as Ansible sees it",
        "hosts": "localhost",
        "gather_facts": False,
        "tasks": [
            {"ansible.builtin.import_tasks": str(ROOT / "playbooks" / "tasks" / "load_profile.yml")},
            {"ansible.builtin.copy": {"content": "{{ appliance_sizing | to_json }}", "dest": str(out)}},
        ],
    }]))
    overrides = {"appliance_profile": "medium", "appliance_sizing_dir": str(ROOT / "sizing"),
                 "appliance_sizing_overrides": {"web": {"workers": 99}}}
    result = subprocess.run(
        [_ansible_playbook(), "-i", "localhost,", "-c", "local", str(playbook), "-e", json.dumps(overrides)],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    seen = json.loads(out.read_text())
    expected = load_profile("medium")
    assert seen["web"]["workers"] == 99
    seen["web"]["workers"] = expected["web"]["workers"]
    assert seen == expected
    bad = subprocess.run(
        [_ansible_playbook(), "-i", "localhost,", "-c", "local", str(playbook), "-e", "appliance_profile=huge"],
        capture_output=True, text=True, timeout=120,
    )
    assert bad.returncode != 0 and "Set appliance_profile to minimal, medium or maximal" in bad.stdout
