"""A user who must choose a new password before anything else (``user.must_change_password``).

The installer creates the first admin with a generated password that sits in a file on
the control machine; that admin replaces it at first login. Users already there keep
their passwords (the column defaults to false).

Frozen: the column as this step adds it (see the package docstring). Plain ``ADD COLUMN
... NOT NULL DEFAULT`` as in m0010: both databases fill the existing rows in place.
"""

from peewee import PostgresqlDatabase


def up(db, migrator):
    if "must_change_password" in {c.name for c in db.get_columns("user")}:
        return
    postgres = isinstance(getattr(db, "obj", db), PostgresqlDatabase)
    kind = "BOOLEAN NOT NULL DEFAULT FALSE" if postgres else "INTEGER NOT NULL DEFAULT FALSE"
    db.execute_sql(f'ALTER TABLE "user" ADD COLUMN "must_change_password" {kind}')
