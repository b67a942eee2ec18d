"""The e-mail channel's work: polling a mailbox into conversations, quarantining what
cannot be read, and sending agents' replies with the headers that thread them.

Threading, in this order, never by subject: a Message-ID the mail answers
(``In-Reply-To``, then ``References``) that this channel has seen or sent; then a reply
token in a recipient address (``support+<token>@domain``); else a new conversation.
"""

from __future__ import annotations

import logging
import secrets
from contextlib import contextmanager
from dataclasses import dataclass

from appliance.core import clock
from appliance.web.channels import config as channel_config
from appliance.web.channels.base import Inbound, InboundFile
from appliance.web.channels.email import compose, imap, smtp
from appliance.web.channels.email.parse import MailParseError, ParsedMail, parse_mail
from appliance.web.channels.email.settings import as_stored, configured, imap_settings, problem, smtp_settings
from appliance.web.channels.ingest import store_inbound
from appliance.web.crypto import blind_index
from appliance.web.db import database_proxy, is_postgres, write_transaction
from appliance.web.models.base import utcnow
from appliance.web.models.channels import OutboxMessage
from appliance.web.models.contact_center import Attachment, Channel, Contact, Conversation, Message
from appliance.web.models.email import EmailConversation, EmailMailboxState, EmailQuarantine, EmailThreadRef
from appliance.web.models.tenancy import Tenant
from appliance.web.services import Conflict, ServiceError
from appliance.web.services.conversations import MAX_BODY

log = logging.getLogger("appliance.web.channels.email")

LOCK_EMAIL = 0x656D6C31  # "eml1": one host polls the mailboxes at a time
TOKEN_KEY = "token:"  # thread_keys entries that are reply tokens rather than Message-IDs


@dataclass
class PollResult:
    ingested: int = 0
    duplicates: int = 0
    quarantined: int = 0


def _limits(app_config: dict | None) -> dict:
    from appliance.core.config import DEFAULTS

    return {**DEFAULTS["email"], **(app_config or {})}


# -- settings ---------------------------------------------------------------------------

def require_email(channel: Channel) -> None:
    if channel.kind != "email":
        raise Conflict(f"channel {channel.id} is a {channel.kind} channel; e-mail settings belong to e-mail channels.")


def save_settings(channel: Channel, values: dict) -> dict:
    """Checked, then stored by the channel layer (sealed; a secret left empty is kept)."""
    require_email(channel)
    return channel_config.update_settings(channel, as_stored(values))


def load_settings(channel: Channel) -> dict | None:
    settings = channel_config.settings_for(channel)
    return settings if configured(settings) else None


def describe(channel: Channel) -> dict:
    """Settings (secrets only as set or not) and mailbox state, as the UI and the API show them."""
    require_email(channel)
    state = EmailMailboxState.select().where(EmailMailboxState.channel == channel.id).first()
    failed = OutboxMessage.select().where(OutboxMessage.channel == channel.id, OutboxMessage.state == "failed")
    return {
        "channel_id": channel.id,
        "configured": load_settings(channel) is not None,
        "settings": channel_config.public_settings(channel),
        "status": channel_config.status(channel),
        "mailbox": None if state is None else {
            "name": state.mailbox, "uidvalidity": state.uidvalidity, "last_uid": state.last_uid,
            "last_poll_at": _iso(state.last_poll_at), "last_inbound_at": _iso(state.last_inbound_at),
            "last_error": state.last_error},
        "failed_replies": failed.count(),
        "quarantined": EmailQuarantine.select().where(EmailQuarantine.channel == channel.id).count(),
    }


def _iso(value):
    return value.isoformat() + "Z" if value else None


def check_servers(settings: dict) -> dict:
    """Log in to both servers: what an admin checks right after typing the settings."""
    result = {}
    try:
        uidvalidity, _ = imap.fetch_new(imap_settings(settings, 10.0), None, 0, batch=0)
        result["imap"] = {"ok": True, "detail": f"logged in, mailbox UIDVALIDITY {uidvalidity}"}
    except (imap.ImapError, KeyError, ValueError) as exc:
        result["imap"] = {"ok": False, "detail": str(exc)}
    try:
        smtp.check(smtp_settings(settings, 10.0))
        result["smtp"] = {"ok": True, "detail": "connected" + (" and logged in" if settings.get("smtp_username")
                                                              else "")}
    except (smtp.SmtpPermanentError, smtp.SmtpTemporaryError, ValueError) as exc:
        result["smtp"] = {"ok": False, "detail": str(exc)}
    return result


def quarantined(tenant, limit: int = 200):
    return list(EmailQuarantine.select().where(EmailQuarantine.tenant == tenant.id)
                .order_by(EmailQuarantine.received_at.desc(), EmailQuarantine.id.desc()).limit(limit))


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


def to_inbound(parsed: ParsedMail, limits: dict) -> Inbound:
    """A parsed mail as the channel layer's inbound item: the Message-ID is its
    de-duplication key, the sender's address where replies go."""
    text = parsed.text
    if len(text) > MAX_BODY - 200:
        text = text[:MAX_BODY - 200] + "\n\n[the rest of this mail was cut: too long to show]"
    # Parts over attachment_max_bytes or of a type not accepted are left out by the ingest
    # (channels/ingest.py), which names them in the message, as for every channel.
    files = parsed.files
    return Inbound(external_id=parsed.message_id, sender_id=parsed.sender_email, text=text,
                   sender_name=parsed.sender_name, email=parsed.sender_email, subject=parsed.subject,
                   files=[InboundFile(f.filename, f.content_type, f.data) for f in files],
                   thread_keys=parsed.references + [TOKEN_KEY + t for t in parsed.tokens])


