"""Migrations upgrade a real older database in place, with its data, to the schema a fresh install gets;
that schema is the one today's models expect; a failing migration leaves nothing behind."""

from __future__ import annotations

import datetime as dt
import importlib
import uuid
from decimal import Decimal

import pytest
from peewee import CharField

from appliance.core.config import Instance
from appliance.web import db as dbmod
from appliance.web import migrations
from appliance.web import provisioning as setup
from tests.schema_support import (
    app_models,
    create_from_models,
    exact_schema,
    logical_schema,
    schema_differences,
    table_rows,
)

EVERYTHING = migrations.available()
LATEST = EVERYTHING[-1][0]
T0 = dt.datetime(2025, 3, 4, 9, 30, 15)  # the old release's data is from a fixed past, not the wall clock
CONTACT_UID = uuid.UUID("8f2d7c3a-56b1-4e0f-9a7d-1c2b3a4d5e6f")
CONVERSATION_UID = uuid.UUID("0b6c1f9e-2a3d-4c5b-8e7f-6a5b4c3d2e1f")
EMAIL_BIDX = bytes(range(32))


def frozen(version: int):
    """The migration module of ``version``: its classes are that step's tables."""
    return importlib.import_module(f"{migrations.__name__}.{dict(EVERYTHING)[version]}")


def ciphertext(label: str) -> bytes:
    """Bytes shaped like a stored value (5-byte header, 12-byte nonce, body); the test never decrypts them."""
    return b"\x01\x00\x00\x03\xe9" + label.encode().ljust(12, b".")[:12] + label.encode() * 3


# Rows an installation of each release would hold, written through that release's own tables.
# One function per migration: a new migration adds its own, so its tables are upgraded with data too.

def seed_core(db, ids, instance):
    m = frozen(1)
    with db.bind_ctx(m.MODELS):
        provider = m.Tenant.create(level=1, kind="provider", name="Provider", slug="provider", path="/",
                                   brand_color="#1f6feb", credit_limit=Decimal("0"), is_active=True, created_at=T0)
        m.Tenant.update(path=f"/{provider.id}/").where(m.Tenant.id == provider.id).execute()
        acme = m.Tenant.create(parent=provider.id, level=2, kind="customer", name="Acme", slug="acme", path="/",
                               brand_color="#aa3300", logo="data:image/png;base64,iVBORw0KGgo=",
                               credit_limit=Decimal("1500.50"), partner_level="gold", is_active=True, created_at=T0)
        m.Tenant.update(path=f"/{provider.id}/{acme.id}/").where(m.Tenant.id == acme.id).execute()
        admin = m.User.create(email="admin@provider.test", name="Ada Admin", password_hash="$argon2id$v=19$old",
                              is_active=True, created_at=T0, last_login_at=T0 + dt.timedelta(days=3))
        agent = m.User.create(email="agent@acme.test", name="Bo Agent", password_hash="$argon2id$v=19$old2",
                              is_active=True, created_at=T0)
        m.Membership.create(user=admin.id, tenant=provider.id, role="admin", shared=False, available=True,
                            created_at=T0)
        m.Membership.create(user=agent.id, tenant=acme.id, role="agent", shared=True, available=True,
                            last_assigned_at=T0, created_at=T0)
        m.ApiToken.create(tenant=acme.id, created_by=admin.id, name="crm", role="supervisor", prefix="ctk_4f2a",
                          token_hash="ab" * 32, created_at=T0, revoked=False)
        m.LoginAttempt.create(key="cd" * 32, at=T0)
        team = m.Team.create(tenant=acme.id, name="Support")
        m.TeamMember.create(team=team.id, user=agent.id)
        channel = m.Channel.create(tenant=acme.id, kind="webchat", name="Website", public_key="pk_" + "x" * 32,
                                   secret="s" * 32, team=team.id, shared=False, is_active=True, created_at=T0)
        contact = m.Contact.create(tenant=acme.id, uid=CONTACT_UID, name=ciphertext("name"),
                                   email=ciphertext("email"), phone=ciphertext("phone"), email_bidx=EMAIL_BIDX,
                                   phone_bidx=bytes(range(32, 64)), created_at=T0)
        conversation = m.Conversation.create(tenant=acme.id, uid=CONVERSATION_UID, channel=channel.id,
                                             contact=contact.id, status="pending", assignee=agent.id, team=team.id,
                                             subject=ciphertext("subject"), message_count=2, created_at=T0,
                                             last_message_at=T0 + dt.timedelta(minutes=5))
        first = m.Message.create(conversation=conversation.id, tenant=acme.id, uid=uuid.UUID(int=1),
                                 direction="in", body=ciphertext("hello"), created_at=T0)
        m.Message.create(conversation=conversation.id, tenant=acme.id, uid=uuid.UUID(int=2), direction="out",
                         author=agent.id, body=ciphertext("hi there"), created_at=T0 + dt.timedelta(minutes=5))
        m.Attachment.create(message=first.id, tenant=acme.id, uid=uuid.UUID(int=3), filename=ciphertext("a.png"),
                            content_type="image/png", size=8, data=b"\x89PNG\r\n\x1a\n")
        m.CannedAnswer.create(tenant=acme.id, shortcut="thanks", title="Thanks", body="Thank you!")
        m.Article.create(tenant=acme.id, title="Opening hours", body="9 to 5", shared=True, published=True,
                         created_at=T0, updated_at=T0)
        m.AuditEvent.create(at=T0, tenant=acme.id, actor_id=admin.id, action="channel.create",
                            target=f"channel:{channel.id}", details="{}", prev_hash="0" * 64, hash="e" * 64)
    ids.update(provider=provider.id, acme=acme.id, admin=admin.id, agent=agent.id, channel=channel.id,
               conversation=conversation.id, message=first.id)


