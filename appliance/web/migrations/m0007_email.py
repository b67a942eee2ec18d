"""The e-mail channel: mailbox positions, quarantine, thread references, reply tokens.

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


MODELS = [EmailMailboxState, EmailQuarantine, EmailThreadRef, EmailConversation]


def up(db, migrator):
    create_frozen(db, MODELS)
