"""Backup and restore of a real instance, on SQLite and on a real PostgreSQL server.

Round trip while a writer thread keeps adding messages; restore onto a fresh instance
holding only the recovered master key (identity and licence come back); refusals
(wrong key, tampered, truncated, newer schema) that change nothing; an older-schema
archive restored and migrated; no seeded personal data readable in any archive, in
any encoding; crypto-shredding reaching archives taken before the shred.
"""

from __future__ import annotations

import base64
import codecs
import shutil
import threading

import pytest

from appliance.core.config import Instance, write_config
from appliance.web import db as dbmod
from appliance.web.backup import (
    BackupError,
    create_backup,
    list_backups,
    restore_backup,
    shred,
    verify_backup,
)
from appliance.web.migrations import available, current_version
from tests.helpers import make_instance, running_app

PERSONAL = ["Erika Mustermann", "erika.mustermann@example.org", "+49 170 5550123",
            "my IBAN is DE89370400440532013000", "Ünïcödé Straße 7"]


def encodings(text: str) -> list[bytes]:
    raw = text.encode()
    return [raw, text.encode("utf-16-le"), text.encode("utf-16-be"), base64.b64encode(raw),
            codecs.encode(raw, "hex"), codecs.encode(raw, "hex").upper(), text.lower().encode()]


def assert_no_personal_data(blob: bytes, where: str):
    for text in PERSONAL:
        for form in encodings(text):
            assert form not in blob, f"{text!r} found in {where} as {form[:20]!r}"


def seed(app) -> dict:
    """A tenant with contacts and conversations holding personal data; returns what to compare."""
    from appliance.web.models.contact_center import Channel
    from appliance.web.services import contacts, conversations, tenants

    with app.app_context():
        provider = tenants.create_provider("Provider P")
        customer = tenants.create_child(provider, "Bank B", "customer")
        channel = Channel.create(tenant=customer, kind="webchat", name="chat")
        contact = contacts.create_contact(customer, name=PERSONAL[0], email=PERSONAL[1], phone=PERSONAL[2])
        conv = conversations.start_conversation(channel, customer, contact, PERSONAL[3])
        conversations.add_message(conv, "in", PERSONAL[4])
        return {"tenant": customer.id, "conversation": conv.id, "contact": contact.id}


def snapshot(app) -> dict:
    """Every contact and message, decrypted: what a restore must give back."""
    from appliance.web.models.contact_center import Contact, Message

    with app.app_context():
        return {
            "contacts": sorted((c.id, c.name, c.email, c.phone) for c in Contact.select()),
            "messages": sorted((m.id, m.conversation_id, m.body) for m in Message.select()),
        }


class Writer(threading.Thread):
    """Adds messages in its own connection until stopped, like the app serving traffic."""

    def __init__(self, app, conversation_id):
        super().__init__(daemon=True)
        self.app, self.conversation_id = app, conversation_id
        self.stop = threading.Event()
        self.written = 0
        self.error = None

    def run(self):
        from appliance.web.models.contact_center import Conversation
        from appliance.web.services import conversations

        database = self.app.extensions["database"]
        try:
            with self.app.app_context(), database.connection_context():
                conv = Conversation.get_by_id(self.conversation_id)
                while not self.stop.is_set():
                    conversations.add_message(conv, "in", f"live message {self.written}")
                    self.written += 1
        except Exception as exc:  # reported by the test, not lost in the thread
            self.error = exc


def fresh_home(tmp_path, name, source: Instance, database_url: str) -> Instance:
    """A new host: config and the master key only (what 'keys import-recovery' leaves)."""
    home = tmp_path / name
    write_config(home, {"database_url": database_url})
    (home / "keys").mkdir(mode=0o700)
    shutil.copy2(source.path(source["master_key_file"]), home / "keys" / "master.key")
    shutil.copy2(source.path(source["secret_key_file"]), home / "keys" / "session.key")
    return Instance.load(home)


def other_db_url(request, tmp_path):
    if "postgres" in request.node.name:
        server = request.getfixturevalue("pg_server")
        name = server.create_database()
        request.addfinalizer(lambda: server.drop_database(name))
        return server.url(name)
    return "sqlite:///appliance.db"


