"""Routing: a tenant's default capacity (open conversations each of its members takes by
round-robin at most) and a member's own; supervisors and admins take round-robin work
only when they opt in; a conversation nobody could take yet waits (``waiting_since``)
for the worker's queue job.

Columns and indexes only. Existing supervisors and admins start opted out, as the
release intends: only members with the agent role are routed work until an admin opts
someone else in (Teams page, or the API's member PATCH).
"""

from peewee import PostgresqlDatabase

COLUMNS = [
    ("tenant", "agent_capacity", "INTEGER", "INTEGER"),
    ("membership", "capacity", "INTEGER", "INTEGER"),
    ("membership", "takes_conversations", "INTEGER NOT NULL DEFAULT FALSE", "BOOLEAN NOT NULL DEFAULT FALSE"),
    ("conversation", "waiting_since", "DATETIME", "TIMESTAMP"),
]
INDEXES = {
    # an agent's open load (capacity), counted inside the round-robin statement
    "conversation_assignee_id_status": ("conversation", ("assignee_id", "status")),
    # the queue job reads only the conversations waiting, oldest first
    "conversation_waiting_since": ("conversation", ("waiting_since",)),
}


def up(db, migrator):
    postgres = isinstance(getattr(db, "obj", db), PostgresqlDatabase)
    for table, column, sqlite_type, postgres_type in COLUMNS:
        if column in {c.name for c in db.get_columns(table)}:
            continue
        db.execute_sql(f'ALTER TABLE "{table}" ADD COLUMN "{column}" {postgres_type if postgres else sqlite_type}')
    for name, (table, columns) in INDEXES.items():
        listed = ", ".join(f'"{c}"' for c in columns)
        db.execute_sql(f'CREATE INDEX IF NOT EXISTS "{name}" ON "{table}" ({listed})')
