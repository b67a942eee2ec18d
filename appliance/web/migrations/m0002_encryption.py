"""Encryption at rest: the wrapped-key tables, and the blind-index columns where they are missing.

The encrypted columns themselves came with m0001 (BLOB/bytea). A database made
from a development build before the blind indexes existed gets them here. No
key material is needed: the first start after this migration records the
master key id (see appliance.web.crypto.keyring.KeyRing.verify_master).

Frozen: these classes are the tables as this step created them (see the package docstring).
"""

from peewee import AutoField, BlobField, CharField, DateTimeField, IntegerField, TextField

from appliance.web.migrations import FrozenModel, create_frozen, ensure_column


class _KeyTable(FrozenModel):
    """The key tables were created with peewee's older index naming: "<lowercased class>_<columns>"."""

    class Meta:
        legacy_table_names = True


class CryptoMaster(_KeyTable):
    id = AutoField()
    master_key_id = CharField(max_length=32)
    created_at = DateTimeField()
    rotated_at = DateTimeField(null=True)

    class Meta:
        table_name = "crypto_master"


class TenantKey(_KeyTable):
    id = AutoField()
    key_id = IntegerField(unique=True)
    tenant_id = IntegerField(index=True)
    purpose = CharField(max_length=8)
    version = IntegerField()
    status = CharField(max_length=10)
    wrapped = BlobField()
    created_at = DateTimeField()
    retired_at = DateTimeField(null=True)

    class Meta:
        table_name = "crypto_tenant_key"
        indexes = ((("tenant_id", "purpose", "version"), True),)


class KeyRotationJob(_KeyTable):
    id = AutoField()
    tenant_id = IntegerField(index=True)
    new_key_id = IntegerField()
    old_key_ids = TextField()
    state = CharField(max_length=10)
    progress = TextField()
    rows_done = IntegerField()
    failures = IntegerField()
    started_at = DateTimeField()
    activated_at = DateTimeField()
    finished_at = DateTimeField(null=True)

    class Meta:
        table_name = "crypto_rotation_job"


MODELS = [CryptoMaster, TenantKey, KeyRotationJob]

BLIND_INDEXES = [("contact", "email_bidx"), ("contact", "phone_bidx")]


def up(db, migrator):
    create_frozen(db, MODELS)
    for table, column in BLIND_INDEXES:
        # Indexed like m0001 creates it: the index is named "<table>_<column>".
        ensure_column(db, migrator, table, column, BlobField(null=True, index=True))
