"""Backups to a backup host and a restore onto a fresh host, over SSH as a customer would.

Three hosts, one of them shared: the package's installed minimal host (the archives'
source), a backup host that only receives (restricted account, rrsync write-only),
and a fresh host installed with the recovery kit that the archive is restored onto.
The conversations are read decrypted on both sides and compared. A tampered archive
and one made under another master key are refused with nothing changed.
"""

from __future__ import annotations

import base64
import json
import shlex
import subprocess
import time

import pytest
import yaml

from tests.lab.conftest import MINIMAL_ADMIN, record, run_playbook, write_inventory

pytestmark = [pytest.mark.lab, pytest.mark.timeout(2400)]

HOME = "/var/lib/appliance"
APPLIANCE = "/opt/appliance/venv/bin/appliance"
PYTHON = "/opt/appliance/venv/bin/python"
RECEIVED = "/srv/appliance-backups/archives"
INCOMING = "/srv/appliance-backups/incoming"
PASSPHRASE = "lab recovery passphrase 1"
SSH_KEY = f"{HOME}/ssh/backup_target_ed25519"
KNOWN_HOSTS = f"{HOME}/ssh/known_hosts"

SEED = """
import random
from appliance.core.config import Instance
from appliance.web import create_app
from appliance.web.models.contact_center import Channel, Contact, Conversation, Message
from appliance.web.models.tenancy import Tenant
from appliance.web.services import tenants

app = create_app(instance=Instance.load("%(home)s"))
db = app.extensions["database"]
rng = random.Random(7)
with app.app_context(), db.connection_context():
    provider = Tenant.get(Tenant.level == 1)
    tenant = tenants.create_child(provider, "Lab bank", "enterprise")
    channel = Channel.create(tenant=tenant, kind="webchat", name="chat")
    for i in range(12):
        contact = Contact.create(tenant=tenant, name=f"Lab customer {i}", email=f"lab{i}@example.test")
        conv = Conversation.create(tenant=tenant, channel=channel, contact=contact, status="open")
        for k in range(3):
            Message.create(conversation=conv, tenant=tenant, direction="in" if k %% 2 == 0 else "out",
                           body=f"Lab message {i}.{k} card ending {rng.randrange(1000, 9999)}")
print("seeded")
"""

DUMP = """
import json
from appliance.core.config import Instance
from appliance.web import create_app
from appliance.web.models.contact_center import Conversation, Message

app = create_app(instance=Instance.load("%(home)s"))
db = app.extensions["database"]
with app.app_context(), db.connection_context():
    out = []
    for c in Conversation.select().order_by(Conversation.id):
        out.append([c.id, c.tenant_id, c.status, c.contact.name, c.contact.email,
                    [[m.direction, m.body] for m in Message.select().where(Message.conversation == c)
                                                        .order_by(Message.id)]])
print(json.dumps(out))
"""


def _as_appliance(host, command: str, stdin: str | None = None, check=True):
    """A command as the service user; a secret goes on standard input, never the command line."""
    wrapped = f"cd /tmp && runuser -u appliance -- bash -c {shlex.quote(command)}"
    if stdin is None:
        return host.ssh(wrapped, check=check)
    argv = [*host.lab.ssh_argv(host.address), wrapped]
    result = subprocess.run(argv, input=stdin, text=True, capture_output=True, timeout=300)
    assert not check or result.returncode == 0, f"{command}: {result.stdout}{result.stderr}"
    return result


def _python(host, script: str) -> str:
    return _as_appliance(host, f"{PYTHON} - <<'EOF'\n{script % {'home': HOME}}\nEOF").stdout


def conversations(host) -> list:
    return json.loads(_python(host, DUMP).strip().splitlines()[-1])


def _backup_hosts_file(directory, backup_host) -> list[str]:
    """The backup host beside the appliance group (it is no appliance host the preflight sizes)."""
    path = directory / "backup-hosts.yml"
    hosts = {backup_host.name: {"ansible_host": backup_host.address}}
    path.write_text(yaml.safe_dump({"all": {"children": {"appliance_backup": {"hosts": hosts}}}}))
    return ["-i", str(path)]