def seed_keys(db, ids, instance):
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    from appliance.web.crypto import load_master_key
    from appliance.web.crypto.keyring import wrap_key

    m = frozen(2)
    master = load_master_key(instance)
    with db.bind_ctx(m.MODELS):
        # The id the first start recorded: the instance's own master key, so migrate accepts it.
        m.CryptoMaster.create(master_key_id=master.key_id, created_at=T0)
        for key_id, purpose in ((1001, "data"), (1002, "index")):
            # Really wrapped: a later migration (m0024) seals values with the tenant's data key.
            wrapped = wrap_key(AESGCM(master.key), bytes(range(32)), ids["acme"], key_id, 1, purpose)
            m.TenantKey.create(key_id=key_id, tenant_id=ids["acme"], purpose=purpose, version=1, status="active",
                               wrapped=wrapped, created_at=T0)
        m.KeyRotationJob.create(tenant_id=ids["acme"], new_key_id=1001, old_key_ids="[]", state="done",
                                progress="{}", rows_done=0, failures=0, started_at=T0, activated_at=T0,
                                finished_at=T0)


def seed_licences(db, ids, instance):
    m = frozen(3)
    with db.bind_ctx(m.MODELS):
        m.InstalledLicence.create(fingerprint="0123456789abcdef", licence_id="LIC-2025-0042", key_id="vendor-2025",
                                  customer="Provider GmbH", valid_from=T0, expires_at=T0 + dt.timedelta(days=365),
                                  text="-----BEGIN APPLIANCE LICENCE-----\nAAAA\n-----END APPLIANCE LICENCE-----",
                                  installed_at=T0, installed_by=ids["admin"])
        m.TenantProgram.create(tenant=ids["acme"], program="webchat", assigned_at=T0, effective_from=T0,
                               assigned_by=ids["admin"])
        m.LicenceClock.update(high_water="2025-03-04T09:30:15Z", high_water_mac="f" * 64).execute()


