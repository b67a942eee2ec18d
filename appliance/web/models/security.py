"""Security state kept in the database, so it holds across workers and app hosts:
server-side sessions, TOTP credentials and recovery codes, throttling counters, invitations."""

from __future__ import annotations

from peewee import BigIntegerField, BlobField, BooleanField, CharField, DateTimeField, ForeignKeyField, IntegerField

from appliance.web.models.base import BaseModel, utcnow
from appliance.web.models.tenancy import Tenant, User


class UserSession(BaseModel):
    """A login: the browser's signed cookie names it, so revoking the row ends the session."""

    user = ForeignKeyField(User, backref="sessions", on_delete="CASCADE")
    sid_hash = CharField(max_length=64, unique=True)  # sha256 of the id in the cookie
    created_at = DateTimeField(default=utcnow)
    last_seen_at = DateTimeField(default=utcnow)
    revoked_at = DateTimeField(null=True)


class TotpCredential(BaseModel):
    user = ForeignKeyField(User, backref="totp", unique=True, on_delete="CASCADE")
    key_tenant_id = IntegerField()  # whose data key sealed the secret (the provider's)
    uid = CharField(max_length=36)  # the row's uid in the seal's associated data
    secret = BlobField()  # RFC 6238 shared secret, sealed (appliance.web.crypto)
    confirmed_at = DateTimeField(null=True)  # None: enrolment started, not finished
    # The time step of the last accepted code: a code works once, and never an older one.
    last_counter = BigIntegerField(default=0)
    created_at = DateTimeField(default=utcnow)


class RecoveryCode(BaseModel):
    user = ForeignKeyField(User, backref="recovery_codes", on_delete="CASCADE")
    code_hash = CharField(max_length=255)  # argon2id, like passwords
    used_at = DateTimeField(null=True)


class ThrottleEvent(BaseModel):
    """One counted event (a failed login, a new widget conversation) for one subject."""

    scope = CharField(max_length=32)  # "login.address", "login.account", "widget.channel", ...
    key = CharField(max_length=64)  # sha256 of the subject (address, e-mail): never the subject
    at = DateTimeField(default=utcnow)

    class Meta:
        indexes = ((("scope", "key", "at"), False),)


class Invitation(BaseModel):
    """An existing user asked to join a tenant; the membership exists once they accept."""

    tenant = ForeignKeyField(Tenant, backref="invitations", on_delete="CASCADE")
    user = ForeignKeyField(User, backref="invitations", on_delete="CASCADE")
    role = CharField(max_length=20)
    shared = BooleanField(default=False)
    invited_by = IntegerField(null=True)  # a user id
    created_at = DateTimeField(default=utcnow)
    expires_at = DateTimeField()
    answered_at = DateTimeField(null=True)
    accepted = BooleanField(null=True)  # None while pending

    def to_json(self) -> dict:
        return {"id": self.id, "tenant_id": self.tenant_id, "role": self.role, "shared": self.shared,
                "created_at": self.created_at.isoformat() + "Z", "expires_at": self.expires_at.isoformat() + "Z",
                "accepted": self.accepted}


class PasswordReset(BaseModel):
    """A one-time link an admin made for a user: only its hash is kept; it works once, until
    ``expires_at``, and a newer link for the same user replaces it."""

    user = ForeignKeyField(User, backref="password_resets", on_delete="CASCADE")
    token_hash = CharField(max_length=64, unique=True)  # sha256 hex of the token in the link
    created_by = IntegerField(null=True)  # a user id
    created_at = DateTimeField(default=utcnow)
    expires_at = DateTimeField()
    used_at = DateTimeField(null=True)
