"""A ready Ansible inventory folder for a profile and the site's hosts.

What the playbooks expect (playbooks/inventories/<profile>/ are hand-written examples of
the same shape): ``hosts.yml`` with each host in the groups its kind has in
``sizing/<profile>.yml``, and ``group_vars/all.yml`` with every variable the argument
specs (playbooks/argument_specs.yml, roles/*/meta/argument_specs.yml) require, each
with a comment. No secret is written: the roles generate the passwords on the first
run into ``credentials/`` beside the inventory (0600, kept on the control machine),
or take them from a vault; the file says which variables those are.
"""

from __future__ import annotations

import ipaddress
import os
import re
from dataclasses import dataclass
from pathlib import Path

import yaml

from appliance.core.sizing import SIZED_PROFILES, SizingError, load_profile

# RFC 1123 host names (dots allowed): what Ansible and the firewall rules accept as a host.
_HOSTNAME = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
                       r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")

class InventoryError(ValueError):
    """Input the generator refuses; the message names the option and the fix."""


@dataclass(frozen=True)
class Host:
    name: str
    address: str | None


def repository_root() -> Path | None:
    """The checkout holding playbooks/ and roles/ (``APPLIANCE_PLAYBOOKS_ROOT`` overrides)."""
    env = os.environ.get("APPLIANCE_PLAYBOOKS_ROOT")
    root = Path(env) if env else Path(__file__).resolve().parents[2]
    return root if (root / "playbooks" / "argument_specs.yml").is_file() else None


def argument_specs(root: Path) -> dict[str, dict]:
    """``{"playbooks": options, "<role>": options}`` from the playbooks' and every role's spec."""
    found = {"playbooks": yaml.safe_load((root / "playbooks" / "argument_specs.yml").read_text())
             ["argument_specs"]["site"]["options"]}
    for path in sorted((root / "roles").glob("*/meta/argument_specs.yml")):
        spec = yaml.safe_load(path.read_text()).get("argument_specs", {}).get("main", {})
        found[path.parent.parent.name] = spec.get("options") or {}
    return found


def required_options(specs: dict[str, dict]) -> dict[str, str]:
    """Every required variable, with the spec it comes from."""
    return {name: owner for owner, options in specs.items()
            for name, option in options.items() if (option or {}).get("required")}


def parse_hosts(profile: dict, values: tuple[str, ...] | list[str]) -> dict[str, list[Host]]:
    """``KIND=NAME[@ADDRESS][,NAME[@ADDRESS]...]`` options (``KIND=`` may be left out when the
    profile has a single kind of host) into hosts per kind, checked against the profile's counts."""
    kinds = profile["hosts"]
    name = profile["profile"]
    out: dict[str, list[Host]] = {kind: [] for kind in kinds}
    seen: set[str] = set()
    for value in values:
        kind, sep, listed = value.partition("=")
        if not sep:
            if len(kinds) != 1:
                raise InventoryError(
                    f"--hosts {value!r}: say which kind of host, as KIND=NAME[@ADDRESS],...; the {name} "
                    f"profile has the kinds {', '.join(kinds)}.")
            kind, listed = next(iter(kinds)), value
        if kind not in kinds:
            raise InventoryError(f"--hosts {value!r}: the {name} profile has no host kind {kind!r}; "
                                 f"its kinds are {', '.join(kinds)}.")
        for item in filter(None, (part.strip() for part in listed.split(","))):
            host, _, address = item.partition("@")
            if not _HOSTNAME.match(host):
                raise InventoryError(f"--hosts: {host!r} is not a host name (letters, digits, '-' and '.').")
            if host in seen:
                raise InventoryError(f"--hosts: {host} is given twice; each host has one kind in the {name} "
                                     "profile.")
            if address:
                _check_address(host, address)
            seen.add(host)
            out[kind].append(Host(host, address or None))
    for kind, spec in kinds.items():
        count, low, high = len(out[kind]), spec["count"]["min"], spec["count"]["max"]
        if count < low or (high is not None and count > high):
            span = str(low) if high == low else f"{low} to {high}" if high is not None else f"{low} or more"
            raise InventoryError(
                f"--hosts: the {name} profile needs {span} host(s) of kind {kind} (groups "
                f"{' + '.join(spec['groups'])}); {count} given. Give them as --hosts {kind}=NAME[@ADDRESS],...")
    return out


