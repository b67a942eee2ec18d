"""Channels that talk both ways: per-channel settings and status, the inbound
de-duplication ledger, and the outbox of replies.

Frozen: these classes are the tables as this step created them (see the package docstring).
"""

from peewee import AutoField, BlobField, CharField, DateTimeField, ForeignKeyField, IntegerField, TextField, UUIDField

from appliance.web.migrations import FrozenModel, create_frozen
from appliance.web.migrations.m0001_core import Channel, Contact, Message, Tenant


class ChannelConfig(FrozenModel):
    id = AutoField()
    channel = ForeignKeyField(Channel, unique=True, on_delete="CASCADE", backref="+")
    tenant = ForeignKeyField(Tenant, on_delete="CASCADE", backref="+")
    uid = UUIDField(unique=True)
    settings = BlobField(null=True)
    poll_state = TextField()
    last_inbound_at = DateTimeField(null=True)
    last_error = TextField(null=True)
    last_error_at = DateTimeField(null=True)
    updated_at = DateTimeField()

    class Meta:
        table_name = "channel_config"


class InboundSeen(FrozenModel):
    id = AutoField()
    channel = ForeignKeyField(Channel, on_delete="CASCADE", backref="+")
    external_id = CharField(max_length=255)
    message = ForeignKeyField(Message, null=True, on_delete="SET NULL", backref="+")
    created_at = DateTimeField()

    class Meta:
        table_name = "inbound_seen"
        indexes = ((("channel", "external_id"), True),)


class OutboxMessage(FrozenModel):
    id = AutoField()
    message = ForeignKeyField(Message, unique=True, on_delete="CASCADE", backref="+")
    channel = ForeignKeyField(Channel, on_delete="CASCADE", backref="+")
    tenant = ForeignKeyField(Tenant, on_delete="CASCADE", backref="+")
    state = CharField(max_length=10)
    attempts = IntegerField()
    next_attempt_at = DateTimeField()
    lease_until = DateTimeField(null=True)
    idempotency_key = CharField(max_length=64)
    external_id = CharField(max_length=255, null=True)
    last_error = TextField(null=True)
    created_at = DateTimeField()
    sent_at = DateTimeField(null=True)

    class Meta:
        table_name = "channel_outbox"
        indexes = ((("state", "next_attempt_at"), False), (("channel", "sent_at"), False))


class ChannelIdentity(FrozenModel):
    id = AutoField()
    channel = ForeignKeyField(Channel, on_delete="CASCADE", backref="+")
    tenant = ForeignKeyField(Tenant, on_delete="CASCADE", backref="+")
    uid = UUIDField(unique=True)
    contact = ForeignKeyField(Contact, on_delete="CASCADE", backref="+")
    external = BlobField()
    external_bidx = BlobField(null=True, index=True)
    created_at = DateTimeField()

    class Meta:
        table_name = "channel_identity"


MODELS = [ChannelConfig, InboundSeen, OutboxMessage, ChannelIdentity]


def up(db, migrator):
    create_frozen(db, MODELS)
