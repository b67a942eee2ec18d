"""The inbox agents work in: labels, per-user read markers, the last message's preview,
priority and snooze on conversations, and a blind index on contact names.

Frozen: these classes, columns and indexes are the schema as this step made it (see the
package docstring).

- ``conversation.preview`` (sealed like message bodies) and ``last_direction``: the inbox
  row's one-line preview, written with the message counter; NULL for conversations
  whose newest message came before this step (the row then shows no preview until the
  next message).
- ``conversation.last_inbound_at``: filled in from ``last_message_at`` for the rows there,
  so every existing conversation starts unread for everyone (there are no markers yet).
- ``conversation.priority`` (0 low .. 3 urgent, default 1) and ``snoozed_until``.
- ``contact.name_bidx``: filled in by the worker for the contacts there (the keys are
  not this step's to open): ``contacts.name_index_job``.

Plain ``ADD COLUMN``: both databases add it in place, where peewee's SQLite migrator
would rebuild the table.
"""

from peewee import AutoField, BooleanField, CharField, DateTimeField, ForeignKeyField, PostgresqlDatabase

from appliance.web.migrations import FrozenModel, create_frozen
from appliance.web.migrations.m0001_core import Conversation, Tenant, User


class Label(FrozenModel):
    id = AutoField()
    tenant = ForeignKeyField(Tenant, on_delete="CASCADE", backref="+")
    name = CharField(max_length=40)
    color = CharField(max_length=7)
    shared = BooleanField()
    created_at = DateTimeField()

    class Meta:
        table_name = "label"
        indexes = ((("tenant", "name"), True),)


class ConversationLabel(FrozenModel):
    id = AutoField()
    conversation = ForeignKeyField(Conversation, on_delete="CASCADE", backref="+")
    label = ForeignKeyField(Label, on_delete="CASCADE", backref="+")

    class Meta:
        table_name = "conversation_label"
        indexes = ((("conversation", "label"), True), (("label", "conversation"), False))


class ConversationRead(FrozenModel):
    id = AutoField()
    user = ForeignKeyField(User, on_delete="CASCADE", backref="+")
    conversation = ForeignKeyField(Conversation, on_delete="CASCADE", backref="+")
    read_at = DateTimeField()

    class Meta:
        table_name = "conversation_read"
        indexes = ((("user", "conversation"), True),)


MODELS = [Label, ConversationLabel, ConversationRead]

# (table, column, SQLite type, PostgreSQL type)
COLUMNS = [
    ("conversation", "preview", "BLOB", "BYTEA"),
    ("conversation", "last_direction", "VARCHAR(4)", "VARCHAR(4)"),
    ("conversation", "last_inbound_at", "DATETIME", "TIMESTAMP"),
    ("conversation", "priority", "INTEGER NOT NULL DEFAULT 1", "INTEGER NOT NULL DEFAULT 1"),
    ("conversation", "snoozed_until", "DATETIME", "TIMESTAMP"),
    ("contact", "name_bidx", "BLOB", "BYTEA"),
]
INDEXES = {
    "conversation_tenant_id_status_priority_last_message_at_id":
        ("conversation", ("tenant_id", "status", "priority", "last_message_at", "id")),
    "conversation_snoozed_until": ("conversation", ("snoozed_until",)),
    "contact_name_bidx": ("contact", ("name_bidx",)),
}


def up(db, migrator):
    postgres = isinstance(getattr(db, "obj", db), PostgresqlDatabase)
    added = []
    for table, column, sqlite_type, postgres_type in COLUMNS:
        if column in {c.name for c in db.get_columns(table)}:
            continue
        db.execute_sql(f'ALTER TABLE "{table}" ADD COLUMN "{column}" {postgres_type if postgres else sqlite_type}')
        added.append(column)
    if "last_inbound_at" in added:
        db.execute_sql('UPDATE "conversation" SET "last_inbound_at" = "last_message_at"')
    for name, (table, columns) in INDEXES.items():
        listed = ", ".join(f'"{c}"' for c in columns)
        db.execute_sql(f'CREATE INDEX IF NOT EXISTS "{name}" ON "{table}" ({listed})')
    create_frozen(db, MODELS)
