"""Channel signing secrets sealed at rest, and the grace period of a rotated one.

Frozen: the columns as this step leaves them (see the package docstring).

- ``channel.uid``: the row identity the sealed values are bound to (associated data), a
  fresh UUID for each row already there. Nullable because SQLite cannot add a NOT NULL
  column without a constant default; every row has one.
- ``channel.secret``: was the plaintext VARCHAR; now the same secret sealed with the
  tenant's data key (BLOB/bytea), exactly as ``EncryptedTextField`` writes it, so tenant
  key rotation, ``keys verify`` and crypto-shredding cover it like any other column.
- ``channel.previous_secret`` (sealed), ``previous_secret_until``: a rotated-out secret and
  when it stops verifying; ``previous_secret_used_at``: the last delivery signed with it.

This step needs the master key (``appliance migrate`` loads it; a restore passes its own):
it refuses, naming the fix, when rows have to be sealed and no key ring was given.

On SQLite the rows are rewritten with ``secure_delete`` on, so the plaintext does not stay
behind in freed pages. PostgreSQL keeps dead row versions until they are vacuumed:
docs/ENCRYPTION.md says to run ``VACUUM FULL channel`` after this upgrade.
"""

import uuid

from peewee import BlobField, CharField, IntegerField, PostgresqlDatabase, UUIDField

from appliance.web.migrations import FrozenModel

NEEDS_KEYS = True

TABLE = "channel"
COLUMNS = [
    ("uid", "TEXT", "UUID"),
    ("secret_sealed", "BLOB", "BYTEA"),
    ("previous_secret", "BLOB", "BYTEA"),
    ("previous_secret_until", "DATETIME", "TIMESTAMP"),
    ("previous_secret_used_at", "DATETIME", "TIMESTAMP"),
]


class Channel(FrozenModel):
    """The columns this step reads and writes (the table has more)."""

    id = IntegerField(primary_key=True)
    tenant_id = IntegerField()
    secret = CharField(max_length=64)
    uid = UUIDField(null=True)
    secret_sealed = BlobField(null=True)

    class Meta:
        table_name = TABLE


class MissingKeys(RuntimeError):
    pass


def up(db, migrator, keyring=None):
    postgres = isinstance(getattr(db, "obj", db), PostgresqlDatabase)
    if "previous_secret" in {c.name for c in db.get_columns(TABLE)}:
        return  # applied before (its schema_version row was lost): the secrets are sealed already
    for column, sqlite_type, postgres_type in COLUMNS:
        db.execute_sql(f'ALTER TABLE "{TABLE}" ADD COLUMN "{column}" {postgres_type if postgres else sqlite_type}')
    secure_delete = None
    if not postgres:
        secure_delete = db.execute_sql("PRAGMA secure_delete").fetchone()[0]
        db.execute_sql("PRAGMA secure_delete = ON")
    try:
        with db.bind_ctx([Channel]):
            rows = list(Channel.select(Channel.id, Channel.tenant_id, Channel.secret).order_by(Channel.id))
            if rows and keyring is None:
                raise MissingKeys(
                    f"Migration m0024 seals the signing secrets of {len(rows)} channel(s) with their tenants' "
                    "keys and needs the master key: run it through 'appliance migrate' (or a restore), "
                    "which loads the key, not through a bare upgrade().")
            for row in rows:
                uid = uuid.uuid4()
                # The final column's name is what the value is bound to (renamed below).
                sealed = keyring.seal(row.tenant_id, TABLE, "secret", uid, row.secret.encode("utf-8"))
                Channel.update(uid=uid, secret_sealed=sealed).where(Channel.id == row.id).execute()
        db.execute_sql(f'ALTER TABLE "{TABLE}" DROP COLUMN "secret"')
        db.execute_sql(f'ALTER TABLE "{TABLE}" RENAME COLUMN "secret_sealed" TO "secret"')
        db.execute_sql(f'CREATE UNIQUE INDEX "channel_uid" ON "{TABLE}" ("uid")')
    finally:
        if secure_delete is not None:
            db.execute_sql(f"PRAGMA secure_delete = {int(secure_delete)}")
