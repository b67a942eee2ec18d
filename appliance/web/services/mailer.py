"""The installation's own outgoing mail: the appliance writing to the people who run it.

Channel mail (a customer's conversation) goes through each e-mail channel's own server
and the channel outbox; this is mail from the appliance itself (renewal reminders to a
tenant's admins) through the site's relay, ``notify_mail`` in config.yml.
"""

from __future__ import annotations

import datetime as dt
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from pathlib import Path

from appliance.web.channels.email import smtp
from appliance.web.models.base import utcnow
from appliance.web.models.tenancy import Membership, User


class MailerConfigError(ValueError):
    """``notify_mail`` in config.yml cannot be used; the message names the key."""


def relay(settings: dict) -> smtp.SmtpSettings | None:
    """The relay from ``notify_mail``, or None while it is off (no ``host``)."""
    conf = settings.get("notify_mail") or {}
    if not conf.get("host"):
        return None
    if not conf.get("from"):
        raise MailerConfigError("config.yml: notify_mail.from is empty: set the sender address "
                                "(e.g. contact-center@bank.example) or clear notify_mail.host")
    if conf.get("security") not in ("starttls", "ssl", "none"):
        raise MailerConfigError("config.yml: notify_mail.security must be starttls, ssl or none")
    password = ""
    if conf.get("password_file"):
        path = Path(conf["password_file"])
        try:
            password = path.read_text().strip()
        except OSError as exc:
            raise MailerConfigError(f"config.yml: notify_mail.password_file {path} cannot be read "
                                    f"({exc.strerror}): create it (mode 0600) or clear the key") from exc
    return smtp.SmtpSettings(host=conf["host"], port=int(conf.get("port") or 587),
                             username=conf.get("username") or "", password=password,
                             security=conf["security"], ca_file=conf.get("ca_file") or "",
                             timeout=float(conf.get("timeout") or 30.0))


def admin_addresses(tenant_id: int) -> list[str]:
    """Active admins of the tenant, who receive its notices."""
    query = (User.select(User.email).join(Membership)
             .where(Membership.tenant == tenant_id, Membership.role == "admin", User.is_active == True)
             .order_by(User.email))
    return [user.email for user in query]


FOOTER = "Sent by the contact center appliance. The notice is also on the billing page."


def compose(sender: str, recipients: list[str], subject: str, text: str, footer: str = FOOTER) -> EmailMessage:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = ", ".join(recipients)
    message["Subject"] = subject
    message["Date"] = formatdate(utcnow().replace(tzinfo=dt.UTC).timestamp())
    message["Message-ID"] = make_msgid(domain=sender.rpartition("@")[2] or None)
    message["Auto-Submitted"] = "auto-generated"  # RFC 3834: no vacation replies to a robot
    message.set_content(f"{text}\n\n-- \n{footer}\n")
    return message