def seed_sync(db, ids, instance):
    m = frozen(4)
    with db.bind_ctx(m.MODELS):
        m.SyncOutbox.create(report_day=T0.date(), report_id=str(uuid.UUID(int=7)), payload='{"signed":"..."}',
                            state="sent", attempts=1, next_attempt_at=T0, idempotency_key="k" * 64,
                            created_at=T0, sent_at=T0)
        m.SyncState.create(key="enabled", value="1", updated_at=T0)
        m.SyncRequestDay.create(day=T0.date(), requests=3)


def seed_system(db, ids, instance):
    m = frozen(5)
    with db.bind_ctx(m.MODELS):
        m.WorkerHeartbeat.create(host="app1.internal", pid=4242, last_round_at=T0, last_failures="")


def seed_security(db, ids, instance):
    m = frozen(9)
    with db.bind_ctx(m.MODELS):
        m.UserSession.create(user=ids["admin"], sid_hash="a" * 64, created_at=T0, last_seen_at=T0)
        m.TotpCredential.create(user=ids["admin"], key_tenant_id=ids["provider"], uid=str(CONTACT_UID),
                                secret=ciphertext("totp"), confirmed_at=T0, last_counter=12345, created_at=T0)
        m.RecoveryCode.create(user=ids["admin"], code_hash="$argon2id$v=19$code", used_at=None)
        m.ThrottleEvent.create(scope="login.pair", key="b" * 64, at=T0)
        m.Invitation.create(tenant=ids["acme"], user=ids["admin"], role="agent", shared=False, invited_by=ids["admin"],
                            created_at=T0, expires_at=T0 + dt.timedelta(days=14), answered_at=None, accepted=None)


def seed_business(db, ids, instance):
    m = frozen(14)
    with db.bind_ctx(m.MODELS):
        day = T0.date()
        m.PricePolicy.create(program="webchat", effective_from=day, per_seat=True, monthly_fee_minor=2500,
                             setup_fee_minor=10000, included_conversations=500, included_messages=5000,
                             overage_conversation_minor=20, overage_message_minor=1, published=True, created_at=T0)
        contract = m.Contract.create(account=ids["acme"], status="active", starts_on=day,
                                     ends_on=day + dt.timedelta(days=365), renewal="auto", created_by=ids["admin"],
                                     created_at=T0)
        line = m.ContractLine.create(contract=contract.id, program="webchat", seats=5, per_seat=True,
                                     monthly_fee_minor=2500, setup_fee_minor=10000, included_conversations=500,
                                     included_messages=5000, overage_conversation_minor=20, overage_message_minor=1,
                                     setup_billed=True)
        m.SeatHistory.create(line=line.id, effective_on=day, seats=5)
        m.ScheduledChange.create(account=ids["acme"], contract=contract.id, kind="set_seats", program="webchat",
                                 value="8", effective_on=day + dt.timedelta(days=30), state="pending",
                                 created_by=ids["admin"], created_at=T0)
        m.UsageDay.create(tenant=ids["acme"], day=day, conversations=3, messages_in=7, messages_out=5,
                          active_operators=1, seats=1, programs="webchat", computed_at=T0)
        m.InvoiceCounter.update(last_number=1).where(m.InvoiceCounter.id == 1).execute()
        invoice = m.Invoice.create(account=ids["acme"], kind="invoice", number=1, period_start=day,
                                   period_end=day + dt.timedelta(days=31), status="issued", total_minor=22500,
                                   currency="EUR", issued_at=T0, created_at=T0)
        m.InvoiceLine.create(invoice=invoice.id, tenant=ids["acme"], description="webchat: 5 seats", quantity=5,
                             unit_price_minor=2500, amount_minor=12500)
        m.Payment.create(account=ids["acme"], amount_minor=22500, received_on=day, reference="SEPA 0001",
                         recorded_by=ids["admin"], created_at=T0)
        m.Notification.create(tenant=ids["acme"], key="renewal:1:90", text="Contract ends soon", created_at=T0)
        application = m.Application.create(tenant=ids["provider"], uid=uuid.UUID(int=31), account=ids["acme"],
                                           company=ciphertext("Acme"), applicant_name=ciphertext("Ann"),
                                           applicant_email=ciphertext("ann@acme.example"), lines="webchat:5",
                                           starts_on=day, state="submitted", quote_monthly_minor=12500,
                                           quote_setup_minor=10000, address_key=None, created_by=ids["admin"],
                                           decided_by=None, decided_at=None, contract=None, created_at=T0)
        m.ApplicationComment.create(tenant=ids["provider"], uid=uuid.UUID(int=32), application=application.id,
                                    author=ids["admin"], body=ciphertext("looks fine"), created_at=T0)


