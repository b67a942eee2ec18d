"""``appliance sizing inventory``: for each profile a folder Ansible reads with the groups the
playbooks expect and the variables the argument specs require (checked by the playbooks' own
validation tasks, run on this machine), and bad input refused with the fix."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from appliance.cli import main
from appliance.core import inventory
from appliance.core.bundle_signature import sign_bundle
from appliance.core.licence.testing import TestSigner
from appliance.core.sizing import load_profile

ROOT = Path(__file__).resolve().parents[1]
ANSIBLE_BIN = Path(sys.executable).parent
HOSTS = {
    "minimal": ["allinone=cc1.bank.internal@192.0.2.10"],
    "medium": ["app=cc-app1@192.0.2.10", "db=cc-db1@192.0.2.20"],
    "maximal": ["lb=cc-lb1@192.0.2.5", "app=cc-app1@192.0.2.11,cc-app2@192.0.2.12,cc-app3@192.0.2.13",
                "db_primary=cc-db1@192.0.2.21", "db_standby=cc-db2@192.0.2.22", "backup=cc-bk1@192.0.2.30"],
}


def _generate(runner, out, profile, hosts, *extra):
    args = ["sizing", "inventory", "--profile", profile, "--out", str(out), "--admin-email", "ops@bank.example"]
    for value in hosts:
        args += ["--hosts", value]
    return runner.invoke(main, args + list(extra))


@pytest.fixture
def bundle(tmp_path):
    """A stand-in offline bundle that passes the preflight's bundle checks (manifest and sums)."""
    path = tmp_path / "bundle"
    path.mkdir()
    (path / "manifest.json").write_text(json.dumps({"python": f"{sys.version_info.major}.{sys.version_info.minor}"}))
    (path / "SHA256SUMS").write_text("".join(
        f"{hashlib.sha256(p.read_bytes()).hexdigest()}  {p.name}\n" for p in sorted(path.iterdir())))
    # Signed as the vendor would, by a throwaway key the checks are told to trust.
    signer = TestSigner()
    signer.write_public(tmp_path / "bundle-trust")
    sign_bundle(path, signer.key)
    return path


def _checks_playbook(tmp_path) -> Path:
    """The preflight's input checks (playbooks/tasks/check_inputs.yml, unchanged) in a playbook
    beside links to the real specs and roles, so its paths resolve as in playbooks/."""
    tree = tmp_path / "checks"
    (tree / "playbooks").mkdir(parents=True)
    os.symlink(ROOT / "roles", tree / "roles")
    for name in ("argument_specs.yml", "tasks"):
        os.symlink(ROOT / "playbooks" / name, tree / "playbooks" / name)
    playbook = tree / "playbooks" / "check.yml"
    playbook.write_text(yaml.safe_dump([{
        "name": "Check the inventory's inputs", "hosts": "appliance", "gather_facts": True,
        "gather_subset": ["!all", "min"],
        "tasks": [{"name": "Inputs", "ansible.builtin.import_tasks": "tasks/check_inputs.yml"}]}], sort_keys=False))
    return playbook


def _ansible(*args, cwd) -> subprocess.CompletedProcess:
    env = os.environ | {"ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1"}
    return subprocess.run([str(ANSIBLE_BIN / args[0]), *args[1:]], capture_output=True, text=True, cwd=cwd,
                          env=env, timeout=300)


@pytest.mark.parametrize("profile", ["minimal", "medium", "maximal"])
def test_generated_inventory_fits_the_playbooks_and_the_argument_specs(profile, runner, tmp_path, bundle):
    out = tmp_path / "inventory"
    made = _generate(runner, out, profile, HOSTS[profile], "--bundle-dir", str(bundle))
    assert made.exit_code == 0, made.output
    assert "set these required variables" not in made.output  # the generator knows every required one
    assert stat.S_IMODE((out / "credentials").stat().st_mode) == 0o700
    text = (out / "group_vars" / "all.yml").read_text()
    assert "password:" not in text.replace("#   appliance_admin_password:", "").replace(
        "#   postgresql_app_password:", "")  # no secret values, only where they come from

    listed = _ansible("ansible-inventory", "-i", str(out), "--list", cwd=ROOT)
    assert listed.returncode == 0, listed.stderr
    data = json.loads(listed.stdout)
    spec = load_profile(profile)["hosts"]
    given = {kind: [h.partition("@")[0] for h in listed.split(",")]
             for kind, listed in (v.split("=", 1) for v in HOSTS[profile])}
    for kind, item in spec.items():
        for group in item["groups"]:
            assert sorted(data[group]["hosts"]) == sorted(given[kind]), group
    first = given[next(iter(spec))][0]
    hostvars = data["_meta"]["hostvars"][first]
    assert hostvars["appliance_profile"] == profile and hostvars["ansible_host"].startswith("192.0.2.")
    required = inventory.required_options(inventory.argument_specs(ROOT))
    assert required and all(name in hostvars for name in required), sorted(set(required) - set(hostvars))
    if profile != "minimal":
        apps = next(v.partition("=")[2] for v in HOSTS[profile] if v.startswith("app=")).split(",")
        assert [e["address"] for e in hostvars["postgresql_hba_entries"]] == [
            a.partition("@")[2] + "/32" for a in apps]

    # The preflight's own validation of the inventory against every spec, each host as itself.
    checked = _ansible("ansible-playbook", "-i", str(out), str(_checks_playbook(tmp_path)), "-c", "local",
                       "-e", "ansible_become=false", "-e", f"ansible_python_interpreter={sys.executable}",
                       "-e", f"appliance_bundle_trust={tmp_path / 'bundle-trust'}",
                       cwd=ROOT)
    assert checked.returncode == 0, checked.stdout[-3000:] + checked.stderr[-2000:]
    assert "failed=0" in checked.stdout and "does not fit" not in checked.stdout


