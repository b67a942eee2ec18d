"""No secret the playbooks handled is in any log of the installed host, and the first
admin, whose password the installer generated, must choose a new one at first login.

Runs on the shared installed minimal host (no install of its own). Sorted after
test_minimal_profile, so in a full lab run the logs also hold the re-run, the
check-mode run and the upgrade.
"""

from __future__ import annotations

import base64
import re
import subprocess

import pytest
import requests

from tests.lab.conftest import MINIMAL_ADMIN

# The shared host may be installed in this file's setup: as long as test_minimal_profile allows.
pytestmark = [pytest.mark.lab, pytest.mark.timeout(2400)]

KEY_DIR = "/var/lib/appliance/keys"


def _raw(host, command: str) -> bytes:
    """A command's stdout as bytes: logs hold binary records (wtmp, lastlog)."""
    result = subprocess.run([*host.lab.ssh_argv(host.address), command], capture_output=True, timeout=180)
    assert result.returncode == 0, result.stderr.decode(errors="replace")
    return result.stdout


def _secrets(installed) -> dict[str, bytes]:
    host, credentials = installed["host"], installed["inventory"] / "credentials"
    found = {}
    for name in ("admin_password", "postgresql_app_password"):
        # The password lookup's file: "<password> salt=..." or just the password.
        value = (credentials / name).read_text().split()[0]
        assert len(value) >= 20, name
        found[name] = value.encode()
    for name in host.ssh(f"ls {KEY_DIR}").stdout.split():
        content = _raw(host, f"cat {KEY_DIR}/{name}").strip()
        if len(content) >= 16:
            found[f"keys/{name}"] = content
            found[f"keys/{name} (base64)"] = base64.b64encode(content)
            found[f"keys/{name} (hex)"] = content.hex().encode()
    return found


def _login(installed, password: str) -> requests.Response:
    # verify= on each request: requests lets REQUESTS_CA_BUNDLE override a Session's own.
    session, ca = requests.Session(), str(installed["ca"])
    base = f"https://{installed['host'].address}"
    page = session.get(f"{base}/login", verify=ca, timeout=10)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
    # Over HTTPS the CSRF check wants the Referer a browser sends.
    return session.post(f"{base}/login", data={"email": MINIMAL_ADMIN, "password": password, "csrf_token": token},
                        headers={"Referer": f"{base}/login"}, verify=ca, timeout=10)


def test_the_first_admin_must_choose_a_new_password(installed):
    password = (installed["inventory"] / "credentials" / "admin_password").read_text().split()[0]
    landed = _login(installed, password)
    assert landed.status_code == 200
    # Wherever the login leads, the only page offered is the password change.
    assert landed.url.endswith("/account"), landed.url
    assert "choose your own to continue" in landed.text
    flag = installed["host"].ssh(
        "cd /tmp && sudo -u postgres psql -d appliance -Atc "
        f"\"select must_change_password from \\\"user\\\" where email='{MINIMAL_ADMIN}'\"").stdout.strip()
    assert flag == "t"


def test_no_handled_secret_in_journal_nginx_or_postgresql_logs(installed):
    host = installed["host"]
    # A request nginx must log, so an empty access log cannot pass for a clean one.
    assert requests.get(f"https://{host.address}/login", verify=str(installed["ca"]), timeout=10).status_code == 200
    secrets = _secrets(installed)
    assert {"admin_password", "postgresql_app_password", "keys/master.key", "keys/session.key"} <= set(secrets)
    # Every field of every entry: sudo's COMMAND=, each process's _CMDLINE, messages.
    journal = _raw(host, "journalctl --no-pager --all -o verbose")
    # The place the admin password used to leak (sudo's logged command line) is
    # really in the journal, so finding nothing there means something.
    assert b"COMMAND=" in journal and b"appliance" in journal
    files = {
        "nginx": _raw(host, "cat /var/log/nginx/*"),
        "postgresql": _raw(host, "cat /var/log/postgresql/*"),
        "/var/log (all other files)": _raw(
            host, "find /var/log -path /var/log/journal -prune -o -type f -print0 | xargs -0 cat"),
        # Running processes: no secret in an argument list or an environment.
        "/proc/*/cmdline and environ": _raw(host, "cat /proc/[0-9]*/cmdline /proc/[0-9]*/environ 2>/dev/null; true"),
    }
    leaks = [f"{secret} in {where}" for where, text in {"journal": journal, **files}.items()
             for secret, value in secrets.items() if value in text]
    assert not leaks, leaks
    assert b"GET /login" in files["nginx"]  # the request above: the log is the live one
    # And the playbook's own output of the install.
    assert not [name for name, value in secrets.items() if value.decode(errors="ignore") in installed["run"].output]


def test_access_log_is_private_and_certificate_is_short_lived_with_key_ids(installed):
    from cryptography import x509

    host = installed["host"]
    assert host.ssh("stat -c '%a %U %G' /var/log/nginx/appliance.access.log").stdout.split() == ["640", "www-data",
                                                                                                 "adm"]
    cert = x509.load_pem_x509_certificate(installed["ca"].read_bytes())
    assert (cert.not_valid_after_utc - cert.not_valid_before_utc).days <= 397
    ski = cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
    aki = cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value.key_identifier
    assert ski and aki == ski
