"""Adding people to a tenant by e-mail without revealing who has an account.

A tenant admin who types an address gets the same answer whether or not it belongs to
someone: a new address becomes a new user and member at once (the admin is onboarding
their own staff); an address that already has an account gets an invitation, and the
membership exists only once that user accepts it (their account page lists it). The
provider's admins run the installation, so their additions take effect at once.
"""

from __future__ import annotations

import datetime as dt

from appliance.web.access import Principal, is_provider_admin
from appliance.web.models.audit import record
from appliance.web.models.base import utcnow
from appliance.web.models.security import Invitation
from appliance.web.models.tenancy import ROLES, Membership, Tenant, User
from appliance.web.services import ServiceError, licence, tenants
from appliance.web.services.passwords import check_strength

INVITATION_DAYS = 14
ANSWER = ("Done: a new address now has an account and membership; an address with an account "
          "elsewhere was sent an invitation, which its owner accepts after logging in.")


def add_by_email(tenant: Tenant, principal: Principal, *, email, name=None, password=None, role, shared=False,
                 actor_id=None) -> dict:
    """Add or invite; the answer is the same either way (see the module docstring)."""
    email = tenants.normalise_email(email)
    if role not in ROLES:
        raise ServiceError(f"role must be one of: {', '.join(ROLES)}.", 422)
    # Checked for every address alike, so a refusal never depends on whether the address exists:
    # the password is used only if the address is new, but it is always required.
    problem = check_strength(password or "")
    if problem:
        raise ServiceError(f"password (used if the address has no account yet): {problem}", 422)
    licence.check_can_add_seat(tenant)
    user = User.get_or_none(User.email == email)
    if user is None:
        tenants.invite_member(tenant, email=email, name=name, password=password, role=role, shared=shared,
                              actor_id=actor_id)
    elif is_provider_admin(principal):
        if not Membership.select().where(Membership.user == user, Membership.tenant == tenant).exists():
            tenants.add_member(tenant, user, role, shared=shared, actor_id=actor_id)
    else:
        _invite(tenant, user, role, shared, actor_id)
    return {"email": email, "tenant_id": tenant.id, "role": role, "status": "submitted", "message": ANSWER}


def _invite(tenant: Tenant, user: User, role: str, shared: bool, actor_id) -> None:
    if Membership.select().where(Membership.user == user, Membership.tenant == tenant).exists():
        return  # nothing to do; saying so would confirm the address
    now = utcnow()
    pending = Invitation.get_or_none(Invitation.tenant == tenant.id, Invitation.user == user.id,
                                     Invitation.accepted.is_null())
    expires = now + dt.timedelta(days=INVITATION_DAYS)
    if pending is None:
        pending = Invitation.create(tenant=tenant, user=user, role=role, shared=bool(shared), invited_by=actor_id,
                                    created_at=now, expires_at=expires)
    else:
        Invitation.update(role=role, shared=bool(shared), invited_by=actor_id, expires_at=expires).where(
            Invitation.id == pending.id).execute()
    record("member.invite", actor_id=actor_id, tenant_id=tenant.id, target=f"invitation:{pending.id}", role=role)


def pending_for(user: User) -> list[Invitation]:
    return list(Invitation.select(Invitation, Tenant).join(Tenant).where(
        Invitation.user == user.id, Invitation.accepted.is_null(), Invitation.expires_at > utcnow(),
        Tenant.is_active == True).order_by(Invitation.created_at))


def answer(user: User, invitation_id: int, accept: bool) -> Membership | None:
    """The invited user accepts (a membership, counted against the licence) or declines."""
    invitation = next((i for i in pending_for(user) if i.id == invitation_id), None)
    if invitation is None:
        raise ServiceError("That invitation is not open any more (answered, expired or withdrawn).", 404)
    member = None
    already = Membership.select().where(Membership.user == user, Membership.tenant == invitation.tenant_id).exists()
    if accept and not already:
        member = tenants.add_member(invitation.tenant, user, invitation.role, shared=invitation.shared,
                                    actor_id=user.id)
    Invitation.update(accepted=bool(accept), answered_at=utcnow()).where(Invitation.id == invitation.id).execute()
    record("member.invitation_answer", actor_id=user.id, tenant_id=invitation.tenant_id,
           target=f"invitation:{invitation.id}", accepted=bool(accept))
    return member