def _check_address(host: str, address: str) -> None:
    try:
        ipaddress.ip_address(address)
    except ValueError:
        if not _HOSTNAME.match(address):
            raise InventoryError(f"--hosts: the address of {host} ({address!r}) is neither an IP address nor "
                                 "a DNS name.") from None


def counts_from_recommendation(rec: dict) -> tuple[str, dict[str, int]]:
    """The profile and host counts of ``appliance sizing recommend --json``'s answer."""
    if not isinstance(rec, dict) or rec.get("profile") not in SIZED_PROFILES or not isinstance(
            rec.get("hosts"), list):
        raise InventoryError("--recommendation: not the JSON of 'appliance sizing recommend --json' "
                             "(it needs profile and hosts).")
    return rec["profile"], {h["kind"]: int(h["count"]) for h in rec["hosts"]}


def _require_counts(hosts: dict[str, list[Host]], counts: dict[str, int], profile: str) -> None:
    for kind, wanted in counts.items():
        given = len(hosts.get(kind, []))
        if given != wanted:
            raise InventoryError(f"--hosts: the recommendation is {wanted} host(s) of kind {kind} for the "
                                 f"{profile} profile; {given} given.")


def hosts_document(profile: dict, hosts: dict[str, list[Host]]) -> dict:
    groups: dict[str, dict] = {}
    placed: set[str] = set()
    for kind, spec in profile["hosts"].items():
        for group in spec["groups"]:
            entries = groups.setdefault(group, {"hosts": {}})["hosts"]
            for host in hosts[kind]:
                # The address once, on the host's first group: Ansible merges host variables.
                first = host.name not in placed
                entries[host.name] = {"ansible_host": host.address} if first and host.address else None
                placed.add(host.name)
    return {"all": {"children": {"appliance": {"children": groups}}}}


def _app_addresses(profile: dict, hosts: dict[str, list[Host]]) -> list[str]:
    """pg_hba entries for the app hosts when the database is on a host of its own."""
    app_kinds = [k for k, s in profile["hosts"].items() if "appliance_app" in s["groups"]]
    if all("appliance_db" in profile["hosts"][k]["groups"] for k in app_kinds):
        return []  # one host: the app reaches PostgreSQL on 127.0.0.1
    entries = []
    for kind in app_kinds:
        for host in hosts[kind]:
            if host.address is None:
                raise InventoryError(
                    f"--hosts: give the address of app host {host.name} ({kind}={host.name}@ADDRESS): the "
                    f"database host of the {profile['profile']} profile lets app hosts in by address.")
            try:
                ip = ipaddress.ip_address(host.address)
            except ValueError:
                raise InventoryError(f"--hosts: app host {host.name} needs an IP address, not a DNS name "
                                     f"({host.address}): pg_hba.conf allows clients by address.") from None
            entries.append(f"{ip}/{ip.max_prefixlen}")
    return entries


