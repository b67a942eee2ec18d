"""API tokens: created by tenant admins, shown once, stored only as a SHA-256."""

from __future__ import annotations

import hashlib
import secrets

from appliance.web.models.audit import record
from appliance.web.models.tenancy import ROLES, ApiToken, Tenant, role_rank
from appliance.web.services import ServiceError

TOKEN_PREFIX = "apl_"


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> tuple[str, str, str]:
    """(token shown once, its display prefix, its sha256 stored in the database)."""
    prefix = secrets.token_hex(4)
    token = f"{TOKEN_PREFIX}{prefix}_{secrets.token_urlsafe(32)}"
    return token, prefix, hash_token(token)


def create_token(tenant: Tenant, *, name, role, creator_role, actor_id=None) -> tuple[ApiToken, str]:
    """A token for ``tenant``; never with more rights than its creator has there."""
    name = (name or "").strip()
    if not name or len(name) > 80:
        raise ServiceError("A token needs a name of 1 to 80 characters.", 422)
    if role not in ROLES:
        raise ServiceError(f"role must be one of: {', '.join(ROLES)}.", 422)
    if role_rank(role) > role_rank(creator_role):
        raise ServiceError("A token cannot have more rights than the one creating it.", 403)
    token, prefix, digest = new_token()
    row = ApiToken.create(tenant=tenant, created_by=actor_id, name=name, role=role, prefix=prefix,
                          token_hash=digest)
    record("token.create", actor_id=actor_id, tenant_id=tenant.id, target=f"token:{row.id}")
    return row, token


def revoke_token(row: ApiToken, actor_id=None) -> ApiToken:
    if not row.revoked:
        row.revoked = True
        row.save()
        record("token.revoke", actor_id=actor_id, tenant_id=row.tenant_id, target=f"token:{row.id}")
    return row
