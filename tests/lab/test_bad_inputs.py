"""Bad inventories are refused by the preflight, with a message naming the variable or
file and the fix, before any task changes the host: package list, users, groups,
services, directories and firewall are the same before and after each refused run.

One fresh host (booting costs seconds, nothing is installed on it); each run stops
in the preflight, so the whole file costs about a minute.
"""

from __future__ import annotations

import hashlib
import shutil

import pytest

from tests.lab.conftest import record, run_playbook, write_inventory

pytestmark = [pytest.mark.lab, pytest.mark.timeout(900)]

HOST = "bad1"
# Timers a fresh Debian host may start by itself while the test runs.
RESTLESS = ("apt-daily", "apt-daily-upgrade", "man-db", "systemd-tmpfiles-clean", "e2scrub", "fstrim", "logrotate",
            "dpkg-db-backup")


def _state(host) -> dict[str, str]:
    """What site.yml changes first: packages, accounts, services, the app's directories, the firewall."""
    running = host.ssh("systemctl list-units --type=service --state=running --no-legend --plain").stdout
    return {
        "packages": host.ssh("dpkg -l | sort").stdout,
        "users and groups": host.ssh("cat /etc/passwd /etc/group").stdout,
        "unit files": host.ssh("systemctl list-unit-files --no-legend --plain | sort").stdout,
        "running services": "\n".join(sorted(line.split()[0] for line in running.splitlines()
                                             if not line.startswith(RESTLESS))),
        "directories": host.ssh("ls -d /opt/appliance /var/lib/appliance /etc/nginx /etc/postgresql 2>&1; true").stdout,
        "firewall": host.ssh("nft list ruleset 2>&1; true").stdout,
    }


@pytest.fixture(scope="module")
def fresh(lab):
    host = lab.boot(HOST, 21)
    yield host
    lab.stop_host(host)


def _tampered(lab, bundle_dir):
    """A copy of the bundle with one byte appended to a wheel."""
    copy = lab.run_dir / "bundle-tampered"
    if not copy.exists():
        shutil.copytree(bundle_dir, copy)
        with open(sorted(copy.glob("*.whl"))[0], "ab") as handle:
            handle.write(b"\0")
    return copy


def _unsigned(lab, bundle_dir):
    """A copy of the bundle without its signature."""
    copy = lab.run_dir / "bundle-unsigned"
    if not copy.exists():
        shutil.copytree(bundle_dir, copy)
        (copy / "SHA256SUMS.sig").unlink()
    return copy


def _resummed(lab, bundle_dir):
    """A wheel changed and SHA256SUMS rewritten to match: only the signature can tell."""
    copy = lab.run_dir / "bundle-resummed"
    if not copy.exists():
        shutil.copytree(bundle_dir, copy)
        wheel = sorted(copy.glob("*.whl"))[0]
        with open(wheel, "ab") as handle:
            handle.write(b"\0")
        digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
        sums = copy / "SHA256SUMS"
        sums.write_text("".join(f"{digest}  {wheel.name}\n" if line.endswith(f"  {wheel.name}") else line + "\n"
                                for line in sums.read_text().splitlines()))
    return copy


CASES = {
    "admin e-mail missing": (
        lambda lab, bundle_dir: {"appliance_bundle_dir": str(bundle_dir)},
        ["role appliance's argument spec", "missing required arguments: appliance_admin_email"]),
    "bundle path wrong": (
        lambda lab, bundle_dir: {"appliance_bundle_dir": str(lab.run_dir / "no-such-bundle"),
                                 "appliance_admin_email": "admin@lab.example"},
        ["no-such-bundle, which holds no bundle", "appliance bundle --out DIR"]),
    "wheel tampered": (
        lambda lab, bundle_dir: {"appliance_bundle_dir": str(_tampered(lab, bundle_dir)),
                                 "appliance_admin_email": "admin@lab.example"},
        ["bundle-tampered is not intact", ".whl: FAILED"]),
    "bundle unsigned": (
        lambda lab, bundle_dir: {"appliance_bundle_dir": str(_unsigned(lab, bundle_dir)),
                                 "appliance_admin_email": "admin@lab.example"},
        ["bundle-unsigned is refused", "SHA256SUMS.sig is missing: the bundle is not signed"]),
    "checksums rewritten after signing": (
        lambda lab, bundle_dir: {"appliance_bundle_dir": str(_resummed(lab, bundle_dir)),
                                 "appliance_admin_email": "admin@lab.example"},
        ["bundle-resummed is refused", "the bundle was changed after it was signed"]),
    "wrong type": (
        lambda lab, bundle_dir: {"appliance_bundle_dir": str(bundle_dir), "appliance_admin_email": "admin@lab.example",
                                 "appliance_web_workers": "several"},
        ["appliance_web_workers", "int"]),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_is_refused_before_any_change(lab, bundle, fresh, case):
    bundle_dir, _ = bundle
    make_vars, expected = CASES[case]
    inventory = write_inventory(
        lab.run_dir / f"inventory-bad-{case.replace(' ', '-')}", lab, {HOST: (fresh.address, ["appliance_app",
                                                                                            "appliance_db"])},
        appliance_profile="minimal", nginx_server_name=f"{HOST}.lab.example", **make_vars(lab, bundle_dir))
    before = _state(fresh)
    run = run_playbook(inventory, "site.yml", timeout=600)
    record(f"refused input: {case}", run.seconds)
    assert run.returncode != 0, run.tail()
    for text in expected:
        assert text in run.output, f"{text!r} not in:\n{run.tail()}"
    assert "nothing was changed" in run.output.lower()
    # Refused by the preflight, not by a raw lookup deep in a role.
    assert "Base system on every appliance host" not in run.output
    assert "lookup" not in run.tail(20).lower()
    assert run.recap()[HOST]["changed"] == 0
    after = _state(fresh)
    assert after == before, [name for name in before if before[name] != after[name]]
    assert "No such file" in before["directories"]
