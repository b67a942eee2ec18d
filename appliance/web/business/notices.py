"""Notices by e-mail: each in-app notice also mailed to its tenant's admins, once.

A worker claims a notice for a lease before sending, so two hosts never both send it,
and marks it after. A relay that is down is retried with backoff; a refusal retrying
cannot cure (login, recipient) is recorded on the notice ("failed", with the reason),
which the billing page shows. Without a relay (``notify_mail.host`` empty) nothing is
mailed and notices stay in the app.
"""

from __future__ import annotations

import datetime as dt
import logging

from appliance.web.business.models import Notification
from appliance.web.channels.email import smtp
from appliance.web.models.base import utcnow
from appliance.web.services.mailer import admin_addresses, compose, relay

log = logging.getLogger("appliance.web.business.notices")

LEASE = dt.timedelta(minutes=5)  # a claim a crashed worker leaves expires after this
BACKLOG = dt.timedelta(days=7)  # older pending notices are not mailed when a relay appears
BATCH = 50


def _backoff(attempts: int) -> dt.timedelta:
    return dt.timedelta(seconds=min(6 * 3600, 60 * 2 ** max(0, attempts - 1)))


def mail_notices(settings: dict, subject: str = "Contract renewal") -> int:
    """Mail the pending notices; returns how many went out."""
    conf = relay(settings)
    if conf is None:
        return 0
    sender = settings["notify_mail"]["from"]
    max_attempts = int(settings["notify_mail"].get("max_attempts") or 8)
    now = utcnow()
    Notification.update(mail_status="skipped", mail_error="older than a week when the relay could take it").where(
        Notification.mail_status == "pending", Notification.created_at < now - BACKLOG).execute()
    due = list(Notification.select().where(
        Notification.mail_status == "pending",
        Notification.mail_next_at.is_null() | (Notification.mail_next_at <= now))
        .order_by(Notification.id).limit(BATCH))
    sent = 0
    with smtp.Session(conf) as session:
        for notice in due:
            if not _claim(notice, now):
                continue  # another worker has it
            recipients = admin_addresses(notice.tenant_id)
            if not recipients:
                _settle(notice, "failed", "the tenant has no active admin to mail")
                continue
            try:
                session.send(compose(sender, recipients, subject, notice.text))
            except smtp.SmtpPermanentError as exc:
                log.warning("notice %s not mailed: %s", notice.id, exc)
                _settle(notice, "failed", str(exc))
            except smtp.SmtpTemporaryError as exc:
                log.warning("notice %s: relay unavailable, retrying later: %s", notice.id, exc)
                _retry(notice, str(exc), now, max_attempts)
                if isinstance(exc, smtp.SmtpUnreachable):
                    break  # the others would fail alike; next round
            else:
                _settle(notice, "sent", None)
                sent += 1
    return sent


def _claim(notice, now) -> bool:
    free = Notification.mail_next_at.is_null() | (Notification.mail_next_at <= now)
    return bool(Notification.update(mail_next_at=now + LEASE).where(
        Notification.id == notice.id, Notification.mail_status == "pending", free).execute())


def _settle(notice, status: str, error: str | None) -> None:
    Notification.update(mail_status=status, mailed_at=utcnow() if status == "sent" else None,
                        mail_error=error[:200] if error else None, mail_next_at=None,
                        mail_attempts=Notification.mail_attempts + 1).where(Notification.id == notice.id).execute()


def _retry(notice, error: str, now, max_attempts: int) -> None:
    attempts = notice.mail_attempts + 1
    if attempts >= max_attempts:
        _settle(notice, "failed", f"gave up after {attempts} attempts: {error}")
        return
    Notification.update(mail_error=error[:200], mail_attempts=attempts,
                        mail_next_at=now + _backoff(attempts)).where(Notification.id == notice.id).execute()