def test_round_trip_while_writing_onto_a_fresh_instance(app, instance, tmp_path, request):
    ids = seed(app)
    writer = Writer(app, ids["conversation"])
    writer.start()
    try:
        for _ in range(3000):  # bounded: at most ~30 s for the writer to get going
            if writer.written >= 20 or writer.error is not None:
                break
            threading.Event().wait(0.01)
        with app.app_context():
            path, manifest = create_backup(instance)
        written_during = writer.written
    finally:
        writer.stop.set()
        writer.join(timeout=30)
    assert writer.error is None and written_during >= 20
    live = snapshot(app)
    assert_no_personal_data(path.read_bytes(), path.name)
    assert manifest.schema_version == max(v for v, _ in available())

    target = fresh_home(tmp_path, "fresh", instance, other_db_url(request, tmp_path))
    result = restore_backup(target, path)
    assert result.migrations_applied == []
    assert set(result.identity_restored) == {"keys/installation.id", "keys/installation.key"}
    for rel in result.identity_restored:
        assert (target.home / rel).read_bytes() == (instance.home / rel).read_bytes()
    with running_app(target) as restored_app:
        restored = snapshot(restored_app)
    # The archive is one consistent moment: the seeded rows and a gapless prefix of the live writes.
    assert restored["contacts"] == live["contacts"]
    n = len(restored["messages"])
    assert restored["messages"] == live["messages"][:n]
    assert 2 + 20 <= n <= len(live["messages"])


def test_licence_and_identity_come_back_on_a_fresh_instance(tmp_path, monkeypatch, db_url, request):
    from appliance.core.licence.testing import TestSigner
    from appliance.web.models.licence import InstalledLicence
    from appliance.web.services import licence
    from tests.helpers import trust_test_signer

    signer = TestSigner()
    trust_test_signer(signer, tmp_path / "trust", monkeypatch)
    source = make_instance(tmp_path / "home", db_url)
    with running_app(source) as app, app.app_context():
        service = licence.service()
        service.install(signer.issue(installation_id=service.installation_id()))
        before = (service.installation_id(), service.state().mode)
        path, _ = create_backup(source)
    target = fresh_home(tmp_path, "fresh", source, other_db_url(request, tmp_path))
    # A new host has its own session key: the licence must not depend on the old one.
    (target.home / "keys" / "session.key").write_text("f" * 64)
    restore_backup(target, path)
    with running_app(target) as app, app.app_context():
        service = licence.service()
        assert (service.installation_id(), service.state().mode) == before
        assert [lic.licence_id for lic in InstalledLicence.select()] == ["LIC-TEST-1"]


