"""The e-mail channel against real servers on loopback: Dovecot (IMAP) and aiosmtpd
(SMTP submission with STARTTLS and AUTH), on SQLite and PostgreSQL."""

from __future__ import annotations

from email.message import EmailMessage
from email.utils import make_msgid

import pytest

from appliance.web.channels.email import service, smtp
from appliance.web.jobs import run_round
from appliance.web.models.channels import OutboxMessage
from appliance.web.models.contact_center import Attachment, Channel, Conversation, Message
from appliance.web.models.email import EmailMailboxState, EmailQuarantine
from appliance.web.services import conversations, outbox, tenants
from appliance.web.services.passwords import hash_password
from tests.helpers import running_app
from tests.mail_support import SMTP_USER, Dovecot, SmtpSink

CUSTOMER = "anna@customer.example"


@pytest.fixture
def dovecot():
    server = Dovecot().start()
    yield server
    server.stop()


@pytest.fixture
def sink(tmp_path):
    server = SmtpSink(tmp_path).start()
    yield server
    server.stop()


@pytest.fixture
def desk(app, dovecot, sink):
    """A tenant with an agent and an e-mail channel reading Dovecot and sending through the sink."""
    from appliance.web.models.tenancy import Membership, User

    with app.app_context():
        provider = tenants.create_provider("Provider")
        tenant = tenants.create_child(provider, "Bank", "customer")
        agent = User.create(email="agent@bank.test", name="Agent", password_hash=hash_password("pw-agent-123456"))
        Membership.create(user=agent, tenant=tenant, role="agent")
        channel = Channel.create(tenant=tenant, kind="email", name="support mail")
        service.save_settings(channel, {"from_address": "support@bank.example", "from_name": "Bank Support",
                                        **dovecot.settings(), **sink.settings()})
        return {"tenant": tenant, "agent": agent, "channel": channel}


def customer_mail(body="My card is blocked.", *, subject="Card blocked", to="support@bank.example",
                  in_reply_to=None, references=None, message_id=None, attachment=None) -> tuple[bytes, str]:
    msg = EmailMessage()
    msg["From"] = f"Anna Customer <{CUSTOMER}>"
    msg["To"] = to
    msg["Subject"] = subject
    msg["Message-ID"] = message_id or make_msgid(domain="customer.example")
    if in_reply_to:
        msg["In-Reply-To"] = in_reply_to
    if references:
        msg["References"] = references
    msg.set_content(body)
    if attachment:
        msg.add_attachment(attachment[1], maintype="application", subtype="octet-stream", filename=attachment[0])
    return msg.as_bytes(), msg["Message-ID"]


def conversations_of(channel):
    return list(Conversation.select().where(Conversation.channel == channel.id).order_by(Conversation.id))


def bodies(conv):
    return [(m.direction, m.body) for m in Message.select().where(Message.conversation == conv.id).order_by(Message.id)]


def test_mail_in_reply_out_threaded_and_the_customers_answer_joins_the_conversation(app, desk, dovecot, sink):
    raw, first_id = customer_mail()
    dovecot.deliver(raw)
    with app.app_context():
        assert service.run()["ingested"] == 1
        [conv] = conversations_of(desk["channel"])
        assert conv.subject == "Card blocked"
        assert conv.contact.email == CUSTOMER
        assert bodies(conv) == [("in", "My card is blocked.")]

        conversations.add_message(conv, "out", "We have unblocked it.", author=desk["agent"].id)
        assert outbox.drain()["sent"] == 1
        [out] = sink.received
        assert out.tls and out.login == SMTP_USER, "the relay got the mail over TLS after AUTH"
        assert out.rcpt_tos == [CUSTOMER]
        reply = out.message
        assert reply["In-Reply-To"] == first_id
        assert reply["References"] == first_id
        assert reply["Subject"] == "Re: Card blocked"
        assert reply["From"].addresses[0].addr_spec == "support@bank.example"
        token = service.reply_token(conv)
        assert reply["Reply-To"].addresses[0].addr_spec == f"support+{token}@bank.example"
        assert reply.get_body(("plain",)).get_content().strip() == "We have unblocked it."
        assert outbox.drain()["sent"] == 0, "sent once"

        # The customer answers our reply, quoting it: same conversation, quote trimmed.
        answer, _ = customer_mail(
            "Thank you!\n\nOn Thu, 3 Dec 2026, Bank Support <support@bank.example> wrote:\n> We have unblocked it.",
            subject="Re: Card blocked", in_reply_to=reply["Message-ID"],
            references=f"{first_id} {reply['Message-ID']}")
        dovecot.deliver(answer)
        # A client that drops the threading headers still reaches it through the reply address.
        tokened, _ = customer_mail("One more thing.", subject="something else", to=f"support+{token}@bank.example")
        dovecot.deliver(tokened)
        assert service.run()["ingested"] == 2
        assert [c.id for c in conversations_of(desk["channel"])] == [conv.id]
        assert bodies(conv) == [("in", "My card is blocked."), ("out", "We have unblocked it."),
                                ("in", "Thank you!"), ("in", "One more thing.")]

        # A second reply carries the whole thread in References.
        conversations.add_message(conv, "out", "Anything else?", author=desk["agent"].id)
        assert outbox.drain()["sent"] == 1
        second = sink.received[-1].message
        assert second["In-Reply-To"] != reply["Message-ID"]  # answers the customer's latest mail
        assert first_id in second["References"] and reply["Message-ID"] in second["References"]


