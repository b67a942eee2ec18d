"""Seats under a contract: the account's total, and each sub-account's share of it.

An active contract holds a number of operator seats (contracts.seats_of). Every membership
in the account and its sub-accounts takes one; the account's admins split the seats among
sub-accounts with quotas, which together never exceed the contract. Without an active
contract the installation's licence is the only cap (installations that do not bill
through the appliance are not limited by it). The check runs inside the same lock as the
licence's seat check, through the ``seat_checks`` the business blueprint registers.
"""

from __future__ import annotations

from appliance.web.business.contracts import active_contract, lines_of, seats_of
from appliance.web.business.models import SeatQuota
from appliance.web.models.audit import record
from appliance.web.models.base import utcnow
from appliance.web.models.tenancy import ACCOUNT, ROLES, SUBACCOUNT, Membership, Tenant
from appliance.web.services import Conflict, ServiceError


class SeatQuotaError(Conflict):
    """A membership would go past the contract's seats or a sub-account's quota."""


def account_of(tenant: Tenant) -> Tenant | None:
    if tenant.level == ACCOUNT:
        return tenant
    if tenant.level == SUBACCOUNT:
        return Tenant.get_or_none(Tenant.id == tenant.ancestor_ids()[-2])
    return None


def seats_used(tenant: Tenant, *, subtree: bool) -> int:
    where = Tenant.path.startswith(tenant.path) if subtree else (Tenant.id == tenant.id)
    return (Membership.select().join(Tenant)
            .where(where, Tenant.is_active == True, Membership.role.in_(ROLES)).count())


def contract_seats(account: Tenant) -> int | None:
    contract = active_contract(account)
    return None if contract is None else seats_of(lines_of(contract))


def quota_of(tenant: Tenant) -> int | None:
    row = SeatQuota.get_or_none(SeatQuota.tenant == tenant.id)
    return None if row is None else row.seats


def check_seat(tenant: Tenant) -> None:
    """Refuse one more membership in ``tenant`` past its contract or quota (figures named)."""
    account = account_of(tenant)
    if account is None:
        return
    total = contract_seats(account)
    if total is None:
        return
    used = seats_used(account, subtree=True)
    if used >= total:
        raise SeatQuotaError(
            f"The contract of {account.name} holds {total} operator seats and {used} are in use (members of "
            "the account and its sub-accounts). Remove a membership, or ask the provider for more seats "
            "(Billing: Ask for programs or seats).")
    if tenant.level == SUBACCOUNT:
        quota = quota_of(tenant)
        in_tenant = seats_used(tenant, subtree=False)
        if quota is not None and in_tenant >= quota:
            raise SeatQuotaError(
                f"{tenant.name} may hold {quota} of the contract's seats and has {in_tenant} members. "
                f"An admin of {account.name} can raise its quota on the billing page.")


def quotas(account: Tenant) -> list[dict]:
    """Each sub-account with its quota (None: no quota of its own) and its seats in use."""
    subs = Tenant.select().where(Tenant.path.startswith(account.path), Tenant.level == SUBACCOUNT,
                                 Tenant.is_active == True).order_by(Tenant.name)
    by_tenant = {q.tenant_id: q.seats for q in SeatQuota.select().where(SeatQuota.tenant.in_([s.id for s in subs]))}
    return [{"tenant": s, "quota": by_tenant.get(s.id), "used": seats_used(s, subtree=False)} for s in subs]


def set_quota(account: Tenant, sub: Tenant, seats: int | None, *, actor_id=None) -> dict:
    """Give ``sub`` a share of the contract's seats (None: remove its quota)."""
    if account.level != ACCOUNT or sub.level != SUBACCOUNT or not sub.is_descendant_of(account):
        raise ServiceError("seat quotas are set by an account for one of its own sub-accounts", 404)
    if seats is None:
        SeatQuota.delete().where(SeatQuota.tenant == sub.id).execute()
        record("seat_quota.remove", actor_id=actor_id, tenant_id=account.id, target=f"tenant:{sub.id}")
        return {"tenant_id": sub.id, "quota": None, "used": seats_used(sub, subtree=False)}
    if isinstance(seats, bool) or not isinstance(seats, int) or seats < 0:
        raise ServiceError("seats: a whole number, 0 or more", 422)
    total = contract_seats(account)
    if total is None:
        raise ServiceError(f"{account.name} has no active contract: quotas share a contract's seats", 409)
    others = sum(q.seats for q in SeatQuota.select().join(Tenant).where(
        Tenant.path.startswith(account.path), SeatQuota.tenant != sub.id))
    if others + seats > total:
        raise SeatQuotaError(
            f"The contract holds {total} seats and other sub-accounts' quotas take {others}: "
            f"at most {total - others} are left for {sub.name}.")
    SeatQuota.insert(tenant=sub.id, seats=seats, set_by=actor_id, set_at=utcnow()).on_conflict(
        conflict_target=[SeatQuota.tenant],
        update={SeatQuota.seats: seats, SeatQuota.set_by: actor_id, SeatQuota.set_at: utcnow()}).execute()
    record("seat_quota.set", actor_id=actor_id, tenant_id=account.id, target=f"tenant:{sub.id}", seats=seats)
    return {"tenant_id": sub.id, "quota": seats, "used": seats_used(sub, subtree=False)}
