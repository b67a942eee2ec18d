"""The e-mail channel's own tables: each mailbox's position, quarantined mail, the
Message-IDs that thread a conversation and its reply token. Settings, the inbound
ledger and the outbox are the channel layer's (models/channels.py)."""

from __future__ import annotations

from uuid import uuid4

from peewee import BigIntegerField, CharField, DateTimeField, ForeignKeyField, IntegerField, TextField, UUIDField

from appliance.web.crypto.fields import EncryptedBytesField, EncryptedModel, EncryptedTextField
from appliance.web.models.base import BaseModel, utcnow
from appliance.web.models.contact_center import Channel, Conversation, Message
from appliance.web.models.tenancy import Tenant


class EmailMailboxState(BaseModel):
    """Where polling stands: UIDs only mean something together with UIDVALIDITY."""

    channel = ForeignKeyField(Channel, on_delete="CASCADE")
    mailbox = CharField(max_length=200)
    uidvalidity = BigIntegerField(null=True)
    last_uid = BigIntegerField(default=0)
    last_poll_at = DateTimeField(null=True)
    last_inbound_at = DateTimeField(null=True)
    last_error = TextField(default="")

    class Meta:
        indexes = ((("channel", "mailbox"), True),)


class EmailQuarantine(EncryptedModel, BaseModel):
    """A mail that could not be parsed, kept (encrypted) for an admin to look at."""

    tenant = ForeignKeyField(Tenant, on_delete="CASCADE")
    channel = ForeignKeyField(Channel, on_delete="CASCADE")
    uid = UUIDField(default=uuid4, unique=True)
    mailbox = CharField(max_length=200)
    uidvalidity = BigIntegerField()
    imap_uid = BigIntegerField()
    reason = TextField()  # says what is wrong with the mail, never what is in it
    raw = EncryptedBytesField()
    size = IntegerField(default=0)
    received_at = DateTimeField(default=utcnow)

    class Meta:
        indexes = (
            (("channel", "mailbox", "uidvalidity", "imap_uid"), True),
            (("tenant", "received_at"), False),
        )

    def to_json(self):
        return {"id": self.id, "channel_id": self.channel_id, "mailbox": self.mailbox,
                "uidvalidity": self.uidvalidity, "imap_uid": self.imap_uid, "reason": self.reason,
                "size": self.size, "received_at": self.received_at.isoformat() + "Z"}


class EmailThreadRef(EncryptedModel, BaseModel):
    """A Message-ID seen or sent on a channel and the conversation it belongs to.

    Looked up by a keyed hash (``message_id_hash``) so the id itself (``mail_id``), which often names a
    person's host or address, is stored encrypted; unique per channel, which is what makes
    a mail fetched twice a single message.
    """

    tenant = ForeignKeyField(Tenant, on_delete="CASCADE")
    channel = ForeignKeyField(Channel, on_delete="CASCADE")
    conversation = ForeignKeyField(Conversation, on_delete="CASCADE")
    message = ForeignKeyField(Message, null=True, on_delete="SET NULL")
    uid = UUIDField(default=uuid4, unique=True)
    message_id_hash = CharField(max_length=64)
    mail_id = EncryptedTextField()  # the Message-ID header's value
    direction = CharField(max_length=4)
    created_at = DateTimeField(default=utcnow)

    class Meta:
        indexes = ((("channel", "message_id_hash"), True), (("conversation", "id"), False))


class EmailConversation(BaseModel):
    """The reply token of a conversation: support+<token>@domain routes answers back to it."""

    conversation = ForeignKeyField(Conversation, unique=True, on_delete="CASCADE")
    token = CharField(max_length=64, unique=True)