def test_same_subject_alone_does_not_thread(app, desk, dovecot):
    dovecot.deliver(customer_mail(subject="Question")[0])
    with app.app_context():
        service.run()
        conv = conversations_of(desk["channel"])[0]
        conversations.set_status(conv, "resolved")
    dovecot.deliver(customer_mail("A new question.", subject="Question")[0])
    with app.app_context():
        service.run()
        assert len(conversations_of(desk["channel"])) == 2


def test_a_malformed_mail_is_quarantined_and_the_next_one_still_ingested(app, desk, dovecot):
    dovecot.deliver(b"Subject: broken\r\nContent-Type: text/plain\r\n\r\nno sender here\r\n")
    dovecot.deliver(customer_mail("After the broken one.")[0])
    with app.app_context():
        totals = service.run()
        assert (totals["quarantined"], totals["ingested"]) == (1, 1)
        [q] = EmailQuarantine.select()
        assert q.imap_uid == 1 and "no sender address" in q.reason
        assert b"no sender here" in q.raw, "kept whole for the admin"
        [conv] = conversations_of(desk["channel"])
        assert bodies(conv) == [("in", "After the broken one.")]
        assert service.run() == {"ingested": 0, "duplicates": 0, "quarantined": 0, "errors": 0}
        assert EmailQuarantine.select().count() == 1


def test_a_worker_restart_does_not_reingest_and_a_new_uidvalidity_rereads_without_duplicates(
        instance, desk, dovecot, app):
    dovecot.deliver(customer_mail("first")[0])
    dovecot.deliver(customer_mail("second")[0])
    with app.app_context():
        assert run_round(app) == []
        stored = Message.select().where(Message.direction == "in").count()
        assert stored == 2
    app.extensions["database"].close()
    # A new process: a fresh app on the same instance, as after "systemctl restart".
    with running_app(instance) as again, again.app_context():
        assert run_round(again) == []
        assert Message.select().where(Message.direction == "in").count() == stored
        state = EmailMailboxState.get()
        assert state.last_uid == 2 and state.uidvalidity
        dovecot.deliver(customer_mail("third")[0])
        assert run_round(again) == []
        assert Message.select().where(Message.direction == "in").count() == stored + 1
        # The server renumbered the mailbox: read again from the start, store nothing twice.
        EmailMailboxState.update(uidvalidity=state.uidvalidity + 1).execute()
        totals = service.run()
        assert (totals["ingested"], totals["duplicates"]) == (0, 3)
        assert EmailMailboxState.get().last_uid == 3


def test_mime_attachments_are_stored_with_the_message(app, desk, dovecot):
    dovecot.deliver(customer_mail("Statement attached.", attachment=("statement.pdf", b"%PDF-1.4 bytes"))[0])
    with app.app_context():
        service.run()
        [conv] = conversations_of(desk["channel"])
        [att] = Attachment.select().join(Message).where(Message.conversation == conv.id)
        assert (att.filename, att.size, att.data) == ("statement.pdf", 14, b"%PDF-1.4 bytes")


def test_a_temporary_smtp_failure_is_retried_later_and_sent_once(app, desk, dovecot, sink, clock):
    dovecot.deliver(customer_mail()[0])
    with app.app_context():
        service.run()
        [conv] = conversations_of(desk["channel"])
        conversations.add_message(conv, "out", "Reply", author=desk["agent"].id)
        sink.fail_next = [451]
        assert outbox.drain()["retry"] == 1
        row = OutboxMessage.get()
        assert row.state == "pending" and row.attempts == 1 and "451" in row.last_error
        assert outbox.drain()["sent"] == 0, "not before its backoff"
        clock.advance(minutes=5)
        assert outbox.drain()["sent"] == 1
        assert [r.message.get_body(("plain",)).get_content().strip() for r in sink.received] == ["Reply"]
        row = OutboxMessage.get()
        assert row.state == "sent" and row.external_id == sink.received[0].message["Message-ID"]