def seed_reports(db, ids, instance):
    m = frozen(18)
    buckets = {f"{prefix}_{n:02d}": 0 for prefix in ("fr", "rs") for n in range(16)}
    with db.bind_ctx(m.MODELS):
        m.ConversationTiming.insert(conversation=ids["conversation"], tenant=ids["acme"], first_response_at=T0,
                                    first_responder=ids["admin"]).on_conflict_ignore().execute()
        m.ReportDay.create(tenant=ids["acme"], day=T0.date(), dimension="all", key=0, opened=1, resolved=0,
                           messages_in=1, messages_out=1, first_responses=1, first_response_seconds=40,
                           resolution_seconds=0, computed_at=T0, **{**buckets, "fr_01": 1})
        m.ReportMonth.create(tenant=ids["acme"], day=T0.date().replace(day=1), dimension="all", key=0, opened=1,
                             resolved=0, messages_in=1, messages_out=1, first_responses=1,
                             first_response_seconds=40, resolution_seconds=0, computed_at=T0,
                             **{**buckets, "fr_01": 1})


def seed_live(db, ids, instance):
    m = frozen(8)
    with db.bind_ctx(m.MODELS):
        m.LiveEvent.create(tenant=ids["acme"], conversation_id=1, kind="message", message_id=1, direction="in",
                           created_at=T0)
        m.Presence.create(user=ids["agent"], last_seen_at=T0, last_active_at=T0)


def seed_channels(db, ids, instance):
    core, m = frozen(1), frozen(6)
    with db.bind_ctx(core.MODELS + m.MODELS):
        message = core.Message.select().first()
        channel = core.Channel.select().first()
        m.ChannelConfig.create(channel=channel.id, tenant=channel.tenant_id, uid=uuid.UUID(int=11),
                               settings=ciphertext("settings"), poll_state='{"offset": 8}', last_inbound_at=T0,
                               updated_at=T0)
        m.InboundSeen.create(channel=channel.id, external_id="update:7", message=message.id, created_at=T0)
        m.OutboxMessage.create(message=message.id, channel=channel.id, tenant=channel.tenant_id, state="sent",
                               attempts=1, next_attempt_at=T0, idempotency_key="i" * 32, external_id="5",
                               created_at=T0, sent_at=T0)
        m.ChannelIdentity.create(channel=channel.id, tenant=channel.tenant_id, uid=uuid.UUID(int=12),
                                 contact=core.Contact.select().first().id, external=ciphertext("chat 42"),
                                 external_bidx=EMAIL_BIDX, created_at=T0)


def seed_email(db, ids, instance):
    m = frozen(7)
    with db.bind_ctx(m.MODELS):
        m.EmailMailboxState.create(channel=ids["channel"], mailbox="INBOX", uidvalidity=1796284437, last_uid=12,
                                   last_poll_at=T0, last_inbound_at=T0, last_error="")
        m.EmailConversation.create(conversation=ids["conversation"], token="t" * 24)
        m.EmailThreadRef.create(tenant=ids["acme"], channel=ids["channel"], conversation=ids["conversation"],
                                message=ids["message"], uid=uuid.UUID(int=21), message_id_hash="h" * 64,
                                mail_id=ciphertext("<m@x>"), direction="in", created_at=T0)
        m.EmailQuarantine.create(tenant=ids["acme"], channel=ids["channel"], uid=uuid.UUID(int=22), mailbox="INBOX",
                                 uidvalidity=1796284437, imap_uid=3, reason="the mail has no sender address",
                                 raw=ciphertext("raw"), size=40, received_at=T0)


