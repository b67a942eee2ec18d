"""What leaves the network: counts only, nothing at all while sync is off, and few requests."""

from __future__ import annotations

import base64
import datetime as dt
import json
import uuid

import pytest

from appliance.core.identity import load_identity
from tests.sync_support import Listener, Receiver

SECRETS = {
    "contact_name": "Zoltan Quixbyrne",
    "contact_email": "zoltan.quixbyrne@private-mail.example",
    "contact_phone": "+7 916 555 01 99",
    "contact_notes": "passport 4510 987654 issued Moscow",
    "message_in": "my card is 4111 1111 1111 1111 exp 09/29",
    "message_out": "Dear Zoltan, your IBAN DE89 3704 0044 0532 0130 00 is confirmed",
    "user_name": "Vasilisa Premudraya",
    "user_email": "vasilisa.premudraya@bank.example",
    "tenant_name": "Hollowmere Trust Banking",
    "subject": "complaint about loan 77-31-99",
}


@pytest.fixture
def receiver(tmp_path):
    r = Receiver(tmp_path / "vendor.db")
    yield r
    r.stop()


def seed_personal_data(world):
    """A conversation full of known personal values, today, in tenant A1."""
    from appliance.web.models.tenancy import Membership, User
    from appliance.web.services import contacts, conversations, tenants
    from appliance.web.services.passwords import hash_password

    tenant = tenants.create_child(world.tenants["A"], SECRETS["tenant_name"], "brand")
    user = User.create(email=SECRETS["user_email"], name=SECRETS["user_name"], password_hash=hash_password("x" * 12))
    Membership.create(user=user, tenant=tenant, role="agent")
    channel = world.objects["A"]["shared_channel"]
    from appliance.web.models.contact_center import Channel

    channel = Channel.create(tenant=tenant, kind="webchat", name="private chat")
    contact = contacts.create_contact(
        tenant, name=SECRETS["contact_name"], email=SECRETS["contact_email"],
        phone=SECRETS["contact_phone"], notes=SECRETS["contact_notes"],
    )
    conv = conversations.start_conversation(channel, tenant, contact, SECRETS["message_in"])
    conv.subject = SECRETS["subject"]
    conv.save()
    conversations.add_message(conv, "out", SECRETS["message_out"], author=user)
    return tenant, user


def variants(value: str) -> set[str]:
    """The value as a leak could spell it: as is, lower case, digits only, JSON-escaped."""
    out = {value, value.lower(), json.dumps(value)[1:-1]}
    digits = "".join(c for c in value if c.isdigit())
    if len(digits) >= 6:
        out.add(digits)
    for word in value.split():
        if len(word) >= 6 and not word.isdigit():
            out.add(word)
            out.add(word.lower())
    return out


def assert_clean(blob: str, where: str, allow=()):
    for name, value in SECRETS.items():
        if name in allow:
            continue
        for v in variants(value):
            assert v not in blob, f"{name} ({v!r}) leaked into {where}"


def decoded(text: str) -> str:
    """Armoured export files are base64: scan what they decode to, too."""
    if "BEGIN APPLIANCE SYNC REPORT" in text:
        body = "".join(text.strip().splitlines()[1:-1])
        return base64.b64decode(body).decode()
    return text


def test_no_seeded_personal_data_leaves_in_any_form(app, world, receiver, tmp_path, clock, runner):
    from appliance.cli import main
    from appliance.web.models.sync import SyncOutbox
    from appliance.web.sync import service

    tenant, _ = seed_personal_data(world)
    instance = app.extensions["appliance_instance"]
    identity = load_identity(instance)
    receiver.register(identity)
    instance.settings["sync"]["vendor_url"] = receiver.url
    service.set_enabled(instance, True)
    today = clock().date()  # the day seed_personal_data wrote to
    service.enqueue_day(instance, today)

    # The report is not empty: the seeded day is counted (so the scan below means something).
    report = json.loads(SyncOutbox.get().payload)["report"]
    row = next(t for t in report["days"][0]["tenants"] if t["tenant"] == tenant.id)
    assert (row["conversations"], row["messages"], row["active_operators"], row["seats_used"]) == (1, 2, 1, 1)

    preview = service.preview(instance)
    assert_clean(preview, "the preview")
    assert_clean(SyncOutbox.get().payload, "the outbox")
    assert service.run_once(instance).status == "sent"
    bodies = [p.body.decode() for p in receiver.front.posts()]
    assert bodies and all(str(tenant.id) in b for b in bodies)
    for body in bodies:
        assert_clean(body, "the request body")

    for args in (["--armor"], []):
        out = tmp_path / f"export{len(args)}.txt"
        result = runner.invoke(main, ["--home", str(instance.home), "sync", "export", str(out),
                                      "--day", today.isoformat(), *args])
        assert result.exit_code == 0, result.output
        assert_clean(decoded(out.read_text()), f"the export file {args}")
    result = runner.invoke(main, ["--home", str(instance.home), "sync", "preview"])
    assert result.exit_code == 0, result.output
    assert_clean(result.output, "sync preview")


