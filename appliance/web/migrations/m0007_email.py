"""The e-mail channel: settings, mailbox positions, quarantine, thread references, outbound queue.

Frozen: these classes are the tables as this step created them (see the package docstring).
"""

from peewee import (
    AutoField,
    BigIntegerField,
    BlobField,
    CharField,
    DateTimeField,
    ForeignKeyField,
    IntegerField,
    TextField,
    UUIDField,
)

from appliance.web.migrations import FrozenModel, create_frozen


class _Ref(FrozenModel):
    id = AutoField()


class Tenant(_Ref):
    class Meta:
        table_name = "tenant"


class Channel(_Ref):
    class Meta:
        table_name = "channel"


class Conversation(_Ref):
    class Meta:
        table_name = "conversation"


class Message(_Ref):
    class Meta:
        table_name = "message"


class EmailChannelConfig(FrozenModel):
    id = AutoField()
    channel = ForeignKeyField(Channel, unique=True, on_delete="CASCADE", backref="+")
    tenant = ForeignKeyField(Tenant, on_delete="CASCADE", backref="+")
    uid = UUIDField(unique=True)
    settings = BlobField()
    updated_at = DateTimeField()

    class Meta:
        table_name = "email_channel_config"


class EmailMailboxState(FrozenModel):
    id = AutoField()
    channel = ForeignKeyField(Channel, on_delete="CASCADE", backref="+")
    mailbox = CharField(max_length=200)
    uidvalidity = BigIntegerField(null=True)
    last_uid = BigIntegerField()
    last_poll_at = DateTimeField(null=True)
    last_inbound_at = DateTimeField(null=True)
    last_error = TextField()

    class Meta:
        table_name = "email_mailbox_state"
        indexes = ((("channel", "mailbox"), True),)


class EmailQuarantine(FrozenModel):
    id = AutoField()
    tenant = ForeignKeyField(Tenant, on_delete="CASCADE", backref="+")
    channel = ForeignKeyField(Channel, on_delete="CASCADE", backref="+")
    uid = UUIDField(unique=True)
    mailbox = CharField(max_length=200)
    uidvalidity = BigIntegerField()
    imap_uid = BigIntegerField()
    reason = TextField()
    raw = BlobField()
    size = IntegerField()
    received_at = DateTimeField()

    class Meta:
        table_name = "email_quarantine"
        indexes = (
            (("channel", "mailbox", "uidvalidity", "imap_uid"), True),
            (("tenant", "received_at"), False),
        )


class EmailThreadRef(FrozenModel):
    id = AutoField()
    tenant = ForeignKeyField(Tenant, on_delete="CASCADE", backref="+")
    channel = ForeignKeyField(Channel, on_delete="CASCADE", backref="+")
    conversation = ForeignKeyField(Conversation, on_delete="CASCADE", backref="+")
    message = ForeignKeyField(Message, null=True, on_delete="SET NULL", backref="+")
    uid = UUIDField(unique=True)
    message_id_hash = CharField(max_length=64)
    mail_id = BlobField()
    direction = CharField(max_length=4)
    created_at = DateTimeField()

    class Meta:
        table_name = "email_thread_ref"
        indexes = ((("channel", "message_id_hash"), True), (("conversation", "id"), False))


class EmailConversation(FrozenModel):
    id = AutoField()
    conversation = ForeignKeyField(Conversation, unique=True, on_delete="CASCADE", backref="+")
    token = CharField(max_length=64, unique=True)

    class Meta:
        table_name = "email_conversation"


class EmailOutbound(FrozenModel):
    id = AutoField()
    message = ForeignKeyField(Message, unique=True, on_delete="CASCADE", backref="+")
    channel = ForeignKeyField(Channel, on_delete="CASCADE", backref="+")
    state = CharField(max_length=10)
    attempts = IntegerField()
    next_attempt_at = DateTimeField()
    last_error = TextField()
    message_id_hash = CharField(max_length=64)
    created_at = DateTimeField()
    sent_at = DateTimeField(null=True)

    class Meta:
        table_name = "email_outbound"
        indexes = ((("state", "next_attempt_at"), False),)


MODELS = [EmailChannelConfig, EmailMailboxState, EmailQuarantine, EmailThreadRef, EmailConversation,
          EmailOutbound]


def up(db, migrator):
    create_frozen(db, MODELS)
