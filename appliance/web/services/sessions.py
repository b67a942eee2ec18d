"""Server-side sessions: the signed cookie carries only a random id, the database the session.

So a session ends for real: at logout, on a password change, on deactivation, with "sign
out everywhere", by an admin, after ``session_idle_timeout_seconds`` without a request and
``session_absolute_timeout_seconds`` after login. A copied cookie is worth nothing after that.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets

from flask import current_app

from appliance.web.access import Principal
from appliance.web.models.audit import record
from appliance.web.models.base import utcnow
from appliance.web.models.security import UserSession
from appliance.web.models.tenancy import Membership, Tenant, User, role_rank
from appliance.web.services import ServiceError

# Writing last_seen_at on every request would turn each page view into a write.
TOUCH_EVERY_SECONDS = 60


def _hash(sid: str) -> str:
    return hashlib.sha256(sid.encode()).hexdigest()


def _timeouts() -> tuple[int, int]:
    settings = current_app.extensions["appliance_instance"].settings
    return int(settings["session_idle_timeout_seconds"]), int(settings["session_absolute_timeout_seconds"])


def start(user: User) -> str:
    """A new session for ``user``; returns the id the cookie carries (never stored as such)."""
    sid = secrets.token_urlsafe(32)
    now = utcnow()
    UserSession.create(user=user, sid_hash=_hash(sid), created_at=now, last_seen_at=now)
    return sid


def resume(sid: str | None) -> UserSession | None:
    """The live session named by ``sid``, or None (unknown, revoked or timed out)."""
    if not sid or not isinstance(sid, str) or len(sid) > 100:
        return None
    row = UserSession.get_or_none(UserSession.sid_hash == _hash(sid))
    if row is None or row.revoked_at is not None:
        return None
    idle, absolute = _timeouts()
    now = utcnow()
    if now - row.last_seen_at > dt.timedelta(seconds=idle) or now - row.created_at > dt.timedelta(seconds=absolute):
        _revoke(UserSession.id == row.id)
        return None
    if (now - row.last_seen_at).total_seconds() >= TOUCH_EVERY_SECONDS:
        UserSession.update(last_seen_at=now).where(UserSession.id == row.id).execute()
    return row


def _revoke(condition) -> int:
    return UserSession.update(revoked_at=utcnow()).where(condition, UserSession.revoked_at.is_null()).execute()


def end(sid: str | None) -> None:
    if sid and isinstance(sid, str):
        _revoke(UserSession.sid_hash == _hash(sid))


def end_all(user_id: int, *, keep_sid: str | None = None, actor_id=None, reason: str = "sign-out-everywhere") -> int:
    condition = UserSession.user == user_id
    if keep_sid:
        condition &= UserSession.sid_hash != _hash(keep_sid)
    count = _revoke(condition)
    record("session.revoke_all", actor_id=actor_id, target=f"user:{user_id}", reason=reason, count=count)
    return count


def live_sessions(user_id: int) -> list[UserSession]:
    idle, absolute = _timeouts()
    now = utcnow()
    return list(UserSession.select().where(
        UserSession.user == user_id, UserSession.revoked_at.is_null(),
        UserSession.last_seen_at > now - dt.timedelta(seconds=idle),
        UserSession.created_at > now - dt.timedelta(seconds=absolute)).order_by(UserSession.created_at.desc()))


def may_manage_user(principal: Principal, user_id: int) -> bool:
    """An admin may end another user's sessions only where they are admin of every tenant the
    user belongs to: a tenant admin cannot sign out the provider's staff."""
    rows = Membership.select(Membership, Tenant).join(Tenant).where(Membership.user == user_id)
    tenants = [m.tenant for m in rows]
    return bool(tenants) and all(role_rank(principal.role_in(t)) >= role_rank("admin") for t in tenants)


def kill_user_sessions(principal: Principal, user_id: int, actor_id=None) -> int:
    if not may_manage_user(principal, user_id):
        raise ServiceError("Only an admin of every organisation this user belongs to can end their sessions.", 403)
    return end_all(user_id, actor_id=actor_id, reason="admin")


def deactivate_user(user: User, actor_id=None) -> User:
    """No more logins, sessions or tokens for ``user`` (tokens act with their creator's rights)."""
    if user.id == actor_id:
        raise ServiceError("You cannot deactivate yourself.", 422)
    user.is_active = False
    user.save()
    end_all(user.id, actor_id=actor_id, reason="deactivated")
    record("user.deactivate", actor_id=actor_id, target=f"user:{user.id}")
    return user


def prune_sessions() -> int:
    """Delete sessions past the absolute timeout (revoked or not): they can never be resumed."""
    _idle, absolute = _timeouts()
    return UserSession.delete().where(UserSession.created_at <= utcnow() - dt.timedelta(seconds=absolute)).execute()