def test_tenant_names_appear_only_when_the_installer_allows_it(app, world, clock):
    """Positive control for the scanner: the one allowed free-text field is caught when on."""
    from appliance.web.sync import service

    seed_personal_data(world)
    instance = app.extensions["appliance_instance"]
    today = clock().date()  # the day seed_personal_data wrote to
    plain = service.export(instance, today)
    assert_clean(plain, "the export")
    instance.settings["sync"]["share_tenant_names"] = True
    named = service.export(instance, today)
    assert SECRETS["tenant_name"] in named
    assert_clean(named, "the named export", allow={"tenant_name"})


def test_the_report_counts_audit_entries_so_the_vendor_sees_deletions(app, world, clock):
    """A count, never an entry: deleting audit rows lowers the next report's figure."""
    from appliance.web.models.audit import AuditEvent
    from appliance.web.sync import service

    instance = app.extensions["appliance_instance"]
    identity = load_identity(instance)
    before = service.build_day_report(instance, identity, clock().date())
    total = AuditEvent.select().count()
    assert total > 0 and before["audit_entries"] == total
    newest = AuditEvent.select(AuditEvent.id).order_by(AuditEvent.id.desc()).limit(3)
    AuditEvent.delete().where(AuditEvent.id.in_(newest)).execute()
    after = service.build_day_report(instance, identity, clock().date())
    assert after["audit_entries"] == total - 3


def test_with_sync_off_nothing_connects_anywhere(app, world, tmp_path, runner):
    """A listener on the vendor URL records any connection: there must be none."""
    from appliance.cli import main
    from appliance.web.jobs import run_round
    from appliance.web.models.sync import SyncOutbox
    from appliance.web.sync import service

    listener = Listener()
    try:
        instance = app.extensions["appliance_instance"]
        instance.settings["sync"]["vendor_url"] = listener.url
        # Turned off (the default), a due day, every path that could send:
        assert service.run_once(instance).status == "disabled"
        assert [name for name, _ in run_round(app) if name == "sync_job"] == []
        home = ["--home", str(instance.home)]
        for args in (["sync", "run-once"], ["sync", "status"], ["sync", "preview"],
                     ["sync", "export", str(tmp_path / "x.json")]):
            result = runner.invoke(main, home + args)
            assert result.exit_code == 0, (args, result.output)
        assert SyncOutbox.select().count() == 0  # not even queued while off
        assert listener.settle() == 0

        # Locked off by the installer: on in the database, still nothing.
        service.set_enabled(instance, True)
        instance.settings["sync"]["locked_off"] = True
        assert service.run_once(instance).status == "disabled"
        assert [name for name, _ in run_round(app) if name == "sync_job"] == []
        with pytest.raises(service.SyncLockedOff):
            service.set_enabled(instance, True)
        assert listener.settle() == 0

        # Control: the listener does see a connection once sync is really on.
        instance.settings["sync"]["locked_off"] = False
        assert service.run_once(instance).status == "retry"
        assert listener.settle() >= 1
    finally:
        listener.stop()


def seed_events(tenant, conversation, author, day: dt.date, count: int):
    """``count`` messages on ``day``, inserted in bulk (the body column is copied raw)."""
    from peewee import Table

    from appliance.web.db import database_proxy

    raw_body = database_proxy.execute_sql(
        f"SELECT body FROM message WHERE conversation_id = {int(conversation.id)}"
    ).fetchone()[0]
    columns = ("conversation_id", "tenant_id", "uid", "direction", "author_id", "body", "created_at")
    table = Table("message", columns).bind(database_proxy)
    start = dt.datetime.combine(day, dt.time(0, 0))
    rows = []
    for n in range(count):
        direction = "out" if n % 2 else "in"
        rows.append((conversation.id, tenant.id, uuid.uuid4().hex, direction,
                     author.id if direction == "out" else None, raw_body,
                     start + dt.timedelta(seconds=n * 86_000 // count)))
    with database_proxy.atomic():
        for i in range(0, len(rows), 5000):
            table.insert(rows[i : i + 5000], columns=[getattr(table, c) for c in columns]).execute()


def test_100k_events_in_a_day_make_one_request(app, world, receiver, clock):
    from appliance.web.sync import service

    instance = app.extensions["appliance_instance"]
    receiver.register(load_identity(instance))
    instance.settings["sync"]["vendor_url"] = receiver.url
    service.set_enabled(instance, True)
    yesterday = clock().date() - dt.timedelta(days=1)
    tenant = world.tenants["A1"]
    seed_events(tenant, world.objects["A1"]["conversation"], world.users[("A1", "agent")], yesterday, 100_000)

    for _ in range(5):  # five worker rounds
        service.run_once(instance)
        clock.advance(minutes=1)
    posts = receiver.front.posts()
    assert len(posts) == 1
    report = json.loads(posts[0].body)["reports"][0]["report"]
    row = next(t for t in report["days"][0]["tenants"] if t["tenant"] == tenant.id)
    assert row["messages"] == 100_000
    assert row["active_operators"] == 1


@pytest.fixture(autouse=True)
def _app_context(app):
    """The services (licence checks on new tenants) expect an application context."""
    with app.app_context():
        yield