def test_wrong_key_and_tampering_are_refused_before_anything_changes(app, instance, tmp_path):
    seed(app)
    with app.app_context():
        path, _ = create_backup(instance)
        before = snapshot(app)
    # another instance, another master key
    stranger = make_instance(tmp_path / "stranger", "sqlite:///appliance.db")
    with pytest.raises(BackupError, match="master key"):
        restore_backup(stranger, path)
    original = path.read_bytes()
    damaged = tmp_path / "damaged.apbk"
    for position in (len(original) // 3, len(original) - 60):
        blob = bytearray(original)
        blob[position] ^= 0x40
        damaged.write_bytes(bytes(blob))
        with pytest.raises(BackupError, match=r"integrity|damaged|truncated"):
            restore_backup(instance, damaged)
    damaged.write_bytes(original[: len(original) // 2])
    with pytest.raises(BackupError, match=r"truncated|damaged"):
        restore_backup(instance, damaged)
    with pytest.raises(BackupError):
        verify_backup(instance, damaged)
    dbmod.bind(instance.database_url)
    assert snapshot(app) == before


def test_newer_schema_is_refused(app, instance, tmp_path):
    import io

    from appliance.core.backup.archive import ArchiveWriter
    from appliance.web.crypto.master import load_master_key

    seed(app)
    before = snapshot(app)
    master = load_master_key(instance)
    path = tmp_path / "future.apbk"
    writer = ArchiveWriter(path, master.key, master.key_id)
    writer.add_part("database", io.BytesIO(b"not reached"))
    writer.add_part("identity", io.BytesIO(b"{}"))
    kind = "postgresql" if instance.database_url.startswith("postgres") else "sqlite"
    writer.close(created_at="2031-01-01T00:00:00+00:00", app_version="9.0.0",
                 schema_version=max(v for v, _ in available()) + 1, master_key_id=master.key_id,
                 database_kind=kind)
    with pytest.raises(BackupError, match="newer than this software"):
        restore_backup(instance, path)
    dbmod.bind(instance.database_url)
    assert snapshot(app) == before


def test_older_schema_archive_is_restored_then_migrated(tmp_path, db_url, request):
    """An archive from a database at schema 3 (before the sync tables) comes back at today's schema."""
    import importlib

    from appliance.web import provisioning
    from appliance.web.migrations import SchemaVersion, migrator_for

    home = tmp_path / "old"
    home.mkdir()
    provisioning.ensure_config(home, {"database_url": db_url})
    old = Instance.load(home)
    provisioning.ensure_keys(old)
    database = dbmod.bind(old.database_url)
    with database.connection_context():
        database.create_tables([SchemaVersion])
        for version, name in available()[:3]:
            importlib.import_module(f"appliance.web.migrations.{name}").up(database, migrator_for(database))
            SchemaVersion.create(version=version, name=name)
        assert current_version(database) == 3
    path, manifest = create_backup(old)
    assert manifest.schema_version == 3
    assert verify_backup(old, path).schema_version == max(v for v, _ in available())

    target = fresh_home(tmp_path, "new", old, other_db_url(request, tmp_path))
    result = restore_backup(target, path)
    assert result.schema_from == 3
    assert [n for n in result.migrations_applied] == [n for v, n in available() if v > 3]
    database = dbmod.bind(target.database_url)
    with database.connection_context():
        assert current_version(database) == max(v for v, _ in available())
        assert database.table_exists("crypto_tenant_key")


def test_verify_restores_into_a_scratch_database_and_leaves_the_live_one(app, instance):
    seed(app)
    with app.app_context():
        path, _ = create_backup(instance)
        before = snapshot(app)
    result = verify_backup(instance, path)
    assert result.rows > 0 and result.tables > 5
    dbmod.bind(instance.database_url)
    assert snapshot(app) == before
    if instance.database_url.startswith("postgres"):
        database = dbmod.database_proxy.obj
        names = [r[0] for r in database.execute_sql("SELECT datname FROM pg_database").fetchall()]
        assert not [n for n in names if n.startswith("appliance_verify_")]
    [listed] = list_backups(instance)
    assert listed.good and listed.path == path


def test_shredded_tenant_stays_unreadable_in_an_archive_taken_before(app, instance):
    """Crypto-shredding: keys deleted after the backup; restoring the older archive reads nothing of it."""
    from appliance.web.crypto import INTEGRITY_FAILED
    from appliance.web.crypto.tables import TenantKey
    from appliance.web.models.contact_center import Contact, Message
    from appliance.web.models.tenancy import Tenant
    from appliance.web.services import contacts

    ids = seed(app)
    with app.app_context():
        other = Tenant.get_by_id(ids["tenant"]).parent
        keeper = contacts.create_contact(other, name="Kept Person", email="kept@example.net")
        path, _ = create_backup(instance)
        assert TenantKey.select().where(TenantKey.tenant_id == ids["tenant"]).count() > 0
        shred.shred_tenant(instance, ids["tenant"])
    restore_backup(instance, path)
    with running_app(instance) as restored, restored.app_context():
        assert TenantKey.select().where(TenantKey.tenant_id == ids["tenant"]).count() == 0
        assert Contact.get_by_id(keeper.id).name == "Kept Person"
        shredded = Contact.get_by_id(ids["contact"])
        assert [shredded.name, shredded.email, shredded.phone] == [INTEGRITY_FAILED] * 3
        bodies = [m.body for m in Message.select().where(Message.tenant == ids["tenant"])]
        assert bodies and set(bodies) == {INTEGRITY_FAILED}
    assert shred.ledger(instance) == {ids["tenant"]}


def test_a_later_archive_carries_the_shred_ledger_to_a_new_host(app, instance, tmp_path, request):
    """New host: restoring any archive taken after the shred records it, so older archives stay shredded."""
    from appliance.web.crypto.tables import TenantKey
    from appliance.web.models.tenancy import Tenant
    from appliance.web.services import contacts

    ids = seed(app)
    with app.app_context():
        contacts.create_contact(Tenant.get_by_id(ids["tenant"]).parent, name="Kept Person")
        before, _ = create_backup(instance)
        shred.shred_tenant(instance, ids["tenant"])
        after, manifest = create_backup(instance)
    assert manifest.extra["shredded_tenants"] == [ids["tenant"]]
    target = fresh_home(tmp_path, "new", instance, other_db_url(request, tmp_path))
    restore_backup(target, after)
    restore_backup(target, before)
    database = dbmod.bind(target.database_url)
    with database.connection_context():
        assert TenantKey.select().where(TenantKey.tenant_id == ids["tenant"]).count() == 0
        assert TenantKey.select().count() > 0