@pytest.fixture(scope="module")
def pushed(lab, installed):
    source, inventory = installed["host"], installed["inventory"]
    backup_host = lab.boot("bk1", 40)
    # backup.yml opens the source's egress to bk1; the shared host's own inventory has no
    # backup host, so its ruleset goes back as it was for the modules that re-run site.yml.
    source.ssh("cp -p /etc/nftables.conf /root/nftables.conf.before-backup-host")
    try:
        extra = _backup_hosts_file(inventory, backup_host)
        assert "seeded" in _python(source, SEED)
        run = run_playbook(inventory, "backup.yml", *extra)
        record("backup.yml (timer, backup host, backup, push)", run.seconds)
        if run.returncode != 0:
            journal = source.ssh("journalctl --no-pager -n 40 -u appliance-backup", check=False).stdout
            pytest.fail(f"backup.yml failed (log {run.log}):\n{run.tail()}\nappliance-backup journal:\n{journal}")
        # The store path unit moves it from incoming/ as soon as it is complete.
        deadline = time.monotonic() + 60
        while not (names := backup_host.ssh(f"ls -1 {RECEIVED}").stdout.split()) and time.monotonic() < deadline:
            time.sleep(1)
        assert len(names) == 1 and names[0].endswith(".apbk"), names
        yield {"source": source, "backup": backup_host, "inventory": inventory, "extra": extra,
               "archive": names[0], "before": conversations(source)}
    finally:
        source.ssh("cp -p /root/nftables.conf.before-backup-host /etc/nftables.conf && nft -f /etc/nftables.conf",
                   check=False)
        lab.stop_host(backup_host)


@pytest.fixture(scope="module")
def restored(lab, pushed, bundle, tmp_path_factory):
    """A fresh host installed with the recovery kit, then restore.yml from the backup host."""
    source = pushed["source"]
    _as_appliance(source, f'APPLIANCE_RECOVERY_PASSPHRASE="$(cat)" exec {APPLIANCE} --home {HOME} '
                          "keys export-recovery -o /tmp/lab-kit.txt", stdin=PASSPHRASE)
    local = tmp_path_factory.mktemp("recovery")
    kit = local / "kit.txt"
    kit.write_text(source.ssh("cat /tmp/lab-kit.txt && rm /tmp/lab-kit.txt").stdout)
    secrets_file = local / "recovery.yml"
    secrets_file.write_text(yaml.safe_dump({"appliance_recovery_passphrase": PASSPHRASE}))
    secrets_file.chmod(0o600)

    fresh = lab.boot("cc2", 41)
    try:
        inventory = write_inventory(
            lab.run_dir / "inventory-restore", lab, {"cc2": (fresh.address, ["appliance_app", "appliance_db"])},
            appliance_profile="minimal", appliance_bundle_dir=str(bundle[0]), appliance_admin_email=MINIMAL_ADMIN,
            nginx_server_name="cc2.lab.example", nginx_server_aliases=[f"IP:{fresh.address}"],
        )
        extra = _backup_hosts_file(inventory, pushed["backup"])
        install = run_playbook(inventory, "site.yml", "-e", f"appliance_recovery_kit={kit}", "-e", f"@{secrets_file}")
        record("install with the recovery kit (site.yml)", install.seconds)
        assert install.returncode == 0, f"site.yml failed (log {install.log}):\n{install.tail()}"
        assert PASSPHRASE not in install.output
        run = run_playbook(inventory, "restore.yml", *extra, "-e", f"backup_archive_on_backup_host={pushed['archive']}")
        record("restore.yml (from the backup host)", run.seconds)
        assert run.returncode == 0, f"restore.yml failed (log {run.log}):\n{run.tail()}"
        yield {"host": fresh, "inventory": inventory, "extra": extra, "run": run, "local": local}
    finally:
        lab.stop_host(fresh)


