"""Delivery receipts on the channel outbox: what the service reported after the send.

Frozen: the columns and the index as this step adds them (see the package docstring).

- ``channel_outbox.delivery_status``: delivered | read | failed, from the service's
  receipts (WhatsApp ``statuses``, Viber ``delivered``/``seen``/``failed``, VK
  ``message_read``); NULL for replies sent before, and for kinds that report nothing.
- ``channel_outbox.delivery_at``: when the latest receipt arrived.
- An index on (channel, external_id): a receipt names the reply by the service's id for it.

Plain ``ADD COLUMN`` (nullable): both databases add it in place, where peewee's SQLite
migrator would rebuild the table.
"""

COLUMNS = [
    ("channel_outbox", "delivery_status", "VARCHAR(10)"),
    ("channel_outbox", "delivery_at", "DATETIME", "TIMESTAMP"),
]
INDEX = "channel_outbox_channel_id_external_id"


def up(db, migrator):
    from peewee import PostgresqlDatabase

    postgres = isinstance(getattr(db, "obj", db), PostgresqlDatabase)
    for table, column, *types in COLUMNS:
        if column in {c.name for c in db.get_columns(table)}:
            continue
        sql_type = types[-1] if postgres else types[0]
        db.execute_sql(f'ALTER TABLE "{table}" ADD COLUMN "{column}" {sql_type}')
    db.execute_sql(f'CREATE INDEX IF NOT EXISTS "{INDEX}" ON "channel_outbox" ("channel_id", "external_id")')
