"""The e-mail channel's work: polling a mailbox into conversations, quarantining what
cannot be read, and sending agents' replies with the headers that thread them.

Threading, in this order, never by subject: a Message-ID the mail answers
(``In-Reply-To``, then ``References``) that this channel has seen or sent; then a reply
token in a recipient address (``support+<token>@domain``); else a new conversation.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import secrets
from contextlib import contextmanager
from dataclasses import dataclass

from peewee import JOIN, IntegrityError

from appliance.core import clock
from appliance.web.channels.email import compose, imap, smtp
from appliance.web.channels.email.parse import MailParseError, ParsedMail, parse_mail
from appliance.web.crypto import blind_index
from appliance.web.db import database_proxy, is_postgres, write_transaction
from appliance.web.models.base import utcnow
from appliance.web.models.contact_center import Attachment, Channel, Contact, Conversation, Message
from appliance.web.models.email import (
    EmailChannelConfig,
    EmailConversation,
    EmailMailboxState,
    EmailOutbound,
    EmailQuarantine,
    EmailThreadRef,
)
from appliance.web.services import Conflict, ServiceError
from appliance.web.services.conversations import (
    MAX_BODY,
    add_message,
    find_or_create_contact,
    set_status,
    start_conversation,
)

log = logging.getLogger("appliance.web.channels.email")

LOCK_EMAIL = 0x656D6C31  # "eml1": one host polls and sends at a time
SECURITY = ("ssl", "starttls", "none")
SETTINGS_FIELDS = (
    # (name, label, secret, required)
    ("from_address", "Address customers write to (e.g. support@example.org)", False, True),
    ("from_name", "Sender name on replies", False, False),
    ("imap_host", "IMAP server", False, True),
    ("imap_port", "IMAP port", False, True),
    ("imap_security", "IMAP security (ssl, starttls, none)", False, True),
    ("imap_username", "IMAP username", False, True),
    ("imap_password", "IMAP password", True, True),
    ("imap_mailbox", "IMAP mailbox", False, False),
    ("imap_ca_file", "CA file for the IMAP server (empty: the system's CAs)", False, False),
    ("smtp_host", "SMTP submission server", False, True),
    ("smtp_port", "SMTP port", False, True),
    ("smtp_security", "SMTP security (starttls, ssl, none)", False, True),
    ("smtp_username", "SMTP username", False, False),
    ("smtp_password", "SMTP password", True, False),
    ("smtp_ca_file", "CA file for the SMTP server (empty: the system's CAs)", False, False),
)
SECRET_FIELDS = frozenset(name for name, _, secret, _ in SETTINGS_FIELDS if secret)


@dataclass
class PollResult:
    ingested: int = 0
    duplicates: int = 0
    quarantined: int = 0


def _limits(app_config: dict | None) -> dict:
    from appliance.core.config import DEFAULTS

    return {**DEFAULTS["email"], **(app_config or {})}


# -- settings ---------------------------------------------------------------------------

def validate_settings(values: dict) -> dict:
    """The settings as stored: known fields only, ports as integers, security checked."""
    if not isinstance(values, dict):
        raise ServiceError("e-mail settings must be an object.", 422)
    known = {name for name, *_ in SETTINGS_FIELDS}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ServiceError(f"unknown e-mail setting: {unknown[0]}.", 422)
    clean = {}
    for name, _label, _secret, required in SETTINGS_FIELDS:
        value = values.get(name, "")
        if name.endswith("_port"):
            try:
                value = int(value)
            except (TypeError, ValueError):
                raise ServiceError(f"{name} must be a port number (1-65535).", 422) from None
            if not 0 < value < 65536:
                raise ServiceError(f"{name} must be a port number (1-65535).", 422)
        elif not isinstance(value, str):
            raise ServiceError(f"{name} must be text.", 422)
        else:
            value = value.strip()
        if required and value in ("", None):
            raise ServiceError(f"{name} is required for an e-mail channel.", 422)
        clean[name] = value
    for name in ("imap_security", "smtp_security"):
        if clean[name] not in SECURITY:
            raise ServiceError(f"{name} must be one of: {', '.join(SECURITY)}.", 422)
    if clean["from_address"].count("@") != 1:
        raise ServiceError("from_address must be an e-mail address (local@domain).", 422)
    clean["imap_mailbox"] = clean["imap_mailbox"] or "INBOX"
    return clean


def save_settings(channel: Channel, values: dict) -> None:
    require_email(channel)
    old = load_settings(channel) or {}
    # Secrets are write-only: a form or API call that leaves one empty keeps the stored one.
    merged = {**values}
    for name in SECRET_FIELDS:
        if not merged.get(name) and old.get(name):
            merged[name] = old[name]
    clean = validate_settings(merged)
    with write_transaction():
        row = EmailChannelConfig.get_or_none(EmailChannelConfig.channel == channel.id)
        if row is None:
            row = EmailChannelConfig(channel=channel.id, tenant=channel.tenant_id)
        row.settings = json.dumps(clean)
        row.updated_at = utcnow()
        row.save()


def load_settings(channel: Channel) -> dict | None:
    row = EmailChannelConfig.get_or_none(EmailChannelConfig.channel == channel.id)
    return json.loads(row.settings) if row is not None else None


def public_settings(settings: dict | None) -> dict:
    """What the UI and the API may show: every secret as set or not, never its value."""
    if settings is None:
        return {}
    return {k: (bool(v) if k in SECRET_FIELDS else v) for k, v in settings.items()}


def require_email(channel: Channel) -> None:
    if channel.kind != "email":
        raise Conflict(f"channel {channel.id} is a {channel.kind} channel; e-mail settings belong to e-mail channels.")


def describe(channel: Channel) -> dict:
    """Settings and mailbox state as the UI and the API show them."""
    require_email(channel)
    state = EmailMailboxState.select().where(EmailMailboxState.channel == channel.id).first()
    failed = EmailOutbound.select().where(EmailOutbound.channel == channel.id, EmailOutbound.state == "failed")
    return {
        "channel_id": channel.id,
        "configured": load_settings(channel) is not None,
        "settings": public_settings(load_settings(channel)),
        "mailbox": None if state is None else {
            "name": state.mailbox, "uidvalidity": state.uidvalidity, "last_uid": state.last_uid,
            "last_poll_at": _iso(state.last_poll_at), "last_inbound_at": _iso(state.last_inbound_at),
            "last_error": state.last_error},
        "failed_replies": failed.count(),
        "quarantined": EmailQuarantine.select().where(EmailQuarantine.channel == channel.id).count(),
    }


def _iso(value):
    return value.isoformat() + "Z" if value else None


def test_connection(channel: Channel) -> dict:
    """Log in to both servers: what an admin checks right after typing the settings."""
    require_email(channel)
    settings = load_settings(channel)
    if settings is None:
        raise ServiceError("this e-mail channel has no settings yet: set them first.", 409)
    result = {}
    try:
        uidvalidity, _ = imap.fetch_new(imap_settings(settings, 10.0), None, 0, batch=0)
        result["imap"] = {"ok": True, "detail": f"logged in, mailbox UIDVALIDITY {uidvalidity}"}
    except imap.ImapError as exc:
        result["imap"] = {"ok": False, "detail": str(exc)}
    try:
        smtp.check(smtp_settings(settings, 10.0))
        result["smtp"] = {"ok": True, "detail": "connected" + (" and logged in" if settings.get("smtp_username")
                                                              else "")}
    except (smtp.SmtpPermanentError, smtp.SmtpTemporaryError) as exc:
        result["smtp"] = {"ok": False, "detail": str(exc)}
    return result


def quarantined(tenant, limit: int = 200):
    return list(EmailQuarantine.select().where(EmailQuarantine.tenant == tenant.id)
                .order_by(EmailQuarantine.received_at.desc(), EmailQuarantine.id.desc()).limit(limit))


def imap_settings(settings: dict, timeout: float = 30.0) -> imap.ImapSettings:
    return imap.ImapSettings(host=settings["imap_host"], port=int(settings["imap_port"]),
                             username=settings["imap_username"], password=settings["imap_password"],
                             mailbox=settings.get("imap_mailbox") or "INBOX",
                             security=settings.get("imap_security", "ssl"),
                             ca_file=settings.get("imap_ca_file", ""), timeout=timeout)


def smtp_settings(settings: dict, timeout: float = 30.0) -> smtp.SmtpSettings:
    return smtp.SmtpSettings(host=settings["smtp_host"], port=int(settings["smtp_port"]),
                             username=settings.get("smtp_username", ""),
                             password=settings.get("smtp_password", ""),
                             security=settings.get("smtp_security", "starttls"),
                             ca_file=settings.get("smtp_ca_file", ""), timeout=timeout)


# -- inbound ----------------------------------------------------------------------------

def message_id_key(tenant_id: int, message_id: str) -> str:
    """Keyed hash of a Message-ID: the lookup key that stores no readable id."""
    return blind_index.compute(tenant_id, "text", message_id).hex()


def poll_channel(channel: Channel, settings: dict, limits: dict | None = None) -> PollResult:
    """Fetch what is new in the channel's mailbox; each mail is handled in its own
    transaction together with the mailbox position, so a crash re-reads at most one mail
    and a restart never re-ingests."""
    limits = _limits(limits)
    mailbox = settings.get("imap_mailbox") or "INBOX"
    state, _ = EmailMailboxState.get_or_create(channel=channel.id, mailbox=mailbox)
    result = PollResult()
    try:
        uidvalidity, mails = imap.fetch_new(imap_settings(settings, limits["network_timeout"]),
                                            state.uidvalidity, state.last_uid, limits["poll_batch"])
    except imap.ImapError as exc:
        _record_error(state, str(exc))
        raise
    if uidvalidity != state.uidvalidity:
        if state.uidvalidity is not None:
            log.warning("channel %s mailbox UIDVALIDITY changed: reading it again from the start", channel.id)
        state.uidvalidity, state.last_uid = uidvalidity, 0
        state.save(only=[EmailMailboxState.uidvalidity, EmailMailboxState.last_uid])
    for mail in mails:
        with write_transaction():
            outcome = _handle(channel, mailbox, uidvalidity, mail, limits)
            EmailMailboxState.update(last_uid=mail.uid, last_inbound_at=utcnow()).where(
                EmailMailboxState.id == state.id).execute()
        setattr(result, outcome, getattr(result, outcome) + 1)
    EmailMailboxState.update(last_poll_at=utcnow(), last_error="").where(EmailMailboxState.id == state.id).execute()
    return result


def _record_error(state: EmailMailboxState, error: str) -> None:
    EmailMailboxState.update(last_poll_at=utcnow(), last_error=error[:1000]).where(
        EmailMailboxState.id == state.id).execute()


def _handle(channel, mailbox, uidvalidity, mail: imap.FetchedMail, limits) -> str:
    try:
        parsed = parse_mail(mail.raw)
    except MailParseError as exc:
        quarantine(channel, mailbox, uidvalidity, mail.uid, mail.raw, str(exc))
        return "quarantined"
    try:
        with write_transaction():
            stored = ingest_mail(channel, parsed, limits)
    except (ServiceError, ValueError, TypeError, KeyError) as exc:
        # The mail read fine but could not be stored as a message: quarantined like an
        # unreadable one, so it neither blocks the mailbox nor gets lost. Database
        # errors are not caught: the round fails and the next one retries this mail.
        quarantine(channel, mailbox, uidvalidity, mail.uid, mail.raw,
                   f"the mail could not be stored: {exc if isinstance(exc, ServiceError) else type(exc).__name__}")
        return "quarantined"
    return "ingested" if stored is not None else "duplicates"


def quarantine(channel, mailbox, uidvalidity, uid, raw: bytes, reason: str) -> None:
    log.warning("channel %s: mail UID %s quarantined: %s", channel.id, uid, reason)
    exists = EmailQuarantine.select().where(
        EmailQuarantine.channel == channel.id, EmailQuarantine.mailbox == mailbox,
        EmailQuarantine.uidvalidity == uidvalidity, EmailQuarantine.imap_uid == uid).exists()
    if not exists:
        EmailQuarantine.create(tenant=channel.tenant_id, channel=channel.id, mailbox=mailbox,
                               uidvalidity=uidvalidity, imap_uid=uid, reason=reason[:500], raw=raw, size=len(raw))


def find_conversation(channel: Channel, parsed: ParsedMail) -> Conversation | None:
    for ref in parsed.references:
        row = EmailThreadRef.get_or_none(EmailThreadRef.channel == channel.id,
                                         EmailThreadRef.message_id_hash == message_id_key(channel.tenant_id, ref))
        if row is not None:
            return Conversation.get_by_id(row.conversation_id)
    for token in parsed.tokens:
        row = (EmailConversation.select(EmailConversation, Conversation).join(Conversation)
               .where(EmailConversation.token == token, Conversation.channel == channel.id).first())
        if row is not None:
            return row.conversation
    return None


def ingest_mail(channel: Channel, parsed: ParsedMail, limits: dict | None = None) -> Message | None:
    """Store one parsed mail as a message (None when this channel already has it)."""
    limits = _limits(limits)
    key = message_id_key(channel.tenant_id, parsed.message_id)
    if EmailThreadRef.select().where(EmailThreadRef.channel == channel.id,
                                     EmailThreadRef.message_id_hash == key).exists():
        return None
    conv = find_conversation(channel, parsed)
    text = parsed.text
    files, skipped = [], []
    for f in parsed.files:
        (files if len(f.data) <= limits["max_attachment_bytes"] else skipped).append(f)
    if len(text) > MAX_BODY - 200:
        text = text[:MAX_BODY - 200] + "\n\n[the rest of this mail was cut: too long to show]"
    if skipped:
        text += "\n\n[" + ", ".join(f"{f.filename} not stored: larger than the attachment limit"
                                     for f in skipped) + "]"
    if conv is not None:
        message = add_message(conv, "in", text)
        if conv.status == "resolved":
            set_status(conv, "open")
    else:
        contact = find_or_create_contact(channel.tenant, name=parsed.sender_name, email=parsed.sender_email)
        conv = start_conversation(channel, channel.tenant, contact, text, subject=parsed.subject)
        message = Message.select().where(Message.conversation == conv.id).order_by(Message.id).first()
    reply_token(conv)
    EmailThreadRef.create(tenant=channel.tenant_id, channel=channel.id, conversation=conv.id, message=message.id,
                          message_id_hash=key, mail_id=parsed.message_id, direction="in")
    for f in files:
        Attachment.create(message=message.id, tenant=conv.tenant_id, filename=f.filename,
                          content_type=f.content_type[:100], size=len(f.data), data=f.data)
    return message


def reply_token(conv: Conversation) -> str:
    row = EmailConversation.get_or_none(EmailConversation.conversation == conv.id)
    if row is None:
        row = EmailConversation.create(conversation=conv.id, token=secrets.token_urlsafe(18))
    return row.token


# -- outbound ---------------------------------------------------------------------------

def queue_replies() -> int:
    """Every agent reply on an e-mail conversation gets one outbound row (the unique
    message key makes a second host's attempt a no-op)."""
    pending = (Message.select(Message.id, Conversation.channel)
               .join(EmailConversation, on=(EmailConversation.conversation == Message.conversation))
               .switch(Message).join(Conversation)
               .join(EmailOutbound, JOIN.LEFT_OUTER, on=(EmailOutbound.message == Message.id))
               .where(Message.direction == "out", EmailOutbound.id.is_null())
               .order_by(Message.id).limit(500))
    count = 0
    for msg in pending:
        try:
            with database_proxy.atomic():
                EmailOutbound.create(message=msg.id, channel=msg.conversation.channel_id, next_attempt_at=utcnow())
            count += 1
        except IntegrityError:
            pass
    return count


def send_due(channel: Channel, settings: dict, limits: dict | None = None) -> int:
    limits = _limits(limits)
    due = (EmailOutbound.select().where(EmailOutbound.channel == channel.id, EmailOutbound.state == "pending",
                                        EmailOutbound.next_attempt_at <= utcnow())
           .order_by(EmailOutbound.id).limit(100))
    sent = 0
    with smtp.Session(smtp_settings(settings, limits["network_timeout"])) as session:
        for row in due:
            outcome = _send_one(channel, settings, row, limits, session)
            if outcome is None:  # the relay is unreachable: the rest wait for the next round
                break
            sent += outcome
    return sent


def build_message(channel: Channel, settings: dict, msg: Message, row: EmailOutbound):
    conv = Conversation.get_by_id(msg.conversation_id)
    contact = Contact.get_by_id(conv.contact_id)
    if not contact.email:
        raise smtp.SmtpPermanentError("the contact has no e-mail address to reply to")
    domain = settings["from_address"].rpartition("@")[2]
    own = EmailThreadRef.get_or_none(EmailThreadRef.message == msg.id, EmailThreadRef.direction == "out")
    if own is None:
        # The Message-ID is chosen once and kept, so a retry after an unclear failure is
        # the same mail (clients show one) and the customer's answer still finds it.
        message_id = compose.new_message_id(domain)
        own = EmailThreadRef.create(tenant=conv.tenant_id, channel=channel.id, conversation=conv.id,
                                    message=msg.id, message_id_hash=message_id_key(conv.tenant_id, message_id),
                                    mail_id=message_id, direction="out")
    earlier = list(EmailThreadRef.select().where(EmailThreadRef.conversation == conv.id,
                                                 EmailThreadRef.id < own.id).order_by(EmailThreadRef.id))
    inbound = [r for r in earlier if r.direction == "in"]
    in_reply_to = (inbound or earlier or [None])[-1]
    files = [compose_file(a) for a in Attachment.select().where(Attachment.message == msg.id)]
    return compose.build_reply(
        from_address=settings["from_address"], from_name=settings.get("from_name") or None,
        token=reply_token(conv), to=contact.email, subject=conv.subject, text=msg.body,
        message_id=own.mail_id, in_reply_to=in_reply_to.mail_id if in_reply_to else None,
        references=[r.mail_id for r in earlier], when=clock.now(), files=files)


@dataclass
class _File:
    filename: str
    content_type: str
    data: bytes


def compose_file(att: Attachment) -> _File:
    return _File(att.filename, att.content_type, att.data)


def _send_one(channel, settings, row: EmailOutbound, limits, session: smtp.Session) -> int | None:
    msg = Message.get_or_none(Message.id == row.message_id)
    if msg is None:
        row.delete_instance()
        return 0
    row.attempts += 1
    try:
        with write_transaction():
            mail = build_message(channel, settings, msg, row)
        session.send(mail)
    except smtp.SmtpTemporaryError as exc:
        if row.attempts >= limits["max_send_attempts"]:
            _fail(row, f"gave up after {row.attempts} tries: {exc}")
        else:
            delay = min(limits["send_backoff_max"], limits["send_backoff_base"] * 2 ** (row.attempts - 1))
            row.next_attempt_at = utcnow() + dt.timedelta(seconds=delay)
            row.last_error = str(exc)[:1000]
            row.save()
        return None if isinstance(exc, smtp.SmtpUnreachable) else 0
    except smtp.SmtpPermanentError as exc:
        _fail(row, str(exc))
        return 0
    row.state, row.sent_at, row.last_error = "sent", utcnow(), ""
    row.message_id_hash = message_id_key(msg.tenant_id, mail["Message-ID"])
    row.save()
    return 1


def _fail(row: EmailOutbound, reason: str) -> None:
    row.state, row.last_error = "failed", reason[:1000]
    row.save()


def retry(row: EmailOutbound) -> None:
    row.state, row.next_attempt_at, row.attempts = "pending", utcnow(), 0
    row.save()


# -- the worker's job -------------------------------------------------------------------

@contextmanager
def once_across_hosts():
    """True inside when this host holds the e-mail lock. PostgreSQL: a session advisory
    lock, tried and not waited for, so a second host skips the round instead of queueing
    behind it; held without a transaction open, so network waits block no writer. SQLite
    is one host by construction."""
    if not is_postgres():
        yield True
        return
    got = database_proxy.execute_sql("SELECT pg_try_advisory_lock(%s)", (LOCK_EMAIL,)).fetchone()[0]
    try:
        yield bool(got)
    finally:
        if got:
            database_proxy.execute_sql("SELECT pg_advisory_unlock(%s)", (LOCK_EMAIL,))


def email_channels():
    return (Channel.select().join(EmailChannelConfig, on=(EmailChannelConfig.channel == Channel.id))
            .where(Channel.kind == "email", Channel.is_active == True))


def run(limits: dict | None = None) -> dict:
    """One round: poll every active e-mail channel, then send what is due."""
    totals = {"ingested": 0, "duplicates": 0, "quarantined": 0, "sent": 0, "errors": 0}
    with once_across_hosts() as mine:
        if not mine:
            return totals
        queue_replies()
        for channel in email_channels():
            settings = load_settings(channel)
            try:
                result = poll_channel(channel, settings, limits)
                for k in ("ingested", "duplicates", "quarantined"):
                    totals[k] += getattr(result, k)
            except imap.ImapError as exc:
                log.warning("channel %s: %s", channel.id, exc)
                totals["errors"] += 1
            totals["sent"] += send_due(channel, settings, limits)
    return totals


def email_job(app) -> None:
    """Worker job: e-mail in and out for every e-mail channel."""
    run(app.extensions["appliance_instance"]["email"])
