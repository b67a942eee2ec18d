"""Who may do what in which tenant: the tenant-tree rules in one place.

Rights flow down the tree: a membership at tenant T grants its role in T and in every
descendant of T (provider staff therefore reach everyone; :func:`is_provider_admin`
says who may run the installation). Resources are shared down too: an object flagged
``shared`` in T can be read, not changed, from T's descendants, and an agent shared
in T takes conversations of T's descendants (:func:`shared_down` states that rule
for every model). Objects a principal cannot reach at all answer 404, so
ids in other tenants are not even confirmed to exist; reachable objects with too
little role answer 403.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass, field
from functools import reduce

from flask import abort, request

from appliance.web.models.tenancy import PROVIDER, Membership, Tenant, User, role_rank


@dataclass(frozen=True)
class Grant:
    tenant_id: int
    path: str
    role: str


@dataclass
class Principal:
    """A logged-in user or an API token, reduced to its grants."""

    user_id: int | None
    grants: list[Grant] = field(default_factory=list)
    token_id: int | None = None

    @classmethod
    def for_user(cls, user) -> Principal:
        rows = (
            Membership.select(Membership, Tenant)
            .join(Tenant)
            .where(Membership.user == user, Tenant.is_active == True)
        )
        return cls(user.id, [Grant(m.tenant.id, m.tenant.path, m.role) for m in rows])

    @classmethod
    def for_token(cls, token) -> Principal:
        """A token acts with its own role, never more than its creator holds there right now:
        removing, demoting or deactivating the creator cuts the token on its next request."""
        tenant = token.tenant
        creator = User.get_or_none(User.id == token.created_by_id) if token.created_by_id else None
        if creator is None or not creator.is_active or not tenant.is_active:
            return cls(token.created_by_id, [], token.id)
        creator_role = cls.for_user(creator).role_in(tenant)
        role = min((token.role, creator_role), key=role_rank)
        grants = [Grant(tenant.id, tenant.path, role)] if role_rank(role) else []
        return cls(creator.id, grants, token.id)

    def role_in(self, tenant: Tenant) -> str | None:
        best = None
        for grant in self.grants:
            if tenant.path.startswith(grant.path) and role_rank(grant.role) > role_rank(best):
                best = grant.role
        return best

    def reaches(self, tenant: Tenant) -> bool:
        return self.role_in(tenant) is not None

    def tenant_condition(self):
        """A peewee expression selecting every tenant this principal reaches."""
        if not self.grants:
            return Tenant.id == -1
        return reduce(operator.or_, [Tenant.path.startswith(g.path) for g in self.grants])

    def reachable_tenants(self):
        return Tenant.select().where(self.tenant_condition(), Tenant.is_active == True).order_by(
            Tenant.path
        )


def require_role(principal: Principal, tenant: Tenant, minimum: str) -> str:
    role = principal.role_in(tenant)
    if role is None:
        abort(404)
    if role_rank(role) < role_rank(minimum):
        abort(403, description=f"This needs the {minimum} role in {tenant.name}.")
    return role


# Requests that change nothing: all a deactivated tenant's data still answers.
READ_METHODS = ("GET", "HEAD", "OPTIONS")


def require_writable(tenant: Tenant) -> None:
    """A deactivated tenant's data stays, read-only: its own members have no grants left
    (:meth:`Principal.for_user` skips it), and the admins above may read, not change it."""
    if not tenant.is_active and request.method not in READ_METHODS:
        abort(403, description=f"{tenant.name} is deactivated: its data is read-only. An admin of the "
                               "organisation above it can reactivate it (Sub-accounts page).")


def tenant_or_404(principal: Principal, tenant_id: int, minimum: str = "agent", *,
                  inactive_writable: bool = False) -> Tenant:
    tenant = Tenant.get_or_none(Tenant.id == tenant_id)
    if tenant is None:
        abort(404)
    require_role(principal, tenant, minimum)
    if not inactive_writable:
        require_writable(tenant)
    return tenant


def object_or_404(principal: Principal, model, object_id: int, minimum: str = "agent", *,
                  allow_shared_read: bool = False):
    """Load a tenant-owned object and check the principal's role in its tenant."""
    obj = model.get_or_none(model.id == object_id)
    if obj is None:
        abort(404)
    tenant = Tenant.get_by_id(obj.tenant_id)
    if (principal.role_in(tenant) is None and allow_shared_read and getattr(obj, "shared", False)
            and _shared_down_to_principal(obj, principal)):
        return obj
    require_role(principal, tenant, minimum)
    require_writable(tenant)
    return obj


def shared_down(model, tenant: Tenant):
    """Where-clause: the objects of ``model`` (channels, articles, memberships) that
    ``tenant`` gets from above, i.e. flagged ``shared`` at one of its ancestors.

    Never the tenant's own objects, and never a sibling's or a descendant's.
    """
    ancestors = [tid for tid in tenant.ancestor_ids() if tid != tenant.id]
    return model.tenant.in_(ancestors) & (model.shared == True)


def shared_from_ancestors(model, tenant: Tenant):
    """Objects of ``model`` that ancestors of ``tenant`` share down to it."""
    return model.select().where(shared_down(model, tenant))


def is_shared_down(obj, tenant: Tenant) -> bool:
    """True when ``obj`` is shared down to ``tenant`` from one of its ancestors."""
    model = type(obj)
    return shared_from_ancestors(model, tenant).where(model.id == obj.id).exists()


def _shared_down_to_principal(obj, principal: Principal) -> bool:
    """True when ``obj`` is shared down to a tenant the principal has a grant in."""
    tenants = Tenant.select().where(Tenant.id.in_([g.tenant_id for g in principal.grants]))
    return any(is_shared_down(obj, tenant) for tenant in tenants)


def provider_tenant() -> Tenant | None:
    """The root of the tree: the company running this installation (None before init)."""
    return Tenant.select().where(Tenant.level == PROVIDER).order_by(Tenant.id).first()


def is_provider_admin(principal: Principal | None) -> bool:
    """An admin of the provider tenant: may run the installation (licence, sync, system)."""
    provider = provider_tenant()
    return (provider is not None and principal is not None
            and role_rank(principal.role_in(provider)) >= role_rank("admin"))
