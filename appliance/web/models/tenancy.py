"""The tenant tree, users, memberships and API tokens."""

from __future__ import annotations

from peewee import (
    SQL,
    BooleanField,
    CharField,
    DateTimeField,
    DecimalField,
    ForeignKeyField,
    IntegerField,
    TextField,
)

from appliance.web.models.base import BaseModel, utcnow

PROVIDER, ACCOUNT, SUBACCOUNT = 1, 2, 3
ACCOUNT_KINDS = ("customer", "reseller", "enterprise")
SUBACCOUNT_KINDS = ("brand", "business_unit", "country_team")
ROLES = ("agent", "supervisor", "admin")  # ordered: later includes earlier


def role_rank(role: str | None) -> int:
    return ROLES.index(role) + 1 if role in ROLES else 0


class Tenant(BaseModel):
    parent = ForeignKeyField("self", null=True, backref="children", on_delete="RESTRICT")
    level = IntegerField()  # 1 provider, 2 account, 3 sub-account
    kind = CharField(max_length=20)  # provider | customer/reseller/enterprise | brand/...
    name = CharField(max_length=120)
    slug = CharField(max_length=64, unique=True)
    # Materialised path of ancestor ids ("/1/4/9/") so subtree checks are one LIKE.
    path = CharField(max_length=255, index=True, default="/")
    brand_color = CharField(max_length=7, default="#1f6feb")
    logo = TextField(null=True)  # data: URL of a small image, shown on pages and widget
    credit_limit = DecimalField(max_digits=12, decimal_places=2, default=0)
    partner_level = CharField(max_length=20, null=True)
    is_active = BooleanField(default=True)
    # When it was deactivated, and the tenant whose deactivation did it (itself, or the
    # ancestor it went off with, so reactivating that ancestor brings back only these).
    deactivated_at = DateTimeField(null=True)
    deactivated_with = IntegerField(null=True)
    # False: the logo and colour come from the nearest ancestor that set its own.
    own_branding = BooleanField(default=False, constraints=[SQL("DEFAULT FALSE")])
    # Card numbers in messages shown masked to agents here and below (services/pan.py).
    mask_card_numbers = BooleanField(default=False, constraints=[SQL("DEFAULT FALSE")])
    # Round-robin gives a member of this tenant no more open conversations than this
    # (a member's own ``capacity`` first); None: no limit.
    agent_capacity = IntegerField(null=True)
    created_at = DateTimeField(default=utcnow)

    def ancestor_ids(self) -> list[int]:
        return [int(p) for p in self.path.strip("/").split("/") if p]

    def is_descendant_of(self, other: Tenant) -> bool:
        return other.id in self.ancestor_ids() and other.id != self.id

    def to_json(self) -> dict:
        return {
            "id": self.id,
            "parent_id": self.parent_id,
            "level": self.level,
            "kind": self.kind,
            "name": self.name,
            "slug": self.slug,
            "brand_color": self.brand_color,
            "is_active": self.is_active,
            "deactivated_at": self.deactivated_at.isoformat() + "Z" if self.deactivated_at else None,
            "own_branding": self.own_branding,
            "mask_card_numbers": self.mask_card_numbers,
            "agent_capacity": self.agent_capacity,
            "created_at": self.created_at.isoformat() + "Z",
        }


class User(BaseModel):
    email = CharField(max_length=254, unique=True)
    name = CharField(max_length=120)
    password_hash = CharField(max_length=255)
    is_active = BooleanField(default=True)
    created_at = DateTimeField(default=utcnow)
    last_login_at = DateTimeField(null=True)
    # Set for a password someone else chose (the installer's first admin): until the
    # user picks their own, the UI offers nothing but the password change.
    must_change_password = BooleanField(default=False, constraints=[SQL("DEFAULT FALSE")])

    def to_json(self) -> dict:
        return {"id": self.id, "email": self.email, "name": self.name, "is_active": self.is_active}


class Membership(BaseModel):
    user = ForeignKeyField(User, backref="memberships", on_delete="CASCADE")
    tenant = ForeignKeyField(Tenant, backref="memberships", on_delete="CASCADE")
    role = CharField(max_length=20)
    # A shared agent of a parent tenant takes conversations of its sub-accounts too.
    shared = BooleanField(default=False)
    available = BooleanField(default=True)  # for round-robin assignment
    last_assigned_at = DateTimeField(null=True)  # round-robin: the longest idle goes next
    # Supervisors and admins oversee: round-robin routes them work only when this is set
    # (agents always take it while available).
    takes_conversations = BooleanField(default=False, constraints=[SQL("DEFAULT FALSE")])
    capacity = IntegerField(null=True)  # open conversations at most; None: the tenant's agent_capacity
    created_at = DateTimeField(default=utcnow)

    class Meta:
        indexes = ((("user", "tenant"), True),)

    def to_json(self) -> dict:
        return {
            "id": self.id,
            "user": self.user.to_json(),
            "tenant_id": self.tenant_id,
            "role": self.role,
            "shared": self.shared,
            "available": self.available,
            "takes_conversations": self.takes_conversations,
            "capacity": self.capacity,
        }


class ApiToken(BaseModel):
    tenant = ForeignKeyField(Tenant, backref="api_tokens", on_delete="CASCADE")
    created_by = ForeignKeyField(User, null=True, on_delete="SET NULL")
    name = CharField(max_length=80)
    role = CharField(max_length=20)
    prefix = CharField(max_length=12)
    token_hash = CharField(max_length=64, unique=True)  # sha256 hex; the token itself is shown once
    created_at = DateTimeField(default=utcnow)
    last_used_at = DateTimeField(null=True)
    revoked = BooleanField(default=False)
    expires_at = DateTimeField(null=True)  # None: until revoked

    def is_expired(self, now) -> bool:
        return self.expires_at is not None and now >= self.expires_at

    def to_json(self) -> dict:
        return {
            "id": self.id,
            "tenant_id": self.tenant_id,
            "name": self.name,
            "role": self.role,
            "prefix": self.prefix,
            "revoked": self.revoked,
            "created_by": self.created_by_id,
            "created_at": self.created_at.isoformat() + "Z",
            "last_used_at": self.last_used_at.isoformat() + "Z" if self.last_used_at else None,
            "expires_at": self.expires_at.isoformat() + "Z" if self.expires_at else None,
        }


class LoginAttempt(BaseModel):
    """Failed logins, kept in the database so throttling holds across workers and hosts."""

    key = CharField(max_length=64, index=True)  # sha256 of the e-mail, never the e-mail itself
    at = DateTimeField(default=utcnow, index=True)
