"""Renewal notices by e-mail, through a real SMTP relay on loopback (aiosmtpd with
STARTTLS and AUTH): mailed once to the tenant's admins, retried while the relay is down,
failed with the reason when retrying cannot help, and never a backlog of old notices."""

from __future__ import annotations

import datetime as dt
import os

import pytest

from appliance.web.business import contracts
from appliance.web.business.models import Notification
from appliance.web.business.notices import mail_notices
from appliance.web.business.reminders import renewal_reminders_job
from appliance.web.models.tenancy import Membership, User
from tests import test_business_contracts as contracts_tests
from tests.mail_support import SMTP_PASSWORD, SMTP_USER, SmtpSink

signer, app, ctx = contracts_tests.signer, contracts_tests.app, contracts_tests.ctx  # a licensed world


@pytest.fixture
def relay(tmp_path):
    sink = SmtpSink(tmp_path).start()
    yield sink
    sink.stop()


def use_relay(app, sink, tmp_path, password=SMTP_PASSWORD):
    secret = tmp_path / "relay.password"
    secret.write_text(password + "\n")
    os.chmod(secret, 0o600)
    app.extensions["appliance_instance"].settings["notify_mail"].update(
        host="127.0.0.1", port=sink.port, security="starttls", username=SMTP_USER,
        password_file=str(secret), ca_file=str(sink.cert), **{"from": "contact-center@bank.example"})


def admins(tenant):
    return sorted(u.email for u in User.select().join(Membership).where(
        Membership.tenant == tenant.id, Membership.role == "admin"))


def ending_contract(ctx, clock, days_left=30):
    today = clock().date()
    start = dt.date(2030, 1, 1)  # the catalogue price of the ctx fixture holds from then
    contract = contracts.create(ctx.tenants["A"], [("webchat", 2)], starts_on=start,
                                ends_on=today + dt.timedelta(days=days_left), renewal="manual")
    contracts.set_status(contract, "active", on=start)
    return contract


def test_no_relay_keeps_notices_in_the_app_and_pending(app, ctx, clock):
    ending_contract(ctx, clock)
    renewal_reminders_job(app)
    assert {n.mail_status for n in Notification.select()} == {"pending"}


def test_each_notice_is_mailed_once_to_its_tenants_admins(app, ctx, clock, relay, tmp_path):
    ending_contract(ctx, clock)
    use_relay(app, relay, tmp_path)
    renewal_reminders_job(app)
    renewal_reminders_job(app)  # a second round (or host) sends nothing again

    by_recipients = {tuple(sorted(m.rcpt_tos)): m for m in relay.received}
    assert set(by_recipients) == {tuple(admins(ctx.tenants["A"])), tuple(admins(ctx.tenants["P"]))}
    mail = by_recipients[tuple(admins(ctx.tenants["A"]))]
    assert mail.tls and mail.login == SMTP_USER
    assert mail.message["Subject"] == "Contract renewal"
    assert mail.message["Auto-Submitted"] == "auto-generated"
    assert "The contract of Tenant A ends on" in mail.message.get_content()
    assert {n.mail_status for n in Notification.select()} == {"sent"}


def test_a_relay_that_is_down_is_retried_later_and_then_delivers(app, ctx, clock, relay, tmp_path):
    ending_contract(ctx, clock)
    use_relay(app, relay, tmp_path)
    relay.stop()
    renewal_reminders_job(app)
    first, second = Notification.select().order_by(Notification.id)
    assert {first.mail_status, second.mail_status} == {"pending"}
    assert first.mail_attempts == 1 and first.mail_next_at > clock.naive()
    # An unreachable relay ends the round: the other notice is not charged an attempt.
    assert second.mail_attempts == 0 and second.mail_next_at is None

    relay.start()
    clock.advance(minutes=2)
    assert mail_notices(app.extensions["appliance_instance"].settings) == 2
    assert len(relay.received) == 2


def test_a_refused_login_fails_the_notice_with_the_reason(app, ctx, clock, relay, tmp_path):
    ending_contract(ctx, clock)
    use_relay(app, relay, tmp_path, password="not-the-password")
    renewal_reminders_job(app)
    failed = list(Notification.select())
    assert {n.mail_status for n in failed} == {"failed"}
    assert all("login refused" in n.mail_error for n in failed)
    assert relay.received == []


def test_notices_older_than_a_week_are_not_mailed_when_a_relay_appears(app, ctx, clock, relay, tmp_path):
    ending_contract(ctx, clock, days_left=90)
    renewal_reminders_job(app)  # no relay yet
    clock.advance(days=8)
    use_relay(app, relay, tmp_path)
    assert mail_notices(app.extensions["appliance_instance"].settings) == 0
    assert {n.mail_status for n in Notification.select()} == {"skipped"}
    assert relay.received == []


def test_an_unreadable_password_file_names_the_key(app, ctx, clock, relay, tmp_path):
    from appliance.web.services.mailer import MailerConfigError

    use_relay(app, relay, tmp_path)
    app.extensions["appliance_instance"].settings["notify_mail"]["password_file"] = str(tmp_path / "missing")
    with pytest.raises(MailerConfigError, match=r"notify_mail\.password_file"):
        mail_notices(app.extensions["appliance_instance"].settings)