def group_vars(profile: dict, hosts: dict[str, list[Host]], *, admin_email: str, server_name: str,
               bundle_dir: str, ssh_user: str) -> str:
    """``group_vars/all.yml``: every required variable, each explained; secrets only named."""
    if not _EMAIL.match(admin_email or ""):
        raise InventoryError(f"--admin-email {admin_email!r}: give the first provider admin's e-mail address.")
    if not _HOSTNAME.match(server_name or ""):
        raise InventoryError(f"--server-name {server_name!r}: give the host name clients use (a DNS name).")
    name = profile["profile"]
    hba = _app_addresses(profile, hosts)

    def q(value) -> str:
        return yaml.safe_dump(value, default_flow_style=True, width=1000).strip().removesuffix("\n...")

    lines = [
        f"# Generated by 'appliance sizing inventory --profile {name}'. Check each value, then run",
        "#   ansible-playbook -i THIS_DIR playbooks/preflight.yml",
        "# from the repository root; it checks these variables against the argument specs.",
        "",
        f"# The sizing profile (sizing/{name}.yml): every size the roles use comes from it.",
        f"appliance_profile: {name}",
        "",
        "# How Ansible reaches the hosts: a sudo-capable account with your SSH key.",
        f"ansible_user: {q(ssh_user)}",
        "ansible_become: true",
        "",
        "# The offline bundle on this control machine (`appliance bundle --out DIR`).",
        f"appliance_bundle_dir: {q(bundle_dir)}",
        "# The first provider admin; they must change the generated password at first login.",
        f"appliance_admin_email: {q(admin_email)}",
        "",
        "# TLS: the name clients use. Your certificate, or leave both unset for a self-signed one.",
        f"nginx_server_name: {q(server_name)}",
        '# nginx_tls_certificate_src: "{{ inventory_dir }}/tls/server.crt"',
        '# nginx_tls_key_src: "{{ inventory_dir }}/tls/server.key"',
        "",
    ]
    if hba:
        lines += ["# The database host lets in the app hosts only (scram-sha-256 over TCP).",
                  "postgresql_hba_entries:"] + [f"  - address: {entry}" for entry in hba] + [""]
    lines += [
        "# Secrets are not in this file. On the first run the roles generate them into",
        "# {{ inventory_dir }}/credentials/ (mode 0600, on this control machine only: keep it",
        "# safe and out of version control), or take them from a vault when you set:",
        '#   appliance_admin_password: "{{ vault_appliance_admin_password }}"',
        '#   postgresql_app_password: "{{ vault_postgresql_app_password }}"',
        "",
        "# Optional:",
        '# appliance_licence_file: "{{ inventory_dir }}/licence.txt"   # checked by the preflight',
        "# base_time_sync_servers: [ntp1.example.internal]            # when the hosts cannot reach the internet",
        "# base_firewall_ssh_sources: [192.0.2.0/24]                  # who may reach SSH",
        "# Any single profile value can be overridden, e.g.:",
        "# appliance_web_workers: 5",
        "# appliance_sizing_overrides: {backup: {retention_days: 14}}",
    ]
    return "\n".join(lines) + "\n"


def missing_required(text: str, specs: dict[str, dict] | None) -> dict[str, str]:
    """Required variables (with their spec) that ``text`` (group_vars) does not set."""
    if not specs:
        return {}
    written = yaml.safe_load(text) or {}
    return {name: owner for name, owner in required_options(specs).items() if name not in written}


def render(profile_name: str, values, *, admin_email: str, server_name: str, bundle_dir: str,
           ssh_user: str = "deploy", counts: dict[str, int] | None = None,
           specs: dict[str, dict] | None = None) -> tuple[dict[str, str], dict[str, str]]:
    """The inventory's files (relative path -> text) and the required variables left to set."""
    if profile_name not in SIZED_PROFILES:
        raise InventoryError(f"--profile {profile_name!r}: choose one of {', '.join(SIZED_PROFILES)}.")
    try:
        profile = load_profile(profile_name)
    except SizingError as exc:
        raise InventoryError(str(exc)) from exc
    hosts = parse_hosts(profile, values)
    if counts:
        _require_counts(hosts, counts, profile_name)
    variables = group_vars(profile, hosts, admin_email=admin_email, server_name=server_name,
                           bundle_dir=bundle_dir, ssh_user=ssh_user)
    missing = missing_required(variables, specs)
    if missing:
        variables += "\n# REQUIRED, not known to the generator: set these before the preflight.\n" + "".join(
            f"# {name}:   # required by {owner}\n" for name, owner in sorted(missing.items()))
    header = (f"# Generated by 'appliance sizing inventory --profile {profile_name}': each host in the groups\n"
              f"# of its kind in sizing/{profile_name}.yml.\n")
    document = yaml.safe_dump(hosts_document(profile, hosts), sort_keys=False, default_flow_style=False)
    files = {"hosts.yml": "---\n" + header + document.replace(": null\n", ":\n"),
             "group_vars/all.yml": "---\n" + variables}
    return files, missing


def write(out: Path, files: dict[str, str], force: bool = False) -> list[Path]:
    """Write ``files`` under ``out``; an existing non-empty directory only with ``force``."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise InventoryError(f"--out {out}: exists and is not a directory.")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise InventoryError(f"--out {out}: the directory is not empty; choose a new one, or pass --force "
                             "to overwrite the generated files (credentials/ is left alone).")
    written = []
    for relative, text in files.items():
        path = out / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        written.append(path)
    credentials = out / "credentials"
    credentials.mkdir(mode=0o700, exist_ok=True)
    os.chmod(credentials, 0o700)
    return written