def seed_hardening(db, ids, instance):
    """Columns only (the audit scheme, contact verification): the earlier rows get their defaults."""


def seed_delivery_status(db, ids, instance):
    """The outbox's new columns are filled in from the rows there; one receipt held for a send."""
    m = frozen(19)
    with db.bind_ctx(m.MODELS):
        m.ChannelReceipt.create(channel=ids["channel"], external_id="5741311803571721088", status="delivered",
                                created_at=T0)


def seed_password_change(db, ids, instance):
    """A column only (must_change_password): the users already there keep their passwords."""


def seed_notice_mail(db, ids, instance):
    """Columns only: the notices already there become "skipped" (never mailed as a backlog)."""


def seed_seat_quotas(db, ids, instance):
    m = frozen(22)
    with db.bind_ctx(m.MODELS):
        m.SeatQuota.create(tenant=ids["acme"], seats=3, set_at=T0)


def seed_lifecycle(db, ids, instance):
    m = frozen(23)
    with db.bind_ctx(m.MODELS):
        m.PasswordReset.create(user=ids["admin"], token_hash="r" * 64, created_at=T0, expires_at=T0)


def seed_channel_secrets(db, ids, instance):
    """No new table. On a schema already at 24 or later, the channel the core seed wrote with
    release 1's plaintext secret gets what m0024 would have made of it: a uid and the sealed
    secret. On an older schema the upgrade itself seals it (CONVERTED below)."""
    if "uid" not in {c.name for c in db.get_columns("channel")}:
        return
    keyring = setup.check_master_key(instance)
    unsealed = 'SELECT id, tenant_id, secret FROM "channel" WHERE uid IS NULL'
    for channel_id, tenant_id, secret in db.execute_sql(unsealed).fetchall():
        plain = secret.encode("utf-8") if isinstance(secret, str) else bytes(secret)  # BYTEA on PostgreSQL
        uid = uuid.UUID(int=24_000 + channel_id)
        sealed = keyring.seal(tenant_id, "channel", "secret", uid, plain)
        q = db.param
        db.execute_sql(f'UPDATE "channel" SET uid = {q}, secret = {q} WHERE id = {q}', (str(uid), sealed, channel_id))


def seed_routing(db, ids, instance):
    """Columns and indexes only (capacity, opt-in, waiting): supervisors and admins start opted out."""


def seed_inbox(db, ids, instance):
    m = frozen(26)
    with db.bind_ctx(m.MODELS):
        label = m.Label.create(tenant=ids["acme"], name="VIP", color="#aa3300", shared=True, created_at=T0)
        m.ConversationLabel.create(conversation=ids["conversation"], label=label.id)
        m.ConversationRead.create(user=ids["agent"], conversation=ids["conversation"], read_at=T0)


def seed_identity_lookup(db, ids, instance):
    """An index only: the core seed's rows are what it indexes."""


SEEDS = {1: seed_core, 2: seed_keys, 3: seed_licences, 4: seed_sync, 5: seed_system, 6: seed_channels,
         7: seed_email, 8: seed_live, 9: seed_security, 10: seed_hardening, 14: seed_business,
         18: seed_reports, 19: seed_delivery_status, 20: seed_password_change, 21: seed_notice_mail,
         22: seed_seat_quotas, 23: seed_lifecycle, 24: seed_channel_secrets, 25: seed_routing, 26: seed_inbox,
         28: seed_identity_lookup}

# Columns whose values a migration rewrites (table, column) -> its version: compared through
# today's models after the upgrade instead of byte for byte.
CONVERTED = {("channel", "secret"): 24}


def test_every_migration_has_seed_rows():
    assert sorted(SEEDS) == [version for version, _ in EVERYTHING], (
        "tests/test_migrations.py: add a seed function (rows for the new tables) to SEEDS for each new migration")


