"""Inbound items into conversations, each exactly once.

Each stored item has a ledger row (channel, the service's own id) under a unique
index: a re-delivery, a second app host receiving the same update, or a poll repeated
after a crash all hit that index and add nothing. The contact, the conversation, the
message and, last, the ledger row are written in one transaction, so an item is either
wholly stored or not at all (and is then stored when it comes again); a duplicate's
transaction is undone when its ledger row cannot be inserted.
"""

from __future__ import annotations

import logging

from peewee import JOIN, Value

from appliance.web.channels.base import Inbound, InboundFile
from appliance.web.db import Prepared, database_proxy, is_postgres, write_transaction
from appliance.web.models.base import utcnow
from appliance.web.models.channels import ChannelIdentity, InboundSeen
from appliance.web.models.contact_center import Attachment, Channel, Conversation, Message
from appliance.web.models.tenancy import Tenant
from appliance.web.services import ServiceError, conversations

log = logging.getLogger("appliance.web.channels")

MAX_EXTERNAL_ID = 255


def store_inbound(channel: Channel, items: list[Inbound], find_conversation=None) -> list[Message]:
    """Store each new item of ``items``; returns the messages made (duplicates make none).

    ``find_conversation(channel, item) -> Conversation | None`` lets a kind thread by its
    own keys first (e-mail: In-Reply-To, References, the reply token).
    """
    from appliance.web.channels import adapter_for, config

    if find_conversation is None:
        find_conversation = getattr(adapter_for(channel.kind), "find_conversation", None)
    made = []
    for item in items:
        message = _store_one(channel, item, find_conversation)
        if message is not None:
            made.append(message)
    if items:
        config.record_inbound(channel)
    return made


class _StoredBefore(Exception):
    """The ledger already holds this item: the transaction that stored it again is undone."""


def _store_one(channel: Channel, item: Inbound, find_conversation) -> Message | None:
    key = str(item.external_id)[:MAX_EXTERNAL_ID]
    if not key:
        raise ServiceError("An inbound item needs the service's id for it.", 422)
    item = _within_limits(item)
    try:
        with write_transaction():
            return _store_new(channel, item, key, find_conversation)
    except _StoredBefore:
        return None  # stored before: the service re-delivered it


def _store_new(channel: Channel, item: Inbound, key: str, find_conversation) -> Message:
    tenant = channel.tenant  # inbound posts select it with the channel
    text = _text_of(item)
    conv = find_conversation(channel, item) if find_conversation else None
    if conv is None:
        contact_id, conv = _contact_for(channel, tenant, item)
        if conv is None:
            conv, message = conversations.open_conversation(channel, tenant, contact_id, text, subject=item.subject)
        else:
            message = conversations.append_message(conv, "in", text)
    else:
        message = conversations.append_message(conv, "in", text)
        if conv.status == "resolved":
            conversations.set_status(conv, "open")
    for f in item.files:
        store_file(message, f)
    # The ledger row last, in the same transaction: a re-delivery (or a second app host
    # receiving the same update at once) finds the unique index taken, or waits for it
    # on PostgreSQL, and undoes all it wrote.
    if not _claim(channel.id, key, message.id):
        raise _StoredBefore
    return message


def _claim(channel_id: int, key: str, message_id: int) -> bool:
    """The ledger row for ``key``; False when the channel's ledger already holds it.

    As ``InboundSeen.insert(...).on_conflict_ignore()`` would send it, composed once.
    """
    if is_postgres():
        sql = ('INSERT INTO "inbound_seen" ("channel_id", "external_id", "message_id", "created_at") '
               "VALUES (%s, %s, %s, %s) ON CONFLICT DO NOTHING")
    else:
        sql = ('INSERT OR IGNORE INTO "inbound_seen" ("channel_id", "external_id", "message_id", "created_at") '
               "VALUES (?, ?, ?, ?)")
    created = InboundSeen.created_at.db_value(utcnow())
    return database_proxy.execute_sql(sql, (channel_id, key, message_id, created)).rowcount == 1


