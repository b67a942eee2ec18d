"""Tables of the encryption key hierarchy (re-exported by appliance/web/models/crypto.py).

Only wrapped key material lives here: each data key is AES-256-GCM-encrypted
under the master key, which never enters the database. Deleting a tenant's
rows in ``crypto_tenant_key`` shreds that tenant's data, in the live database
and in every backup taken afterwards that is restored without those rows.

These models live in the crypto package and bind to ``database_proxy``
directly, not through ``appliance.web.models``: the core models import the crypto
field types, so the crypto package must not import ``appliance.web.models``.
"""

from __future__ import annotations

from peewee import (
    AutoField,
    BlobField,
    CharField,
    DateTimeField,
    IntegerField,
    Model,
    TextField,
)

from appliance.core import clock
from appliance.web.db import database_proxy


def _now():
    return clock.naive_now()


class _CryptoModel(Model):
    class Meta:
        database = database_proxy


class CryptoMaster(_CryptoModel):
    """One row: which master key the wrapped data keys belong to.

    The id is a digest of a key-check value, so a wrong key file is detected
    at start before anything is read or written.
    """

    id = AutoField()
    master_key_id = CharField(max_length=32)
    created_at = DateTimeField(default=_now)
    rotated_at = DateTimeField(null=True)

    class Meta:
        table_name = "crypto_master"


class TenantKey(_CryptoModel):
    """A per-tenant key (purpose ``data`` or ``index``), stored only wrapped.

    ``key_id`` is what each stored value carries, so decryption picks its key
    directly. Status: ``active`` (new writes), ``retiring`` (a rotation is
    moving rows off it, still decrypts), ``retired`` (no row uses it; kept so
    that backups taken before the rotation still restore).
    """

    id = AutoField()
    key_id = IntegerField(unique=True)
    tenant_id = IntegerField(index=True)
    purpose = CharField(max_length=8)
    version = IntegerField()
    status = CharField(max_length=10, default="active")
    wrapped = BlobField()
    created_at = DateTimeField(default=_now)
    retired_at = DateTimeField(null=True)

    class Meta:
        table_name = "crypto_tenant_key"
        # Two processes creating a tenant's first key at once: one insert loses.
        indexes = ((("tenant_id", "purpose", "version"), True),)


class KeyRotationJob(_CryptoModel):
    """Progress of one tenant key rotation, so a crashed run resumes in place."""

    id = AutoField()
    tenant_id = IntegerField(index=True)
    new_key_id = IntegerField()
    old_key_ids = TextField(default="[]")  # JSON list
    state = CharField(max_length=10, default="running")  # running | done
    progress = TextField(default="{}")  # JSON {table: last primary key}
    rows_done = IntegerField(default=0)
    failures = IntegerField(default=0)
    started_at = DateTimeField(default=_now)
    activated_at = DateTimeField(default=_now)
    finished_at = DateTimeField(null=True)

    class Meta:
        table_name = "crypto_rotation_job"


CRYPTO_MODELS = [CryptoMaster, TenantKey, KeyRotationJob]