@pytest.fixture
def fresh_url(request, tmp_path, db_url):
    """A second, empty database on the engine under test."""
    if db_url.startswith("sqlite"):
        yield f"sqlite:///{tmp_path / 'fresh.db'}"
        return
    server = request.getfixturevalue("pg_server")
    name = server.create_database()
    yield server.url(name)
    server.drop_database(name)


def fully_migrated_schema(url) -> dict:
    database = dbmod.bind(url)
    with database.connection_context():
        migrations.upgrade(database)
        return exact_schema(database)


def new_instance(tmp_path, db_url) -> Instance:
    home = tmp_path / "home"
    home.mkdir()
    setup.ensure_config(home, {"database_url": db_url})
    instance = Instance.load(home)
    setup.ensure_keys(instance)
    return instance


@pytest.mark.parametrize("release", [version for version, _ in EVERYTHING[:-1]])
def test_upgrade_from_older_release_keeps_its_data(release, tmp_path, db_url, fresh_url, monkeypatch):
    instance = new_instance(tmp_path, db_url)
    # The older release knew only the migrations up to its own (numbers need not be contiguous).
    known = [(version, name) for version, name in EVERYTHING if version <= release]
    monkeypatch.setattr(migrations, "available", lambda: known)
    assert setup.migrate(instance) == [name for _, name in known]
    database = dbmod.bind(instance.database_url)
    ids = {}
    with database.connection_context():
        for version, _ in known:
            SEEDS[version](database, ids, instance)
        before = table_rows(database)
        assert migrations.current_version(database) == release
    empty = [table for table, (_, rows) in before.items() if not rows]
    assert not empty, f"the seeds leave tables of release {release} empty: {empty}"

    monkeypatch.setattr(migrations, "available", lambda: EVERYTHING)
    assert setup.migrate(instance) == [name for _, name in EVERYTHING[len(known):]]

    database = dbmod.bind(instance.database_url)
    with database.connection_context():
        after = table_rows(database)
        for table, (columns, rows) in before.items():
            names, now = after[table]
            same = [i for i, c in enumerate(columns) if CONVERTED.get((table, c), 0) <= release]
            kept = sorted((tuple(row[names.index(columns[i])] for i in same) for row in now), key=repr)
            assert kept == sorted((tuple(row[i] for i in same) for row in rows), key=repr), (
                f"{table}: rows changed by the upgrade")
        versions = [r.version for r in migrations.SchemaVersion.select().order_by(migrations.SchemaVersion.version)]
        assert versions == [v for v, _ in EVERYTHING]

        # Today's models read the old rows and write new ones (sequences carried on).
        from appliance.web.models.contact_center import Contact, Conversation, Message
        from appliance.web.models.tenancy import Tenant, User

        acme = Tenant.get(Tenant.slug == "acme")
        assert (acme.name, acme.parent_id, acme.credit_limit) == ("Acme", ids["provider"], Decimal("1500.50"))
        conversation = Conversation.get(Conversation.uid == CONVERSATION_UID)
        assert (conversation.status, conversation.assignee_id) == ("pending", ids["agent"])
        assert Message.select().where(Message.conversation == conversation).count() == 2
        assert Contact.select(Contact.email_bidx).where(Contact.uid == CONTACT_UID).scalar() == EMAIL_BIDX
        newcomer = User.create(email="new@acme.test", name="New", password_hash="x")
        assert newcomer.id > ids["agent"]
        assert not User.get_by_id(ids["agent"]).must_change_password  # existing users keep their passwords

        # The channel's signing secret is sealed now, and today's model reads the old value.
        from appliance.web.crypto import open_keyring
        from appliance.web.models.contact_center import Channel

        monkeypatch.setattr("appliance.web.crypto.keyring._current", open_keyring(instance, install=False))
        channel = Channel.get_by_id(ids["channel"])
        assert channel.secret == "s" * 32 and channel.uid is not None
        raw = database.execute_sql('SELECT "secret" FROM "channel"').fetchone()[0]
        assert b"s" * 32 not in bytes(raw)

        upgraded = exact_schema(database)
    assert setup.migrate(instance) == []  # a second run does nothing
    assert upgraded == fully_migrated_schema(fresh_url)