def test_the_validation_would_notice_a_wrong_variable(runner, tmp_path, bundle):
    out = tmp_path / "inventory"
    assert _generate(runner, out, "medium", HOSTS["medium"], "--bundle-dir", str(bundle)).exit_code == 0
    path = out / "group_vars" / "all.yml"
    path.write_text(path.read_text().replace("appliance_profile: medium", "appliance_profile: huge"))
    checked = _ansible("ansible-playbook", "-i", str(out), str(_checks_playbook(tmp_path)), "-c", "local",
                       "-e", "ansible_become=false", "-e", f"ansible_python_interpreter={sys.executable}",
                       "-e", f"appliance_bundle_trust={tmp_path / 'bundle-trust'}",
                       cwd=ROOT)
    assert checked.returncode != 0 and "appliance_profile" in checked.stdout


def test_from_a_recommendation(runner, tmp_path):
    rec = runner.invoke(main, ["sizing", "recommend", "--conversations-per-day", "250000", "--operators", "100",
                               "--json"])
    assert rec.exit_code == 0, rec.output
    answer = tmp_path / "rec.json"
    answer.write_text(rec.output)
    hosts = ["lb=lb1@192.0.2.5", "app=a1@192.0.2.11,a2@192.0.2.12", "db_primary=d1@192.0.2.21",
             "db_standby=d2@192.0.2.22", "backup=b1@192.0.2.30"]
    args = ["sizing", "inventory", "--recommendation", str(answer), "--out", str(tmp_path / "inv")]
    short = runner.invoke(main, args + [a for h in hosts for a in ("--hosts", h)])
    assert short.exit_code != 0 and "the recommendation is 3 host(s) of kind app" in short.output
    hosts[1] += ",a3@192.0.2.13"
    made = runner.invoke(main, args + [a for h in hosts for a in ("--hosts", h)])
    assert made.exit_code == 0, made.output
    assert "appliance_profile: maximal" in (tmp_path / "inv" / "group_vars" / "all.yml").read_text()


@pytest.mark.parametrize(("profile", "hosts", "message"), [
    ("huge", ["x=h1"], "--profile 'huge': choose one of minimal, medium, maximal"),
    ("medium", ["app=a1@192.0.2.10"], "needs 1 host(s) of kind db (groups appliance_db); 0 given"),
    ("medium", ["app=a1@192.0.2.10,a2@192.0.2.11", "db=d1"], "needs 1 host(s) of kind app"),
    ("maximal", ["lb=l1", "app=a1@192.0.2.11", "db_primary=d1", "db_standby=d2", "backup=b1"],
     "needs 2 or more host(s) of kind app"),
    ("medium", ["a1@192.0.2.10"], "say which kind of host, as KIND=NAME[@ADDRESS]"),
    ("medium", ["web=a1", "db=d1"], "has no host kind 'web'; its kinds are app, db"),
    ("medium", ["app=a1", "db=d1"], "give the address of app host a1"),
    ("medium", ["app=a1@192.0.2.10", "db=a1@192.0.2.20"], "a1 is given twice"),
    ("medium", ["app=bad_name@192.0.2.10", "db=d1"], "'bad_name' is not a host name"),
    ("minimal", ["cc1@not an address"], "is neither an IP address nor a DNS name"),
])
def test_bad_input_is_refused_and_nothing_written(profile, hosts, message, runner, tmp_path):
    out = tmp_path / "inventory"
    answer = _generate(runner, out, profile, hosts)
    assert answer.exit_code != 0 and message in answer.output, answer.output
    assert not out.exists()


def test_a_non_empty_directory_needs_force_and_credentials_stay(runner, tmp_path):
    out = tmp_path / "inventory"
    assert _generate(runner, out, "minimal", HOSTS["minimal"]).exit_code == 0
    (out / "credentials" / "admin_password").write_text("kept")
    again = _generate(runner, out, "minimal", ["cc2@192.0.2.11"])
    assert again.exit_code != 0 and "not empty" in again.output and "--force" in again.output
    assert "cc1.bank.internal" in (out / "hosts.yml").read_text()
    forced = _generate(runner, out, "minimal", ["cc2@192.0.2.11"], "--force")
    assert forced.exit_code == 0, forced.output
    assert "cc2" in (out / "hosts.yml").read_text()
    assert (out / "credentials" / "admin_password").read_text() == "kept"
    assert _generate(runner, out, "minimal", HOSTS["minimal"], "--admin-email", "nobody").exit_code != 0


def test_ansible_tools_are_there():
    assert shutil.which("ansible-playbook", path=str(ANSIBLE_BIN)), "the venv has no ansible (pip install ansible)"
