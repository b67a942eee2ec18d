"""Hardening: the audit chain's scheme per entry; whether a contact's identity is verified;
the MAC of the licence evaluation's start (sealed on first use for rows already there);
a tenant's choice to mask card numbers (off for tenants already there).

Frozen: the columns as this step adds them (see the package docstring).

- ``audit_event.scheme``: entries already there were chained with plain SHA-256 and keep
  that scheme ("sha256"); new entries are keyed ("hmac1", models/audit.py).
- ``contact.verified``: contacts already there were made by staff, the API or a channel
  and count as verified; anonymous widget visitors get unverified contacts from now on.

Plain ``ADD COLUMN ... NOT NULL DEFAULT``: both databases fill the existing rows in place,
where peewee's SQLite migrator would rebuild the table (and trip the foreign keys on it).
"""

from peewee import PostgresqlDatabase

COLUMNS = [
    ("audit_event", "scheme", "VARCHAR(8) NOT NULL DEFAULT 'sha256'", "VARCHAR(8) NOT NULL DEFAULT 'sha256'"),
    ("contact", "verified", "INTEGER NOT NULL DEFAULT TRUE", "BOOLEAN NOT NULL DEFAULT TRUE"),
    ("licence_clock", "evaluation_mac", "VARCHAR(64)", "VARCHAR(64)"),
    ("tenant", "mask_card_numbers", "INTEGER NOT NULL DEFAULT FALSE", "BOOLEAN NOT NULL DEFAULT FALSE"),
]


def up(db, migrator):
    postgres = isinstance(getattr(db, "obj", db), PostgresqlDatabase)
    for table, column, sqlite_type, postgres_type in COLUMNS:
        if column in {c.name for c in db.get_columns(table)}:
            continue
        db.execute_sql(f'ALTER TABLE "{table}" ADD COLUMN "{column}" {postgres_type if postgres else sqlite_type}')