def test_a_refused_recipient_fails_with_its_reason_and_retry_sends_it(app, desk, dovecot, sink):
    dovecot.deliver(customer_mail()[0])
    with app.app_context():
        service.run()
        [conv] = conversations_of(desk["channel"])
        reply = conversations.add_message(conv, "out", "Reply", author=desk["agent"].id)
        sink.fail_next = [554]
        assert outbox.drain()["failed"] == 1
        row = OutboxMessage.get()
        assert row.state == "failed" and "554" in row.last_error
        outbox.retry(reply)
        assert outbox.drain()["sent"] == 1
        assert len(sink.received) == 1


def test_smtp_credentials_are_only_ever_sent_over_tls(app, desk, sink, tmp_path):
    with app.app_context():
        settings = service.smtp_settings(service.load_settings(desk["channel"]))
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = "support@bank.example", CUSTOMER, "t"
    msg.set_content("t")
    smtp.send(settings, msg)
    assert sink.auth_attempts == [(SMTP_USER, True)]
    # "none" with a username is refused before connecting anywhere with the password.
    from dataclasses import replace

    with pytest.raises(smtp.SmtpPermanentError, match="starttls or ssl"):
        smtp.send(replace(settings, security="none"), msg)
    # A server that offers no STARTTLS never sees the password.
    from aiosmtpd.controller import Controller

    from tests.mail_support import free_port

    class Accept:
        async def handle_DATA(self, server, session, envelope):
            return "250 OK"

    port = free_port()
    plain = Controller(Accept(), hostname="127.0.0.1", port=port, auth_require_tls=False)
    plain.start()
    try:
        with pytest.raises(smtp.SmtpPermanentError, match="does not offer STARTTLS"):
            smtp.send(replace(settings, port=port), msg)
    finally:
        plain.stop()
    with pytest.raises(smtp.SmtpPermanentError, match="login refused"):
        smtp.send(replace(settings, password="wrong"), msg)
    assert sink.auth_attempts[-1] == (SMTP_USER, True)


def test_imap_errors_name_the_setting_and_are_recorded_on_the_mailbox(app, desk, dovecot):
    with app.app_context():
        settings = service.load_settings(desk["channel"])
        settings["imap_password"] = "wrong"
        with pytest.raises(service.imap.ImapError, match="check the username and password"):
            service.poll_channel(desk["channel"], settings)
        assert "refused" in EmailMailboxState.get().last_error


def test_admins_set_settings_write_only_test_the_connection_and_see_the_quarantine(app, client, world, dovecot,
                                                                                   sink):
    from tests.helpers import login

    tenant = world.tenants["A"]
    with app.app_context():
        channel = Channel.create(tenant=tenant, kind="email", name="mail A")
    url = f"/api/v1/channels/{channel.id}/settings"
    body = {k: str(v) for k, v in {"from_address": "support@a.example", **dovecot.settings(),
                                   **sink.settings()}.items()}
    admin = world.headers("A", "admin")
    assert client.patch(url, json=body, headers=world.headers("A", "supervisor")).status_code == 403
    resp = client.patch(url, json=body, headers=admin)
    assert resp.status_code == 200, resp.get_json()
    assert resp.get_json()["settings"]["imap_password"] == {"set": True}
    assert resp.get_json()["missing"] == []
    assert dovecot.settings()["imap_password"] not in resp.get_data(as_text=True)
    # Leaving a password empty keeps the stored one.
    assert client.patch(url, json={**body, "imap_password": "", "smtp_password": ""},
                        headers=admin).status_code == 200
    status = client.get(f"/api/v1/channels/{channel.id}/email", headers=admin)
    assert status.status_code == 200 and "secret-pw" not in status.get_data(as_text=True)
    assert status.get_json()["configured"] is True
    with app.app_context():
        assert service.load_settings(channel)["imap_password"] == dovecot.settings()["imap_password"]
        raw = app.extensions["database"].execute_sql("SELECT settings FROM channel_config").fetchone()[0]
        assert b"secret-pw" not in bytes(raw), "encrypted at rest"
    assert client.get(f"/api/v1/channels/{world.objects['A']['channel'].id}/email",
                      headers=admin).status_code == 409, "a web chat channel has no mailbox"

    test = client.post(f"/api/v1/channels/{channel.id}/test", json={}, headers=admin).get_json()
    assert test["ok"] and "IMAP: logged in" in test["message"] and "SMTP: connected" in test["message"], test
    assert sink.auth_attempts[-1][1] is True

    dovecot.deliver(b"Subject: broken\r\n\r\nno sender\r\n")
    with app.app_context():
        assert service.run()["quarantined"] == 1
    listing = client.get(f"/api/v1/tenants/{tenant.id}/email/quarantine", headers=admin)
    [item] = listing.get_json()["items"]
    assert item["channel_id"] == channel.id and "no sender address" in item["reason"]
    assert client.get(f"/api/v1/tenants/{tenant.id}/email/quarantine",
                      headers=world.headers("B", "admin")).status_code == 404
    assert client.get(f"/api/v1/tenants/{tenant.id}/email/quarantine",
                      headers=world.headers("A", "agent")).status_code == 403
    assert client.get(f"/api/v1/channels/{channel.id}/email", headers=admin).get_json()["quarantined"] == 1

    # A wrong value typed through the generic settings form is reported, not a crash of the worker.
    assert client.patch(url, json={"imap_port": "imap"}, headers=admin).status_code == 200
    with app.app_context():
        assert service.run()["errors"] == 1
    assert "imap_port must be a port number" in client.get(
        f"/api/v1/channels/{channel.id}/email", headers=admin).get_json()["status"]["last_error"]
    tested = client.post(f"/api/v1/channels/{channel.id}/test", json={}, headers=admin)
    assert "imap_port" in tested.get_json()["message"]

    login(client, world.email("A", "admin"))
    assert f"/t/{tenant.id}/admin/email/quarantine" in client.get(f"/t/{tenant.id}/admin/users").get_data(
        as_text=True), "linked from the admin menu"
    page = client.get(f"/t/{tenant.id}/admin/email/quarantine")
    assert page.status_code == 200
    assert "no sender address" in page.get_data(as_text=True) and "mail A" in page.get_data(as_text=True)


