"""Inbound items into conversations, each exactly once.

The first thing stored for an item is its ledger row (channel, the service's own id),
under a unique index: a re-delivery, a second app host receiving the same update, or
a poll repeated after a crash all hit that index and add nothing. The ledger row, the
contact, the conversation and the message are written in one transaction, so an item
is either wholly stored or not at all (and is then stored when it comes again).
"""

from __future__ import annotations

import logging

from peewee import IntegrityError

from appliance.web.channels.base import Inbound, InboundFile
from appliance.web.db import database_proxy, write_transaction
from appliance.web.models.channels import ChannelIdentity, InboundSeen
from appliance.web.models.contact_center import Attachment, Channel, Contact, Conversation, Message
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


def _store_one(channel: Channel, item: Inbound, find_conversation) -> Message | None:
    key = str(item.external_id)[:MAX_EXTERNAL_ID]
    if not key:
        raise ServiceError("An inbound item needs the service's id for it.", 422)
    item = _within_limits(item)
    with write_transaction():
        try:
            with database_proxy.atomic():
                seen = InboundSeen.create(channel=channel.id, external_id=key)
        except IntegrityError:
            return None  # stored before: the service re-delivered it
        tenant = Tenant.get_by_id(channel.tenant_id)
        text = _text_of(item)
        conv = find_conversation(channel, item) if find_conversation else None
        if conv is None:
            contact = _contact_for(channel, tenant, item)
            conv = (Conversation.select()
                    .where(Conversation.contact == contact.id, Conversation.channel == channel.id,
                           Conversation.status != "resolved")
                    .order_by(Conversation.id.desc()).first())
            if conv is None:
                conv = conversations.start_conversation(channel, tenant, contact, text, subject=item.subject)
                message = conv.messages.order_by(Message.id.desc()).get()
            else:
                message = conversations.add_message(conv, "in", text)
        else:
            message = conversations.add_message(conv, "in", text)
            if conv.status == "resolved":
                conversations.set_status(conv, "open")
        for f in item.files:
            store_file(message, f)
        seen.message = message.id
        seen.save(only=[InboundSeen.message])
    return message


def _within_limits(item: Inbound) -> Inbound:
    """``item`` without the files the attachment settings refuse, each named in its text instead.

    A customer's oversized or odd file must not cost the message (nor make the service
    re-deliver it forever): the agent sees what arrived and what was left out, and why.
    """
    from dataclasses import replace

    from appliance.web.services.attachments import check_file

    kept, notes = [], []
    for f in item.files:
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


def _contact_for(channel: Channel, tenant: Tenant, item: Inbound) -> Contact:
    sender = str(item.sender_id or "")
    if sender:
        identity = find_identity(channel, sender)
        if identity is not None:
            return Contact.get_by_id(identity.contact_id)
    try:
        contact = conversations.find_or_create_contact(tenant, name=item.sender_name, email=item.email,
                                                       phone=item.phone)
    except ServiceError:
        # A service's profile field that our contact rules refuse (an odd phone format)
        # must not lose the message: keep the contact with the name only.
        contact = conversations.find_or_create_contact(tenant, name=item.sender_name)
    if sender:
        ChannelIdentity.create(channel=channel.id, tenant=tenant.id, contact=contact.id, external=sender)
    return contact


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
