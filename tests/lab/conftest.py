"""Fixtures for the lab: the lab itself, offline bundles, inventories, playbook runs.

Run with ``pytest -m lab tests/lab`` as root on a Debian machine with
debootstrap, systemd-container and nftables installed (tests/lab/run_lab.sh
installs them). Timings go to the terminal summary and to
/var/lib/appliance-lab/last-run.json.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from tests.lab.harness import RUN_ROOT, Lab

ROOT = Path(__file__).resolve().parents[2]
TIMINGS: dict[str, float] = {}
def ansible_playbook() -> str | None:
    """The ansible-playbook of this interpreter's environment (CI runs .venv/bin/python
    without .venv/bin on PATH), else the one on PATH."""
    beside = Path(sys.executable).parent / "ansible-playbook"
    return str(beside) if beside.exists() else shutil.which("ansible-playbook")


REQUIRED_TOOLS = {"debootstrap": "debootstrap", "systemd-nspawn": "systemd-container",
                  "nft": "nftables", "nsenter": "util-linux", "ssh": "openssh-client"}


def pytest_terminal_summary(terminalreporter):
    if not TIMINGS:
        return
    terminalreporter.section("appliance lab timings")
    for name, seconds in TIMINGS.items():
        terminalreporter.write_line(f"{name:<32} {seconds:7.1f} s")
    try:
        RUN_ROOT.mkdir(parents=True, exist_ok=True)
        (RUN_ROOT / "last-run.json").write_text(json.dumps(TIMINGS, indent=2) + "\n")
    except OSError:
        pass


def record(name: str, seconds: float):
    TIMINGS[name] = round(seconds, 1)


# Package scope: the bridge, NAT and ip_forward go away as soon as the lab
# tests are done, not at the end of a whole-suite run.
@pytest.fixture(scope="package")
def lab():
    if os.geteuid() != 0:
        pytest.skip("the lab needs root (bridges, nftables, systemd-nspawn)")
    missing = [f"{tool} (apt package {pkg})" for tool, pkg in REQUIRED_TOOLS.items() if not shutil.which(tool)]
    if ansible_playbook() is None:
        missing.append("ansible-playbook (pip install the 'ansible' package: '.[lab]')")
    if missing:
        pytest.fail("lab tools missing: " + ", ".join(missing) + "; see tests/lab/run_lab.sh")

    # CI stops a job with SIGTERM: turn it into an exception so the
    # finalizer below still tears the lab down.
    def _terminate(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, _terminate)
    started = time.monotonic()
    the_lab = Lab()
    try:
        image_started = time.monotonic()
        the_lab.start()
        record("lab setup (image, bridge, NAT)", time.monotonic() - image_started)
        yield the_lab
    finally:
        the_lab.close()
        signal.signal(signal.SIGTERM, previous)
        record("lab total", time.monotonic() - started)


def trust_dir(lab: Lab) -> Path:
    """The lab's bundle signer's public key, named in every inventory as appliance_bundle_trust."""
    return lab.run_dir / "bundle-trust"


@pytest.fixture(scope="package")
def bundle_signer(lab):
    """Signs the lab's bundles as the vendor would (a throwaway key, trusted through the inventory)."""
    from appliance.core.licence.testing import TestSigner

    signer = TestSigner()
    signer.write_public(trust_dir(lab))
    return signer


def _build(out: Path, signer, source: Path | None = None):
    from appliance.cli.bundle import build_bundle
    from appliance.core.bundle_signature import sign_bundle

    manifest = build_bundle(out, source=source, log=lambda m: None)
    sign_bundle(out, signer.key)
    return manifest


@pytest.fixture(scope="package")
def bundle(lab, bundle_signer):
    started = time.monotonic()
    manifest = _build(lab.run_dir / "bundle-1", bundle_signer)
    record("bundle build", time.monotonic() - started)
    return lab.run_dir / "bundle-1", manifest


@pytest.fixture(scope="package")
def newer_bundle(lab, bundle_signer):
    """The same source with a higher (local) version, as a release would be."""
    tree = lab.run_dir / "source-2"
    shutil.copytree(ROOT, tree, ignore=shutil.ignore_patterns(
        ".git", "build", "dist", "*.egg-info", "__pycache__", ".venv", ".pytest_cache", ".ruff_cache"))
    setup_py = tree / "setup.py"
    text, count = re.subn(r'version="([^"+]+)"', r'version="\1+lab2"', setup_py.read_text(), count=1)
    assert count == 1, "setup.py: version=\"...\" not found; update the lab's version bump"
    setup_py.write_text(text)
    manifest = _build(lab.run_dir / "bundle-2", bundle_signer, source=tree)
    return lab.run_dir / "bundle-2", manifest