def _within_limits(item: Inbound) -> Inbound:
    """``item`` without the files the attachment settings refuse, each named in its text instead.

    A customer's oversized or odd file must not cost the message (nor make the service
    re-deliver it forever): the agent sees what arrived and what was left out, and why.
    """
    from dataclasses import replace

    from appliance.web.services.attachments import check_file, clean_filename

    kept, notes = [], []
    for f in item.files:
        if f.left_out:
            notes.append(f"[not stored: {clean_filename(f.filename)}: {f.left_out}]")
            continue
        try:
            clean = check_file(f)
        except ServiceError as exc:
            notes.append(f"[not stored: {exc}]")
            continue
        kept.append(InboundFile(clean.filename, clean.content_type, clean.data))
    if not notes:
        return item
    text = item.text if isinstance(item.text, str) else ""
    text = "\n\n".join(part for part in (text.strip() and text, *notes) if part)
    return replace(item, text=text, files=kept)


def _text_of(item: Inbound) -> str:
    text = item.text if isinstance(item.text, str) else ""
    if text.strip():
        return text[:conversations.MAX_BODY]
    if item.files:
        return "[" + ", ".join(f.filename or "file" for f in item.files)[:200] + "]"
    return "[empty message]"  # e.g. a sticker: still shown, so the agent knows something arrived


def find_identity(channel: Channel, sender_id: str) -> ChannelIdentity | None:
    rows = ChannelIdentity.find_by_index(
        channel.tenant_id, "external", sender_id,
        ChannelIdentity.select().where(ChannelIdentity.channel == channel.id))
    return rows[0] if rows else None


def _identity_with_open_conversation(join_channel_id, channel_id, tenant_id, digest):
    # Values as they are bound (no field conversion), so that Prepared finds each of them.
    open_conv = ((Conversation.contact == ChannelIdentity.contact)
                 & (Conversation.channel == Value(join_channel_id, converter=False))
                 & (Conversation.status != "resolved"))
    return (ChannelIdentity.select(ChannelIdentity, Conversation)
            .join(Conversation, JOIN.LEFT_OUTER, on=open_conv, attr="open_conversation")
            .where((ChannelIdentity.channel == Value(channel_id, converter=False))
                   & (ChannelIdentity.tenant == Value(tenant_id, converter=False))
                   & (ChannelIdentity.external_bidx == Value(digest, converter=False)))
            .order_by(ChannelIdentity.id, Conversation.id.desc()))


_IDENTITY_WITH_OPEN_CONVERSATION = Prepared(_identity_with_open_conversation)


def _contact_for(channel: Channel, tenant: Tenant, item: Inbound) -> tuple[int, Conversation | None]:
    """The sender's contact id and their newest open conversation on ``channel`` (None: start one)."""
    sender = str(item.sender_id or "")
    if sender:
        # The identity and the open conversation in one statement, composed once.
        digest = ChannelIdentity.index_digest(channel.tenant_id, "external", sender)
        rows = [] if digest is None else ChannelIdentity.confirm_matches(
            _IDENTITY_WITH_OPEN_CONVERSATION(channel.id, channel.id, channel.tenant_id, digest), "external", sender)
        if rows:
            conv = getattr(rows[0], "open_conversation", None)
            return rows[0].contact_id, conv if conv is not None and conv.id is not None else None
    try:
        contact = conversations.find_or_create_contact(tenant, name=item.sender_name, email=item.email,
                                                       phone=item.phone)
    except ServiceError:
        # A service's profile field that our contact rules refuse (an odd phone format)
        # must not lose the message: keep the contact with the name only.
        contact = conversations.find_or_create_contact(tenant, name=item.sender_name)
    if sender:
        ChannelIdentity.create(channel=channel.id, tenant=tenant.id, contact=contact.id, external=sender)
    if getattr(contact, "_created", False):
        return contact.id, None  # made just now: no conversation yet
    return contact.id, (Conversation.select()
                        .where(Conversation.contact == contact.id, Conversation.channel == channel.id,
                               Conversation.status != "resolved")
                        .order_by(Conversation.id.desc()).first())


def recipient_for(conv: Conversation) -> str:
    """Where replies in ``conv`` go on its channel ("" when the kind addresses no one)."""
    row = (ChannelIdentity.select()
           .where(ChannelIdentity.channel == conv.channel_id, ChannelIdentity.contact == conv.contact_id)
           .order_by(ChannelIdentity.id.desc()).first())
    return row.external if row is not None else ""


def store_file(message: Message, f: InboundFile) -> Attachment:
    """An inbound file as an attachment of ``message``, sealed like the body (checked against the limits)."""
    from appliance.web.services.attachments import store_file as service_store

    return service_store(message, f)
