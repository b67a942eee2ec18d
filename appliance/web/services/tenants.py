"""Creating and changing tenants, users and memberships."""

from __future__ import annotations

import re
import secrets

from appliance.web.db import LOCK_LICENCE_GROWTH, database_proxy, serialized
from appliance.web.models.audit import record
from appliance.web.models.tenancy import (
    ACCOUNT,
    ACCOUNT_KINDS,
    PROVIDER,
    ROLES,
    SUBACCOUNT,
    SUBACCOUNT_KINDS,
    Membership,
    Tenant,
    User,
)
from appliance.web.services import Conflict, ServiceError, licence, logos
from appliance.web.services.passwords import check_strength, hash_password

EMAIL_RE = re.compile(r"^[^@\s]{1,64}@[^@\s]{1,190}\.[^@\s]{2,}$")


def _slugify(name: str) -> str:
    base = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:40] or "tenant"
    slug = base
    while Tenant.select().where(Tenant.slug == slug).exists():
        slug = f"{base}-{secrets.token_hex(2)}"
    return slug


def create_provider(name: str) -> Tenant:
    if Tenant.select().where(Tenant.level == PROVIDER).exists():
        raise Conflict("The provider tenant exists already.")
    with database_proxy.atomic():
        tenant = Tenant.create(level=PROVIDER, kind="provider", name=name, slug=_slugify(name))
        tenant.path = f"/{tenant.id}/"
        tenant.save()
    return tenant


def create_child(parent: Tenant, name: str, kind: str, actor_id=None) -> Tenant:
    """Accounts under the provider, sub-accounts under an account; nothing deeper."""
    name = (name or "").strip()
    if not name or len(name) > 120:
        raise ServiceError("A tenant needs a name of 1 to 120 characters.", 422)
    if parent.level == PROVIDER:
        level, kinds = ACCOUNT, ACCOUNT_KINDS
    elif parent.level == ACCOUNT:
        level, kinds = SUBACCOUNT, SUBACCOUNT_KINDS
    else:
        raise ServiceError("Sub-accounts cannot have sub-accounts of their own.", 422)
    if kind not in kinds:
        raise ServiceError(f"kind must be one of: {', '.join(kinds)}.", 422)
    with serialized(LOCK_LICENCE_GROWTH):  # the limit check and the insert, as one step
        licence.check_can_create_tenant()
        tenant = Tenant.create(parent=parent, level=level, kind=kind, name=name, slug=_slugify(name))
        tenant.path = f"{parent.path}{tenant.id}/"
        tenant.save()
        record("tenant.create", actor_id=actor_id, tenant_id=tenant.id, target=f"tenant:{tenant.id}")
    return tenant


def update_branding(tenant: Tenant, *, name=None, brand_color=None, logo=None, mask_card_numbers=None,
                    own_branding=None, actor_id=None):
    """``own_branding`` False: show the parent's colour and logo; a colour or logo given without
    it makes the tenant's own branding show."""
    if name is not None:
        name = name.strip()
        if not name or len(name) > 120:
            raise ServiceError("A tenant needs a name of 1 to 120 characters.", 422)
        tenant.name = name
    if brand_color is not None:
        if not re.fullmatch(r"#[0-9a-fA-F]{6}", brand_color):
            raise ServiceError("brand_color must look like #1f6feb.", 422)
        tenant.brand_color = brand_color
    if logo is not None:
        tenant.logo = logos.check_data_url(logo) if logo else None
    if own_branding is None and (brand_color is not None or logo is not None):
        own_branding = True
    if own_branding is not None:
        tenant.own_branding = bool(own_branding) or tenant.level == PROVIDER
    if mask_card_numbers is not None and bool(mask_card_numbers) != tenant.mask_card_numbers:
        tenant.mask_card_numbers = bool(mask_card_numbers)
        record("tenant.mask_card_numbers", actor_id=actor_id, tenant_id=tenant.id, target=f"tenant:{tenant.id}",
               on=tenant.mask_card_numbers)
    tenant.save()
    record("tenant.branding", actor_id=actor_id, tenant_id=tenant.id, target=f"tenant:{tenant.id}")
    return tenant


def normalise_email(email: str) -> str:
    email = (email or "").strip().lower()
    if not EMAIL_RE.match(email):
        raise ServiceError("That is not a valid e-mail address.", 422)
    return email


def create_user(email: str, name: str, password: str) -> User:
    email = normalise_email(email)
    problem = check_strength(password or "")
    if problem:
        raise ServiceError(problem, 422)
    if User.select().where(User.email == email).exists():
        raise Conflict("A user with that e-mail exists already.")
    return User.create(email=email, name=(name or email).strip()[:120], password_hash=hash_password(password))


def add_member(tenant: Tenant, user: User, role: str, *, shared=False, actor_id=None) -> Membership:
    if role not in ROLES:
        raise ServiceError(f"role must be one of: {', '.join(ROLES)}.", 422)
    if Membership.select().where(Membership.user == user, Membership.tenant == tenant).exists():
        raise Conflict("That user is a member of this tenant already.")
    with serialized(LOCK_LICENCE_GROWTH):
        licence.check_can_add_seat(tenant)
        member = Membership.create(user=user, tenant=tenant, role=role, shared=bool(shared))
        record("member.add", actor_id=actor_id, tenant_id=tenant.id, target=f"membership:{member.id}", role=role)
    return member


def invite_member(tenant: Tenant, *, email, name, password, role, shared=False, actor_id=None):
    """Add a user by e-mail at once, creating the user first when new.

    A provider action (and the demo's): tenant admins go through
    appliance.web.services.invitations, where an existing user must accept."""
    user = User.get_or_none(User.email == normalise_email(email))
    if user is None:
        user = create_user(email, name, password)
    return add_member(tenant, user, role, shared=shared, actor_id=actor_id)


def update_member(member: Membership, *, role=None, shared=None, available=None, actor_id=None):
    if role is not None:
        if role not in ROLES:
            raise ServiceError(f"role must be one of: {', '.join(ROLES)}.", 422)
        member.role = role
    if shared is not None:
        member.shared = bool(shared)
    if available is not None:
        member.available = bool(available)
    member.save()
    record("member.update", actor_id=actor_id, tenant_id=member.tenant_id, target=f"membership:{member.id}")
    return member


def remove_member(member: Membership, actor_id=None):
    if member.user_id == actor_id:
        raise ServiceError("You cannot remove your own membership.", 422)
    tenant_id = member.tenant_id
    member.delete_instance()
    record("member.remove", actor_id=actor_id, tenant_id=tenant_id, target=f"membership:{member.id}")