def find_conversation(channel: Channel, item: Inbound) -> Conversation | None:
    """Threading for the channel layer's ingest: a Message-ID this channel has seen or
    sent (In-Reply-To first, then References), then a reply token; never the subject."""
    ids = [k for k in item.thread_keys if not k.startswith(TOKEN_KEY)]
    tokens = [k[len(TOKEN_KEY):] for k in item.thread_keys if k.startswith(TOKEN_KEY)]
    for ref in ids:
        row = EmailThreadRef.get_or_none(EmailThreadRef.channel == channel.id,
                                         EmailThreadRef.message_id_hash == message_id_key(channel.tenant_id, ref))
        if row is not None:
            return Conversation.get_by_id(row.conversation_id)
    for token in tokens:
        row = (EmailConversation.select(EmailConversation, Conversation).join(Conversation)
               .where(EmailConversation.token == token, Conversation.channel == channel.id).first())
        if row is not None:
            return row.conversation
    return None


def ingest_mail(channel: Channel, parsed: ParsedMail, limits: dict | None = None) -> Message | None:
    """Store one parsed mail through the channel layer (None when this channel has it already)."""
    made = store_inbound(channel, [to_inbound(parsed, _limits(limits))], find_conversation=find_conversation)
    if not made:
        return None
    message = made[0]
    conv = Conversation.get_by_id(message.conversation_id)
    reply_token(conv)
    remember(conv, message, parsed.message_id, "in")
    return message


def remember(conv: Conversation, message: Message, mail_id: str, direction: str) -> EmailThreadRef:
    """Record a Message-ID of the conversation (once per channel: a forged repeat of one
    of ours threads by the first)."""
    key = message_id_key(conv.tenant_id, mail_id)
    row = EmailThreadRef.get_or_none(EmailThreadRef.channel == conv.channel_id, EmailThreadRef.message_id_hash == key)
    if row is None:
        row = EmailThreadRef.create(tenant=conv.tenant_id, channel=conv.channel_id, conversation=conv.id,
                                    message=message.id, message_id_hash=key, mail_id=mail_id, direction=direction)
    return row


def reply_token(conv: Conversation) -> str:
    row = EmailConversation.get_or_none(EmailConversation.conversation == conv.id)
    if row is None:
        row = EmailConversation.create(conversation=conv.id, token=secrets.token_urlsafe(18))
    return row.token


# -- outbound (called by the channel outbox through the adapter) ------------------------

def build_reply(settings: dict, message_uid: str, recipient: str):
    """The mail for an agent's reply, with the headers that keep the thread together."""
    msg = Message.get(Message.uid == message_uid)
    conv = Conversation.get_by_id(msg.conversation_id)
    if not recipient:
        recipient = Contact.get_by_id(conv.contact_id).email or ""
    if "@" not in recipient:
        raise smtp.SmtpPermanentError("the contact has no e-mail address to reply to")
    domain = settings["from_address"].rpartition("@")[2]
    own = EmailThreadRef.get_or_none(EmailThreadRef.message == msg.id, EmailThreadRef.direction == "out")
    if own is None:
        # Chosen once and kept: a retry after an unclear failure is the same mail (clients
        # show one) and the customer's answer to either finds the conversation.
        own = remember(conv, msg, compose.new_message_id(domain), "out")
    earlier = list(EmailThreadRef.select().where(EmailThreadRef.conversation == conv.id,
                                                 EmailThreadRef.id < own.id).order_by(EmailThreadRef.id))
    inbound = [r for r in earlier if r.direction == "in"]
    in_reply_to = (inbound or earlier or [None])[-1]
    files = list(Attachment.select().where(Attachment.message == msg.id))
    return compose.build_reply(
        from_address=settings["from_address"], from_name=settings.get("from_name") or None,
        token=reply_token(conv), to=recipient, subject=conv.subject, text=msg.body,
        message_id=own.mail_id, in_reply_to=in_reply_to.mail_id if in_reply_to else None,
        references=[r.mail_id for r in earlier], when=clock.now(), files=files)


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


def email_channels() -> list[Channel]:
    return list(Channel.select().join(Tenant).where(Channel.kind == "email", Channel.is_active == True,
                                                    Tenant.is_active == True).order_by(Channel.id))


def run(limits: dict | None = None) -> dict:
    """One round: poll every configured, active e-mail channel (replies go out through the
    channel outbox's own job)."""
    totals = {"ingested": 0, "duplicates": 0, "quarantined": 0, "errors": 0}
    with once_across_hosts() as mine:
        if not mine:
            return totals
        for channel in email_channels():
            settings = load_settings(channel)
            if settings is None:
                continue
            wrong = problem(settings)
            if wrong:
                channel_config.record_error(channel, f"E-mail settings: {wrong}")
                totals["errors"] += 1
                continue
            try:
                result = poll_channel(channel, settings, limits)
                for k in ("ingested", "duplicates", "quarantined"):
                    totals[k] += getattr(result, k)
            except imap.ImapError as exc:
                log.warning("channel %s: %s", channel.id, exc)
                channel_config.record_error(channel, f"IMAP: {exc}")
                totals["errors"] += 1
    return totals


def email_job(app) -> None:
    """Worker job: new mail of every e-mail channel into conversations."""
    run(app.extensions["appliance_instance"]["email"])
