"""The channel outbox: delivery receipts, and each reply's conversation for ordered sends.

Frozen: the columns and the index as this step adds them (see the package docstring).

- ``channel_outbox.delivery_status``: delivered | read | failed, from the service's
  receipts (WhatsApp ``statuses``, Viber ``delivered``/``seen``/``failed``, VK
  ``message_read``); NULL for replies sent before, and for kinds that report nothing.
- ``channel_outbox.delivery_at``: when the latest receipt arrived.
- An index on (channel, external_id): a receipt names the reply by the service's id for it.
- ``channel_outbox.conversation_id``: the message's conversation (filled in for the rows
  there), with an index on (conversation_id, state, id): a reply is claimed only when no
  earlier reply of its conversation is still on its way, whichever host sends.

- ``channel_receipt``: a receipt that came before the send's own answer was stored (the
  service can be that fast), held until the reply's row knows its id, pruned after a day.

Plain ``ADD COLUMN`` (nullable): both databases add it in place, where peewee's SQLite
migrator would rebuild the table.
"""

from peewee import AutoField, CharField, DateTimeField, ForeignKeyField, PostgresqlDatabase, TextField

from appliance.web.migrations import FrozenModel, create_frozen
from appliance.web.migrations.m0001_core import Channel


class ChannelReceipt(FrozenModel):
    id = AutoField()
    channel = ForeignKeyField(Channel, on_delete="CASCADE", backref="+")
    external_id = CharField(max_length=255)
    status = CharField(max_length=10)
    reason = TextField(null=True)
    created_at = DateTimeField(index=True)

    class Meta:
        table_name = "channel_receipt"
        indexes = ((("channel", "external_id"), False),)


MODELS = [ChannelReceipt]

COLUMNS = [
    ("channel_outbox", "delivery_status", "VARCHAR(10)"),
    ("channel_outbox", "delivery_at", "DATETIME", "TIMESTAMP"),
    ("channel_outbox", "conversation_id", "INTEGER"),
]
INDEXES = {
    "channel_outbox_channel_id_external_id": ("channel_id", "external_id"),
    "channel_outbox_conversation_id_state_id": ("conversation_id", "state", "id"),
}


def up(db, migrator):
    postgres = isinstance(getattr(db, "obj", db), PostgresqlDatabase)
    for table, column, *types in COLUMNS:
        if column in {c.name for c in db.get_columns(table)}:
            continue
        sql_type = types[-1] if postgres else types[0]
        db.execute_sql(f'ALTER TABLE "{table}" ADD COLUMN "{column}" {sql_type}')
    db.execute_sql('UPDATE "channel_outbox" SET "conversation_id" = (SELECT "conversation_id" FROM "message" '
                   'WHERE "message"."id" = "channel_outbox"."message_id") WHERE "conversation_id" IS NULL')
    for name, columns in INDEXES.items():
        listed = ", ".join(f'"{c}"' for c in columns)
        db.execute_sql(f'CREATE INDEX IF NOT EXISTS "{name}" ON "channel_outbox" ({listed})')
    create_frozen(db, MODELS)