def test_archive_on_the_backup_host_is_the_sources_and_ciphertext(pushed):
    source, backup_host, name = pushed["source"], pushed["backup"], pushed["archive"]
    here = source.ssh(f"sha256sum {HOME}/backups/{name}").stdout.split()[0]
    there = backup_host.ssh(f"sha256sum {RECEIVED}/{name}").stdout.split()[0]
    assert here == there
    assert backup_host.ssh(f"stat -c '%a %U' {RECEIVED}/{name} {RECEIVED} {INCOMING}").stdout.split() == [
        "600", "root", "700", "root", "700", "appliance-backup"]
    assert backup_host.ssh(f"ls -A {INCOMING}").stdout.strip() == ""
    # Seeded plaintext appears nowhere on the backup host, which has no key to read it.
    grep = backup_host.ssh(f"grep -rlaF -e 'Lab customer' -e 'Lab message' {RECEIVED}", check=False)
    assert grep.returncode == 1 and not grep.stdout
    assert backup_host.ssh("ls /var/lib/appliance /opt/appliance", check=False).returncode != 0
    assert len(pushed["before"]) == 12 and pushed["before"][0][3] == "Lab customer 0"


def test_backup_account_gets_no_shell_and_cannot_read_replace_or_delete(pushed):
    source, backup_host, name = pushed["source"], pushed["backup"], pushed["archive"]
    ssh = (f"ssh -i {SSH_KEY} -o BatchMode=yes -o IdentitiesOnly=yes -o StrictHostKeyChecking=yes "
           f"-o UserKnownHostsFile={KNOWN_HOSTS}")
    target = f"appliance-backup@{backup_host.address}"
    for attempt in (f"{ssh} {target} id", f"{ssh} {target} /bin/sh -c id", f"{ssh} -tt {target}",
                    f"{ssh} {target} 'rsync --server --sender -e.Lsfx . ./'"):
        result = _as_appliance(source, f"timeout 20 {attempt} </dev/null", check=False)
        assert result.returncode != 0, f"{attempt}: {result.stdout}"
        assert "uid=" not in result.stdout
    rsync = f"rsync --rsh={shlex.quote(ssh)}"
    pull = _as_appliance(source, f"{rsync} {target}:{name} /tmp/pulled.apbk", check=False)
    assert pull.returncode != 0 and "write-only" in pull.stderr
    before = backup_host.ssh(f"sha256sum {RECEIVED}/{name}").stdout
    _as_appliance(source, f"head -c 100 /dev/urandom > /tmp/{name}", check=True)
    _as_appliance(source, f"{rsync} --times /tmp/{name} {target}:", check=False)
    _as_appliance(source, f"mkdir -p /tmp/empty && {rsync} -r --delete /tmp/empty/ {target}:", check=False)
    backup_host.ssh("systemctl start appliance-backup-store.service")
    assert backup_host.ssh(f"sha256sum {RECEIVED}/{name}").stdout == before
    assert backup_host.ssh(f"ls -A {INCOMING}").stdout.strip() == ""
    account = backup_host.ssh("getent shadow appliance-backup").stdout.split(":")
    assert account[1].startswith("!"), "the account must have no password"
    keys_file = backup_host.ssh("stat -c '%U %a' /etc/ssh/appliance-backup.authorized_keys").stdout.split()
    assert keys_file == ["root", "644"]


def test_restore_on_a_fresh_host_gives_identical_conversations(pushed, restored):
    fresh = restored["host"]
    assert conversations(fresh) == pushed["before"]
    verify = _as_appliance(fresh, f"{APPLIANCE} --home {HOME} keys verify")
    assert " 0 failed" in verify.stdout and "values in" in verify.stdout
    assert fresh.ssh(f"cat {HOME}/keys/installation.id").stdout == pushed["source"].ssh(
        f"cat {HOME}/keys/installation.id").stdout
    assert fresh.ssh("systemctl is-active appliance-web appliance-worker").stdout.split() == ["active", "active"]
    assert fresh.ssh(f"test -e {HOME}/keys/recovery-kit.txt", check=False).returncode == 1


