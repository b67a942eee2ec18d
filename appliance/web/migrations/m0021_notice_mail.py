"""Notices by e-mail: whether and when each in-app notice was also mailed.

Frozen: the columns as this step adds them (see the package docstring). Notices already
there are "skipped": switching a relay on must not send a backlog of old reminders.
"""

from peewee import PostgresqlDatabase

COLUMNS = [
    ("mail_status", "VARCHAR(10) NOT NULL DEFAULT 'pending'", "VARCHAR(10) NOT NULL DEFAULT 'pending'"),
    ("mailed_at", "DATETIME", "TIMESTAMP"),
    ("mail_attempts", "INTEGER NOT NULL DEFAULT 0", "INTEGER NOT NULL DEFAULT 0"),
    ("mail_next_at", "DATETIME", "TIMESTAMP"),
    ("mail_error", "VARCHAR(200)", "VARCHAR(200)"),
]


def up(db, migrator):
    postgres = isinstance(getattr(db, "obj", db), PostgresqlDatabase)
    present = {c.name for c in db.get_columns("notification")}
    for column, sqlite_type, postgres_type in COLUMNS:
        if column not in present:
            db.execute_sql(f'ALTER TABLE "notification" ADD COLUMN "{column}" '
                           f'{postgres_type if postgres else sqlite_type}')
    if "mail_status" not in present:
        db.execute_sql("""UPDATE "notification" SET "mail_status" = 'skipped'""")