def test_blind_index_columns_are_added_where_an_early_build_lacked_them(db_url, tmp_path, fresh_url, monkeypatch):
    instance = new_instance(tmp_path, db_url)
    monkeypatch.setattr(migrations, "available", lambda: EVERYTHING[:1])
    setup.migrate(instance)
    database = dbmod.bind(instance.database_url)
    with database.connection_context():
        for column in ("email_bidx", "phone_bidx"):
            database.execute_sql(f'DROP INDEX "contact_{column}"')
            database.execute_sql(f'ALTER TABLE "contact" DROP COLUMN "{column}"')
        assert "email_bidx" not in {c.name for c in database.get_columns("contact")}
    monkeypatch.setattr(migrations, "available", lambda: EVERYTHING)
    setup.migrate(instance)
    with database.connection_context():
        contact = logical_schema(database)["contact"]
    fully_migrated_schema(fresh_url)
    fresh = dbmod.open_database(fresh_url)
    with fresh.connection_context():
        assert contact == logical_schema(fresh)["contact"]


def test_migrated_schema_is_what_the_models_expect(instance, fresh_url):
    models = app_models()
    migrated = dbmod.open_database(instance.database_url)
    with migrated.connection_context():
        found = logical_schema(migrated)
    scratch = dbmod.open_database(fresh_url)
    with scratch.connection_context():
        create_from_models(scratch, models)
        wanted = logical_schema(scratch)
    assert {m._meta.table_name for m in models} == set(wanted)
    problems = schema_differences(wanted, found)
    assert not problems, (
        "today's models and the migrated schema disagree; add a migration under appliance/web/migrations/:\n  "
        + "\n  ".join(problems))


def test_model_check_notices_a_change_without_a_migration(tmp_path):
    from appliance.web.models.system import WorkerHeartbeat

    class ChangedHeartbeat(WorkerHeartbeat):
        note = CharField(max_length=40, null=True)

        class Meta:
            table_name = "worker_heartbeat"

    models = [ChangedHeartbeat if m is WorkerHeartbeat else m for m in app_models()]
    migrated = dbmod.open_database(f"sqlite:///{tmp_path / 'migrated.db'}")
    scratch = dbmod.open_database(f"sqlite:///{tmp_path / 'scratch.db'}")
    dbmod.database_proxy.initialize(migrated)  # upgrade records versions through the proxy
    with migrated.connection_context():
        migrations.upgrade(migrated)
        found = logical_schema(migrated)
    with scratch.connection_context():
        create_from_models(scratch, models)
        wanted = logical_schema(scratch)
    assert [line.split(":")[0] for line in schema_differences(wanted, found)] == ["worker_heartbeat.note"]


def test_failed_migration_rolls_back_and_says_so(tmp_path, db_url, monkeypatch):
    instance = new_instance(tmp_path, db_url)
    setup.migrate(instance)
    database = dbmod.bind(instance.database_url)

    class Broken:
        @staticmethod
        def up(db, migrator):
            db.execute_sql("CREATE TABLE half_done (id INTEGER)")
            raise RuntimeError("disk full")

    real_import = importlib.import_module
    monkeypatch.setattr(migrations, "available", lambda: [(9999, "m9999_broken")])
    monkeypatch.setattr(importlib, "import_module",
                        lambda name, *a: Broken if name.endswith("m9999_broken") else real_import(name, *a))
    with database.connection_context():
        with pytest.raises(RuntimeError, match="disk full"):
            migrations.upgrade(database)
        assert not database.table_exists("half_done")
        assert 9999 not in {r.version for r in migrations.SchemaVersion.select()}
        assert migrations.current_version(database) == LATEST
