"""Server-side sessions, TOTP, throttling counters, invitations, and token expiry.

Frozen: these classes are the tables as this step created them (see the package docstring).
"""

from peewee import (
    AutoField,
    BigIntegerField,
    BlobField,
    BooleanField,
    CharField,
    DateTimeField,
    ForeignKeyField,
    IntegerField,
)

from appliance.web.migrations import FrozenModel, create_frozen, ensure_column


class Tenant(FrozenModel):
    id = AutoField()

    class Meta:
        table_name = "tenant"


class User(FrozenModel):
    id = AutoField()

    class Meta:
        table_name = "user"


class UserSession(FrozenModel):
    id = AutoField()
    user = ForeignKeyField(User, on_delete="CASCADE", backref="+")
    sid_hash = CharField(max_length=64, unique=True)
    created_at = DateTimeField()
    last_seen_at = DateTimeField()
    revoked_at = DateTimeField(null=True)

    class Meta:
        table_name = "user_session"


class TotpCredential(FrozenModel):
    id = AutoField()
    user = ForeignKeyField(User, unique=True, on_delete="CASCADE", backref="+")
    key_tenant_id = IntegerField()
    uid = CharField(max_length=36)
    secret = BlobField()
    confirmed_at = DateTimeField(null=True)
    last_counter = BigIntegerField()
    created_at = DateTimeField()

    class Meta:
        table_name = "totp_credential"


class RecoveryCode(FrozenModel):
    id = AutoField()
    user = ForeignKeyField(User, on_delete="CASCADE", backref="+")
    code_hash = CharField(max_length=255)
    used_at = DateTimeField(null=True)

    class Meta:
        table_name = "recovery_code"


class ThrottleEvent(FrozenModel):
    id = AutoField()
    scope = CharField(max_length=32)
    key = CharField(max_length=64)
    at = DateTimeField()

    class Meta:
        table_name = "throttle_event"
        indexes = ((("scope", "key", "at"), False),)


class Invitation(FrozenModel):
    id = AutoField()
    tenant = ForeignKeyField(Tenant, on_delete="CASCADE", backref="+")
    user = ForeignKeyField(User, on_delete="CASCADE", backref="+")
    role = CharField(max_length=20)
    shared = BooleanField()
    invited_by = IntegerField(null=True)
    created_at = DateTimeField()
    expires_at = DateTimeField()
    answered_at = DateTimeField(null=True)
    accepted = BooleanField(null=True)

    class Meta:
        table_name = "invitation"


MODELS = [UserSession, TotpCredential, RecoveryCode, ThrottleEvent, Invitation]


def up(db, migrator):
    create_frozen(db, MODELS)
    ensure_column(db, migrator, "api_token", "expires_at", DateTimeField(null=True))