def _refused(restored, archive, expected: str):
    fresh = restored["host"]
    before = conversations(fresh)
    run = run_playbook(restored["inventory"], "restore.yml", "-e", f"backup_archive={archive}")
    assert run.returncode != 0, run.tail()
    assert expected in run.output, run.tail()
    assert conversations(fresh) == before
    assert fresh.ssh("systemctl is-active appliance-web appliance-worker").stdout.split() == ["active", "active"]


def test_tampered_archive_is_refused_and_changes_nothing(pushed, restored):
    tampered = restored["local"] / "tampered.apbk"
    encoded = pushed["backup"].ssh(f"base64 -w0 {RECEIVED}/{pushed['archive']}").stdout
    raw = bytearray(base64.b64decode(encoded))
    raw[len(raw) // 2] ^= 0x01
    tampered.write_bytes(bytes(raw))
    _refused(restored, tampered, "integrity")


def test_archive_under_another_master_key_is_refused_and_changes_nothing(restored, tmp_path):
    from appliance.web.backup import create_backup
    from tests.helpers import make_instance

    other = make_instance(tmp_path / "other", "sqlite:///appliance.db")
    path, _ = create_backup(other)
    _refused(restored, path, "master key")


def test_backup_setup_rerun_changes_nothing(pushed):
    run = run_playbook(pushed["inventory"], "backup.yml", *pushed["extra"], "-e", "backup_now=false")
    assert run.returncode == 0, run.tail()
    recap = run.recap()
    assert recap[pushed["source"].name]["changed"] == 0, run.changed_tasks()
    assert recap[pushed["backup"].name]["changed"] == 0, run.changed_tasks()


def test_point_in_time_recovery_to_between_two_writes(installed):
    """pgBackRest on the installed host's PostgreSQL: restore to a time between two commits.

    The probe lives in a database of its own (a cluster-wide restore brings it back
    too), so the appliance's schema stays as the other lab files expect it.
    """
    host, inventory = installed["host"], installed["inventory"]
    run = run_playbook(inventory, "pgbackrest.yml", "-e", "pgbackrest_enabled=true")
    record("pgbackrest.yml (stanza, first full backup)", run.seconds)
    assert run.returncode == 0, f"pgbackrest.yml failed (log {run.log}):\n{run.tail()}"
    assert "repo1-cipher-type=aes-256-cbc" in host.ssh("cat /etc/pgbackrest/pgbackrest.conf").stdout
    password = (inventory / "credentials" / "pgbackrest_cipher_pass").read_text().split()[0]
    assert password not in run.output
    assert host.ssh("stat -c '%a %U' /etc/pgbackrest/pgbackrest.conf").stdout.split() == ["600", "postgres"]

    def sql(statement, database="pitr_probe"):
        psql = f"cd /tmp && runuser -u postgres -- psql -X -At -d {database}"
        return host.ssh(f"{psql} -c {shlex.quote(statement)}").stdout

    before = conversations(host)
    host.ssh("cd /tmp && runuser -u postgres -- createdb pitr_probe")
    sql("create table probe (label text primary key)")
    sql("insert into probe values ('first')")
    target = sql("select to_char(clock_timestamp() at time zone 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') || '+00'").strip()
    host.ssh("sleep 2")
    sql("insert into probe values ('second')")
    # Both commits into the repository: check switches WAL and waits for the segment.
    host.ssh("cd /tmp && runuser -u postgres -- pgbackrest --stanza=appliance --log-level-console=warn check")

    started = time.monotonic()
    run = run_playbook(inventory, "restore_pitr.yml", "-e", f"restore_target_time='{target}'")
    record("restore_pitr.yml (to a time)", time.monotonic() - started)
    assert run.returncode == 0, f"restore_pitr.yml failed (log {run.log}):\n{run.tail()}"
    assert sql("select label from probe order by label").split() == ["first"]
    assert sql("select pg_is_in_recovery()").strip() == "f"
    assert conversations(host) == before
    assert host.ssh("systemctl is-active appliance-web appliance-worker").stdout.split() == ["active", "active"]
    again = run_playbook(inventory, "pgbackrest.yml", "-e", "pgbackrest_enabled=true")
    assert again.returncode == 0 and again.recap()[host.name]["changed"] == 0, again.changed_tasks()
