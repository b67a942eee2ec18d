"""What the channel adapters keep: per-channel settings and status, the inbound
de-duplication ledger, and the outbox of replies waiting to be delivered."""

from __future__ import annotations

from uuid import uuid4

from peewee import CharField, DateTimeField, ForeignKeyField, IntegerField, TextField, UUIDField

from appliance.web.crypto.fields import BlindIndexField, EncryptedJSONField, EncryptedModel, EncryptedTextField
from appliance.web.models.base import BaseModel, utcnow
from appliance.web.models.contact_center import Channel, Contact, Message
from appliance.web.models.tenancy import Tenant

# Outbox states.
PENDING, SENDING, SENT, FAILED = "pending", "sending", "sent", "failed"


class ChannelConfig(EncryptedModel, BaseModel):
    """One row per channel: its kind's settings (secrets included, so the whole
    document is sealed with the tenant's key), polling position and status."""

    channel = ForeignKeyField(Channel, unique=True, on_delete="CASCADE")
    tenant = ForeignKeyField(Tenant, on_delete="CASCADE")
    uid = UUIDField(default=uuid4, unique=True)
    settings = EncryptedJSONField(null=True)
    poll_state = TextField(default="{}")  # offsets and long-poll servers, no secrets
    last_inbound_at = DateTimeField(null=True)
    last_error = TextField(null=True)
    last_error_at = DateTimeField(null=True)
    updated_at = DateTimeField(default=utcnow)


class InboundSeen(BaseModel):
    """Each inbound item once: the service's own id (update_id, wamid, VK event_id,
    Message-ID, a webhook delivery's digest) per channel."""

    channel = ForeignKeyField(Channel, on_delete="CASCADE")
    external_id = CharField(max_length=255)
    message = ForeignKeyField(Message, null=True, on_delete="SET NULL")
    created_at = DateTimeField(default=utcnow)

    class Meta:
        indexes = ((("channel", "external_id"), True),)


class OutboxMessage(BaseModel):
    """An agent's reply on its way to the channel's service, drained by the worker."""

    message = ForeignKeyField(Message, unique=True, on_delete="CASCADE")
    channel = ForeignKeyField(Channel, on_delete="CASCADE")
    tenant = ForeignKeyField(Tenant, on_delete="CASCADE")
    # The message's conversation, copied so the claim can keep a conversation's replies in order.
    conversation_id = IntegerField(null=True)
    state = CharField(max_length=10, default=PENDING)
    attempts = IntegerField(default=0)
    next_attempt_at = DateTimeField(default=utcnow)
    lease_until = DateTimeField(null=True)
    idempotency_key = CharField(max_length=64)
    external_id = CharField(max_length=255, null=True)
    last_error = TextField(null=True)
    created_at = DateTimeField(default=utcnow)
    sent_at = DateTimeField(null=True)
    # The service's receipt after the send (channels.base.DELIVERY_STATUSES), where it gives one.
    delivery_status = CharField(max_length=10, null=True)
    delivery_at = DateTimeField(null=True)

    class Meta:
        table_name = "channel_outbox"
        indexes = ((("state", "next_attempt_at"), False), (("channel", "sent_at"), False),
                   (("channel", "external_id"), False), (("conversation_id", "state", "id"), False))


class ChannelReceipt(BaseModel):
    """A service's receipt that came before the send's own answer was stored (no row has
    its id yet): held until the send settles, then applied; dropped after a day unclaimed.
    The reason is the service's words about the delivery, never message content."""

    channel = ForeignKeyField(Channel, on_delete="CASCADE")
    external_id = CharField(max_length=255)
    status = CharField(max_length=10)
    reason = TextField(null=True)
    created_at = DateTimeField(default=utcnow, index=True)

    class Meta:
        table_name = "channel_receipt"
        indexes = ((("channel", "external_id"), False),)


class ChannelIdentity(EncryptedModel, BaseModel):
    """Who a contact is on one channel (a Telegram chat id, a WhatsApp number, a VK peer):
    the address replies go to. Sealed like every personal datum; found by its blind index."""

    channel = ForeignKeyField(Channel, on_delete="CASCADE")
    tenant = ForeignKeyField(Tenant, on_delete="CASCADE")
    uid = UUIDField(default=uuid4, unique=True)
    contact = ForeignKeyField(Contact, on_delete="CASCADE")
    external = EncryptedTextField()
    external_bidx = BlindIndexField("external", "text")
    created_at = DateTimeField(default=utcnow)

    class Meta:
        # Every inbound message finds its sender by channel and blind index (migration m0028).
        indexes = ((("channel", "external_bidx"), False),)
