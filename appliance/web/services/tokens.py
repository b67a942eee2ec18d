"""API tokens: created by tenant admins, shown once, stored only as a SHA-256.

A token never holds more rights than whoever made it: its role is capped by the creator's
role when it is made, and at every request by the creator's role at that moment
(``Principal.for_token``). A token made by another token also ends no later than it.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets

from appliance.web.models.audit import record
from appliance.web.models.base import utcnow
from appliance.web.models.tenancy import ROLES, ApiToken, Tenant, role_rank
from appliance.web.services import ServiceError

TOKEN_PREFIX = "apl_"
MAX_DAYS = 3650


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> tuple[str, str, str]:
    """(token shown once, its display prefix, its sha256 stored in the database)."""
    prefix = secrets.token_hex(4)
    token = f"{TOKEN_PREFIX}{prefix}_{secrets.token_urlsafe(32)}"
    return token, prefix, hash_token(token)


def _expiry(expires_in_days, max_days: int, parent: ApiToken | None) -> dt.datetime | None:
    if expires_in_days is not None and not (isinstance(expires_in_days, int) and 0 < expires_in_days <= MAX_DAYS):
        raise ServiceError(f"expires_in_days must be a whole number from 1 to {MAX_DAYS}.", 422)
    if max_days and (expires_in_days is None or expires_in_days > max_days):
        if expires_in_days is not None:
            raise ServiceError(f"Tokens on this installation last at most {max_days} days (expires_in_days).", 422)
        expires_in_days = max_days
    expires = utcnow() + dt.timedelta(days=expires_in_days) if expires_in_days else None
    if parent is not None and parent.expires_at is not None:
        expires = min(expires or parent.expires_at, parent.expires_at)
    return expires


def create_token(tenant: Tenant, *, name, role, creator_role, actor_id=None, expires_in_days=None,
                 max_days: int = 0, parent: ApiToken | None = None) -> tuple[ApiToken, str]:
    """A token for ``tenant``; never with more rights than its creator has there.

    ``creator_role`` is the creating principal's effective role in ``tenant`` (for a token,
    already capped by its own creator); ``parent`` is the token making this one, if any.
    """
    name = (name or "").strip()
    if not name or len(name) > 80:
        raise ServiceError("A token needs a name of 1 to 80 characters.", 422)
    if role not in ROLES:
        raise ServiceError(f"role must be one of: {', '.join(ROLES)}.", 422)
    if role_rank(role) > role_rank(creator_role):
        raise ServiceError("A token cannot have more rights than the one creating it.", 403)
    if actor_id is None:
        raise ServiceError("A token needs a creator whose rights it acts with.", 422)
    expires_at = _expiry(expires_in_days, max_days, parent)
    token, prefix, digest = new_token()
    row = ApiToken.create(tenant=tenant, created_by=actor_id, name=name, role=role, prefix=prefix,
                          token_hash=digest, expires_at=expires_at)
    record("token.create", actor_id=actor_id, tenant_id=tenant.id, target=f"token:{row.id}",
           via_token=parent.id if parent is not None else None)
    return row, token


def revoke_token(row: ApiToken, actor_id=None) -> ApiToken:
    if not row.revoked:
        row.revoked = True
        row.save()
        record("token.revoke", actor_id=actor_id, tenant_id=row.tenant_id, target=f"token:{row.id}")
    return row