def test_on_postgresql_a_second_host_skips_the_round_while_one_holds_the_mail_lock(app, desk, dovecot, db_url):
    if not db_url.startswith("postgresql"):
        pytest.skip("SQLite is one host by construction: there is no second host to keep out")
    import psycopg2

    dovecot.deliver(customer_mail()[0])
    other = psycopg2.connect(db_url)  # another app host's worker, mid-round
    try:
        with other.cursor() as cur:
            cur.execute("SELECT pg_try_advisory_lock(%s)", (service.LOCK_EMAIL,))
            assert cur.fetchone()[0]
        with app.app_context():
            assert service.run()["ingested"] == 0
            assert Message.select().where(Message.direction == "in").count() == 0
        with other.cursor() as cur:
            cur.execute("SELECT pg_advisory_unlock(%s)", (service.LOCK_EMAIL,))
        with app.app_context():
            assert service.run()["ingested"] == 1
    finally:
        other.close()


def test_an_unreachable_relay_leaves_the_replies_pending_and_they_go_out_once_it_is_back(
        app, desk, dovecot, sink, clock):
    for i in range(3):
        dovecot.deliver(customer_mail(f"question {i}", to=f"support+x{i}@bank.example")[0])
    with app.app_context():
        service.run()
        [conv] = conversations_of(desk["channel"])
        for i in range(3):
            conversations.add_message(conv, "out", f"answer {i}", author=desk["agent"].id)
        sink.stop()
        assert outbox.drain()["retry"] == 1  # the later replies of the conversation wait behind the first
        rows = list(OutboxMessage.select().order_by(OutboxMessage.id))
        assert [r.state for r in rows] == ["pending"] * 3 and [r.attempts for r in rows] == [1, 0, 0]
        assert "unreachable" in rows[0].last_error
        sink.start()
        clock.advance(minutes=5)
        assert outbox.drain()["sent"] == 3
        assert [r.message.get_body(("plain",)).get_content().strip() for r in sink.received] == [
            "answer 0", "answer 1", "answer 2"]


def test_attachments_round_trip_a_customers_file_in_and_an_agents_file_out(app, desk, dovecot, sink):
    dovecot.deliver(customer_mail("Here is the form.", attachment=("form.bin", b"\x00\x01customer-bytes"))[0])
    with app.app_context():
        service.run()
        [conv] = conversations_of(desk["channel"])
        with app.extensions["database"].atomic():
            reply = conversations.add_message(conv, "out", "Signed copy attached.", author=desk["agent"].id)
            Attachment.create(message=reply.id, tenant=conv.tenant_id, filename="signed.pdf",
                              content_type="application/pdf", size=9, data=b"%PDF-sign")
        assert outbox.drain()["sent"] == 1
    [out] = sink.received
    [part] = list(out.message.iter_attachments())
    assert (part.get_filename(), part.get_content_type(), part.get_content()) == (
        "signed.pdf", "application/pdf", b"%PDF-sign")