def write_inventory(directory: Path, lab: Lab, hosts: dict[str, tuple[str, list[str]]], **variables) -> Path:
    """An inventory like a customer's: hosts in appliance_* groups, one vars file."""
    directory.mkdir(parents=True, exist_ok=True)
    groups: dict[str, dict] = {}
    for name, (address, host_groups) in hosts.items():
        for group in host_groups:
            groups.setdefault(group, {"hosts": {}})["hosts"][name] = {"ansible_host": address}
    inventory = {"all": {"children": {"appliance": {"children": groups}}}}
    (directory / "hosts.yml").write_text(yaml.safe_dump(inventory, sort_keys=False))
    (directory / "group_vars").mkdir(exist_ok=True)
    connection = {
        "ansible_user": "root",
        "ansible_ssh_private_key_file": str(lab.key),
        "ansible_ssh_common_args": "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null",
    }
    if trust_dir(lab).exists():
        connection["appliance_bundle_trust"] = str(trust_dir(lab))
    (directory / "group_vars" / "all.yml").write_text(yaml.safe_dump({**connection, **variables}, sort_keys=False))
    return directory


@dataclass
class PlaybookRun:
    returncode: int
    output: str
    seconds: float
    log: Path

    def recap(self) -> dict[str, dict[str, int]]:
        out = {}
        for m in re.finditer(r"^(\S+)\s+: ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)",
                             self.output, re.M):
            out[m.group(1)] = {"ok": int(m.group(2)), "changed": int(m.group(3)),
                               "unreachable": int(m.group(4)), "failed": int(m.group(5))}
        return out

    def changed_tasks(self) -> list[str]:
        """Names of the tasks that reported a change (for failure messages)."""
        names, current = [], None
        for line in self.output.splitlines():
            if line.startswith("TASK ["):
                current = line
            elif line.startswith("changed:") and current:
                names.append(current)
        return names

    def tail(self, lines=60) -> str:
        return "\n".join(self.output.splitlines()[-lines:])


def run_playbook(inventory: Path, playbook: str, *args: str, timeout=1500) -> PlaybookRun:
    env = {
        **os.environ,
        "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"),
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_FORCE_COLOR": "0",
        "ANSIBLE_HOST_KEY_CHECKING": "False",
        "ANSIBLE_RETRY_FILES_ENABLED": "False",
    }
    log = inventory / f"{Path(playbook).stem}-{int(time.time() * 1000)}.log"
    started = time.monotonic()
    # Straight to a file, so a slow run can be followed with `tail -f`.
    with open(log, "w") as sink:
        result = subprocess.run(
            [ansible_playbook(), "-i", str(inventory / "hosts.yml"), str(ROOT / "playbooks" / playbook), *args],
            cwd=ROOT, env=env, text=True, stdout=sink, stderr=subprocess.STDOUT, timeout=timeout,
        )
    seconds = time.monotonic() - started
    output = log.read_text()
    return PlaybookRun(result.returncode, output, seconds, log)


MINIMAL_HOST = "cc1"
MINIMAL_ADMIN = "admin@lab.example"


# Package scope: installing costs about two minutes, so every lab file that
# only needs an installed minimal host shares this one (test_minimal_profile
# upgrades it last; files sorting after it see the upgraded host).
@pytest.fixture(scope="package")
def installed(lab, bundle):
    bundle_dir, manifest = bundle
    host = lab.boot(MINIMAL_HOST, 10)
    inventory = write_inventory(
        lab.run_dir / "inventory-minimal", lab, {MINIMAL_HOST: (host.address, ["appliance_app", "appliance_db"])},
        appliance_profile="minimal",
        appliance_bundle_dir=str(bundle_dir),
        appliance_admin_email=MINIMAL_ADMIN,
        nginx_server_name=f"{MINIMAL_HOST}.lab.example",
        nginx_server_aliases=[f"IP:{host.address}"],
    )
    run = run_playbook(inventory, "site.yml")
    record("install (site.yml, fresh host)", run.seconds)
    assert run.returncode == 0, f"site.yml failed (log {run.log}):\n{run.tail()}"
    # Clients of a self-signed install trust its certificate explicitly; so does the lab.
    ca_file = lab.run_dir / f"{MINIMAL_HOST}.crt"
    ca_file.write_text(host.ssh("cat /etc/nginx/tls/server.crt").stdout)
    yield {"host": host, "inventory": inventory, "run": run, "manifest": manifest, "ca": ca_file}
    lab.stop_host(host)
